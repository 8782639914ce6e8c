"""Many simulated massagers in another process, reached over one loopback TCP connection.

For measuring the controller at scale: with 1,000 simulators in the controller's own process,
their cost would be counted as the controller's. Here a server process hosts the massagers
(`python -m sim.hosts.remote --devices N`) and `RemoteBleakClient` is a bleak backend whose
peer is one of them, so bleak's real front end and the controller's transport, link, runner
and telemetry run unchanged while the simulators' CPU is spent elsewhere. There is no radio
model: each message is a length-prefixed record (kind, device index, payload).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import socket
import struct
import sys
from collections import deque
from collections.abc import Callable
from typing import Any

from bleak.args import SizedBuffer
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient, NotifyCallback
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.backends.device import BLEDevice
from bleak.exc import BleakError

from firmware_bridge.protocol import BATTERY_LEVEL_CHAR_UUID, TELEMETRY_CHAR_UUID, ScaledClock
from sim.hosts.memory import ATT_HEADER, DEFAULT_MTU, build_services
from sim.hosts.runtime import SimulatedMassager

_LOGGER = logging.getLogger(__name__)

HEADER = struct.Struct(">HBH")  # payload length, kind, device index
CONNECT, DISCONNECT, WRITE = 1, 2, 3  # controller → simulators
CONNECTED, REFUSED, NOTIFY, BATTERY, DROPPED, WRITTEN = 10, 11, 12, 13, 14, 15  # and back
CONNECT_TIMEOUT_S = 10.0  # a connect the server does not answer (server gone) fails after this


def _frame(kind: int, device: int, payload: bytes = b"") -> bytes:
    return HEADER.pack(len(payload), kind, device) + payload


async def _records(reader: asyncio.StreamReader) -> Any:
    """(kind, device, payload) until the connection closes."""
    while True:
        try:
            header = await reader.readexactly(HEADER.size)
            length, kind, device = HEADER.unpack(header)
            payload = await reader.readexactly(length)
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        yield kind, device, payload


def _no_delay(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


# -- the simulators' side ----------------------------------------------------------------------


class SimulatorServer:
    """`count` simulated massagers (protocol v1) behind one listening socket."""

    def __init__(self, count: int, *, speed: float = 1.0) -> None:
        clock = ScaledClock(speed)
        self.massagers = [SimulatedMassager(clock=clock) for _ in range(count)]

    async def serve(self, port: int = 0) -> asyncio.Server:
        for massager in self.massagers:
            await massager.start()
        return await asyncio.start_server(self._controller, "127.0.0.1", port)

    async def _controller(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _no_delay(writer)
        attached: set[int] = set()

        def send(kind: int, device: int, payload: bytes = b"") -> None:
            if not writer.is_closing():
                writer.write(_frame(kind, device, payload))

        def _dropped(index: int, reason: int) -> None:  # the simulator drops the link
            attached.discard(index)
            self.massagers[index].detach()
            send(DROPPED, index, bytes([reason]))

        async for kind, index, payload in _records(reader):
            if not 0 <= index < len(self.massagers):
                send(REFUSED, index, b"no such device")
                continue
            massager = self.massagers[index]
            if kind == CONNECT:
                if massager.connected:
                    send(REFUSED, index, b"already connected")
                    continue
                massager.on_notify = lambda data, i=index: send(NOTIFY, i, data)
                massager.on_battery = lambda pct, i=index: send(BATTERY, i, bytes([pct]))
                massager.on_disconnect = lambda reason, i=index: _dropped(i, reason)
                massager.attach()
                attached.add(index)
                send(CONNECTED, index)
            elif kind == DISCONNECT and index in attached:
                attached.discard(index)
                massager.detach()
            elif kind == WRITE and index in attached:
                massager.write(payload[1:], with_response=bool(payload[0]))
                if payload[0]:
                    send(WRITTEN, index)

        for index in attached:  # the controller went away: every link is lost at once
            self.massagers[index].detach()
        writer.close()


async def _main(count: int, port: int, speed: float) -> None:
    server = SimulatorServer(count, speed=speed)
    listening = await server.serve(port)
    bound = listening.sockets[0].getsockname()[1]
    print(f"listening {bound}", flush=True)
    async with listening:
        await listening.serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="simulated massagers for a remote controller")
    parser.add_argument("--devices", type=int, default=10)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--speed", type=float, default=1.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(args.devices, args.port, args.speed))


# -- the controller's side ---------------------------------------------------------------------


class RemoteAir:
    """One connection to a `SimulatorServer`, shared by every `RemoteBleakClient` using it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader, self._writer = reader, writer
        self.clients: dict[int, RemoteBleakClient] = {}
        self._task = asyncio.create_task(self._receive(), name="remote simulators")

    @classmethod
    async def open(cls, port: int, host: str = "127.0.0.1") -> RemoteAir:
        reader, writer = await asyncio.open_connection(host, port)
        _no_delay(writer)
        return cls(reader, writer)

    def device(self, index: int) -> BLEDevice:
        return BLEDevice(
            f"52:4D:00:00:{index >> 8:02X}:{index & 0xFF:02X}", "FootMassager-SIM", index
        )

    def send(self, kind: int, device: int, payload: bytes = b"") -> None:
        if self._writer.is_closing():
            raise BleakError("the simulator server is gone")
        self._writer.write(_frame(kind, device, payload))

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(ConnectionError):
            await self._writer.wait_closed()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _receive(self) -> None:
        async for kind, index, payload in _records(self._reader):
            client = self.clients.get(index)
            if client is not None:
                client._from_server(kind, payload)  # the air serves its clients
        for client in list(self.clients.values()):  # the server is gone: every link drops
            client._from_server(DROPPED, b"\x08")


class RemoteBleakClient(BaseBleakClient):
    """bleak client backend whose peer is simulated massager `details` of a `RemoteAir`."""

    def __init__(
        self,
        address_or_ble_device: BLEDevice | str,
        *,
        disconnected_callback: Callable[[], None] | None = None,
        timeout: float = 10.0,
        air: RemoteAir | None = None,
        **kwargs: Any,  # bleak passes services/bluez/winrt; the retry connector passes more
    ) -> None:
        super().__init__(
            address_or_ble_device, disconnected_callback=disconnected_callback, timeout=timeout
        )
        if air is None:
            raise BleakError("RemoteBleakClient needs air=RemoteAir")
        self._air = air
        self._index = int(getattr(address_or_ble_device, "details", -1))
        self._connected = False
        self._callbacks: dict[int, NotifyCallback] = {}
        self._answer: asyncio.Future[bytes] | None = None
        self._written: deque[asyncio.Future[None]] = deque()

    @property
    def mtu_size(self) -> int:
        return DEFAULT_MTU

    @property
    def is_connected(self) -> bool:
        return self._connected

    async def connect(self, pair: bool, **kwargs: Any) -> None:
        self._answer = asyncio.get_running_loop().create_future()
        self._air.clients[self._index] = self
        self._air.send(CONNECT, self._index)
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            refused = await self._answer
        if refused:
            raise BleakError(f"{self.address}: {refused.decode(errors='replace')}")
        self._connected = True
        self.services = build_services(DEFAULT_MTU)

    async def disconnect(self) -> None:
        if self._connected:
            self._connected = False
            self._callbacks.clear()
            with contextlib.suppress(BleakError):
                self._air.send(DISCONNECT, self._index)

    async def pair(self, *args: Any, **kwargs: Any) -> None:
        return None

    async def unpair(self) -> None:
        return None

    async def read_gatt_char(
        self, characteristic: BleakGATTCharacteristic, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        raise BleakError(f"characteristic {characteristic.uuid} is not readable here")

    async def read_gatt_descriptor(
        self, descriptor: BleakGATTDescriptor, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        return bytearray(
            b"\x01\x00" if descriptor.characteristic_handle in self._callbacks else b"\x00\x00"
        )

    async def write_gatt_char(
        self, characteristic: BleakGATTCharacteristic, data: SizedBuffer, response: bool
    ) -> None:
        if not self._connected:
            raise BleakError("Not connected")
        payload = bytes(data)
        if not response and len(payload) > DEFAULT_MTU - ATT_HEADER:
            raise BleakError(f"write of {len(payload)} bytes exceeds MTU {DEFAULT_MTU}")
        self._air.send(WRITE, self._index, bytes([response]) + payload)
        if response:  # a Write Request waits for the peer's Write Response
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._written.append(done)
            await done

    async def write_gatt_descriptor(
        self, descriptor: BleakGATTDescriptor, data: SizedBuffer
    ) -> None:
        return None

    async def start_notify(
        self, characteristic: BleakGATTCharacteristic, callback: NotifyCallback, **kwargs: Any
    ) -> None:
        self._callbacks[characteristic.handle] = callback

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        self._callbacks.pop(characteristic.handle, None)

    def _from_server(self, kind: int, payload: bytes) -> None:
        if kind in (CONNECTED, REFUSED):
            if self._answer is not None and not self._answer.done():
                self._answer.set_result(b"" if kind == CONNECTED else payload or b"refused")
        elif kind == WRITTEN:
            if self._written:
                self._written.popleft().set_result(None)
        elif kind in (NOTIFY, BATTERY) and self.services is not None:
            uuid = TELEMETRY_CHAR_UUID if kind == NOTIFY else BATTERY_LEVEL_CHAR_UUID
            char = self.services.get_characteristic(uuid)
            callback = self._callbacks.get(char.handle) if char else None
            if callback is not None:
                callback(bytearray(payload))
        elif kind == DROPPED and self._connected:
            self._connected = False
            self._callbacks.clear()
            while self._written:
                self._written.popleft().set_exception(BleakError("disconnected"))
            if self._disconnected_callback is not None:
                asyncio.get_running_loop().call_soon(self._disconnected_callback)


if __name__ == "__main__":
    main()
