"""A fake ESPHome Bluetooth proxy on loopback, in front of simulated massagers.

It speaks the ESPHome native API the way aioesphomeapi expects it from a proxy: plaintext or
Noise-encrypted framing (Noise_NNpsk0_25519_ChaChaPoly_SHA256, the device's side of the
handshake, with the `noiseprotocol` package aioesphomeapi itself uses), hello, device info
(its Bluetooth proxy feature flags), ping, connection-slot reports, raw LE advertisements, and
the Bluetooth device/GATT requests bleak-esphome sends (connect v3, services, write, notify,
read, disconnect), all answered from `sim.hosts.SimulatedMassager`s the way
`sim/hosts/memory.py` drives them. Messages are aioesphomeapi's own protobuf classes.

What it is not: an ESP32. Radio timing, the controller's real slot behaviour, firmware quirks
and the Noise implementation of ESPHome's C++ side are only as faithful as this file.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from aioesphomeapi.core import MESSAGE_TYPE_TO_PROTO
from aioesphomeapi.model import BluetoothProxyFeature
from bleak.assigned_numbers import CHARACTERISTIC_PROPERTIES
from bluetooth_data_tools import mac_to_int
from noise.connection import NoiseConnection  # type: ignore[import-untyped]

from firmware_bridge.protocol import BATTERY_LEVEL_CHAR_UUID, TELEMETRY_CHAR_UUID
from sim.hosts import SimulatedMassager
from sim.hosts.gatt import layout_for

_LOGGER = logging.getLogger(__name__)

pb: Any = importlib.import_module("aioesphomeapi.api_pb2")  # generated: no type stubs
TYPE_OF: dict[type, int] = {cls: number for number, cls in MESSAGE_TYPE_TO_PROTO.items()}
NOISE_PROLOGUE = b"NoiseAPIInit\x00\x00"
NOISE_PROTOCOL = b"Noise_NNpsk0_25519_ChaChaPoly_SHA256"
CCCD_UUID = "00002902-0000-1000-8000-00805f9b34fb"
PROPERTY_BITS: dict[str, int] = {name: mask for mask, name in CHARACTERISTIC_PROPERTIES.items()}
ADVERTISING_INTERVAL_S = 0.05
PROXY_MTU = 247
ESP_GATT_CONN_FAIL_ESTABLISH = 0x3E  # what the ESP32 reports for a device that never answered
RANDOM_ADDRESS = 1  # BluetoothLERawAdvertisement.address_type
ALL_FEATURES = (
    BluetoothProxyFeature.PASSIVE_SCAN
    | BluetoothProxyFeature.ACTIVE_CONNECTIONS
    | BluetoothProxyFeature.REMOTE_CACHING
    | BluetoothProxyFeature.RAW_ADVERTISEMENTS
)
PASSIVE_FEATURES = BluetoothProxyFeature.PASSIVE_SCAN | BluetoothProxyFeature.RAW_ADVERTISEMENTS


def advertisement_bytes(massager: SimulatedMassager) -> bytes:
    """The AD structures a proxy forwards raw: flags, name, 128-bit services, manufacturer."""
    out = bytearray(b"\x02\x01\x06")
    name = massager.name.encode()
    out += bytes((len(name) + 1, 0x09)) + name
    for service in massager.advertised_services:
        out += bytes((17, 0x07)) + uuid.UUID(service).bytes[::-1]
    for company, data in massager.manufacturer_data.items():
        out += bytes((len(data) + 3, 0xFF)) + company.to_bytes(2, "little") + data
    return bytes(out)


def split_uuid(text: str) -> list[int]:
    value = uuid.UUID(text).int
    return [value >> 64, value & ((1 << 64) - 1)]


@dataclass
class FakeProxy:
    """One proxy: `await start()` listens on 127.0.0.1 (port 0: any free one)."""

    massagers: list[SimulatedMassager] = field(default_factory=list)
    name: str = "proxy-kitchen"
    bluetooth_mac: str = "AA:BB:CC:00:00:01"
    noise_psk: bytes | None = None  # raw 32 bytes; None: plaintext
    features: int = ALL_FEATURES
    slots: int = 3
    rssi: int = -60
    host: str = "127.0.0.1"
    port: int = 0
    sessions: int = 0  # API connections accepted (handshakes that got as far as hello)
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _links: dict[int, _Link] = field(default_factory=dict)

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def free(self) -> int:
        return self.slots - len(self._links)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        session = _Session(self, reader, writer)
        try:
            await session.run()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._tasks.discard(task)
            session.close()


@dataclass
class _Link:
    """One Bluetooth connection the proxy holds to a simulated massager."""

    massager: SimulatedMassager
    address: int
    notifying: set[int] = field(default_factory=set)
    handles: dict[str, int] = field(default_factory=dict)  # characteristic UUID -> handle


class _Session:
    """One API connection (one client)."""

    def __init__(
        self, proxy: FakeProxy, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.proxy = proxy
        self.reader = reader
        self.writer = writer
        self.noise: Any = None  # a NoiseConnection once the handshake is done
        self.advertising: asyncio.Task[None] | None = None
        self.closed = False

    # -- framing ------------------------------------------------------------------------

    async def run(self) -> None:
        first = await self.reader.readexactly(1)
        if first == b"\x01":
            if self.proxy.noise_psk is None:  # a plaintext device answers in plaintext
                self.writer.write(b"\x00\x00\x00")
                await self.writer.drain()
                return
            if not await self._noise_handshake():
                return
        elif first == b"\x00":
            if self.proxy.noise_psk is not None:  # an encrypted device answers with Noise
                self.writer.write(b"\x01\x00\x00")
                await self.writer.drain()
                return
            self.reader = _Pushback(first, self.reader)  # type: ignore[assignment]
        else:
            return
        while not self.closed:
            msg_type, payload = await self._read_message()
            cls = MESSAGE_TYPE_TO_PROTO.get(msg_type)
            if cls is None:
                continue
            message = cls()
            message.ParseFromString(payload)
            await self._handle(message)

    async def _read_frame(self) -> bytes:
        header = await self.reader.readexactly(3)
        if header[0] != 0x01:
            raise ConnectionError("bad noise preamble")
        return await self.reader.readexactly((header[1] << 8) | header[2])

    def _write_frame(self, data: bytes) -> None:
        self.writer.write(bytes((0x01, len(data) >> 8, len(data) & 0xFF)) + data)

    async def _noise_handshake(self) -> bool:
        rest = await self.reader.readexactly(2)  # the rest of the empty ClientHello frame
        length = (rest[0] << 8) | rest[1]
        await self.reader.readexactly(length)
        handshake = await self._read_frame()
        proxy = self.proxy
        self._write_frame(b"\x01" + proxy.name.encode() + b"\x00" + proxy.bluetooth_mac.encode())
        proto = NoiseConnection.from_name(NOISE_PROTOCOL)
        proto.set_as_responder()
        proto.set_psks(proxy.noise_psk)
        proto.set_prologue(NOISE_PROLOGUE)
        proto.start_handshake()
        try:
            proto.read_message(handshake[1:])
        except Exception:  # wrong key: the MAC of the client's message does not verify
            self._write_frame(b"\x01Handshake MAC failure")
            await self.writer.drain()
            return False
        self._write_frame(b"\x00" + proto.write_message())
        await self.writer.drain()
        self.noise = proto
        return True

    async def _read_message(self) -> tuple[int, bytes]:
        if self.noise is not None:
            frame = self.noise.decrypt(await self._read_frame())
            msg_type = (frame[0] << 8) | frame[1]
            length = (frame[2] << 8) | frame[3]
            return msg_type, bytes(frame[4 : 4 + length])
        if (await self.reader.readexactly(1)) != b"\x00":
            raise ConnectionError("bad plaintext preamble")
        length = await self._varint()
        msg_type = await self._varint()
        return msg_type, await self.reader.readexactly(length)

    async def _varint(self) -> int:
        value = shift = 0
        while True:
            byte = (await self.reader.readexactly(1))[0]
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7

    def send(self, message: Any) -> None:
        if self.closed:
            return
        msg_type = TYPE_OF[type(message)]
        data = message.SerializeToString()
        if self.noise is not None:
            header = bytes((msg_type >> 8, msg_type & 0xFF, len(data) >> 8, len(data) & 0xFF))
            self._write_frame(self.noise.encrypt(header + data))
        else:
            self.writer.write(b"\x00" + _varint(len(data)) + _varint(msg_type) + data)

    def close(self) -> None:
        self.closed = True
        if self.advertising is not None:
            self.advertising.cancel()
        for address in list(self.proxy._links):
            self._drop(address, notify=False)
        self.writer.close()

    # -- the API ------------------------------------------------------------------------

    async def _handle(self, msg: Any) -> None:  # noqa: PLR0912 - one branch per request
        proxy = self.proxy
        kind = type(msg).__name__
        if kind == "HelloRequest":
            proxy.sessions += 1
            self.send(
                pb.HelloResponse(
                    api_version_major=1,
                    api_version_minor=12,
                    server_info=f"{proxy.name} (fake proxy)",
                    name=proxy.name,
                )
            )
        elif kind == "DeviceInfoRequest":
            self.send(
                pb.DeviceInfoResponse(
                    name=proxy.name,
                    friendly_name=proxy.name.replace("-", " ").title(),
                    mac_address="AA:BB:CC:FF:FF:01",
                    bluetooth_mac_address=proxy.bluetooth_mac,
                    esphome_version="2026.1.0",
                    model="fake-esp32",
                    bluetooth_proxy_feature_flags=int(proxy.features),
                    api_encryption_supported=proxy.noise_psk is not None,
                )
            )
        elif kind == "PingRequest":
            self.send(pb.PingResponse())
        elif kind == "DisconnectRequest":
            self.send(pb.DisconnectResponse())
            await self.writer.drain()
            self.closed = True
        elif kind == "SubscribeBluetoothConnectionsFreeRequest":
            self._report_slots()
        elif kind == "SubscribeBluetoothLEAdvertisementsRequest":
            if self.advertising is None:
                self.advertising = asyncio.create_task(self._advertise())
        elif kind == "UnsubscribeBluetoothLEAdvertisementsRequest":
            if self.advertising is not None:
                self.advertising.cancel()
                self.advertising = None
        elif kind == "BluetoothDeviceRequest":
            await self._device_request(msg)
        elif kind == "BluetoothGATTGetServicesRequest":
            self._services(msg.address)
        elif kind == "BluetoothGATTWriteRequest":
            link = proxy._links.get(msg.address)
            if link is None:
                self._gatt_error(msg.address, msg.handle)
                return
            link.massager.write(bytes(msg.data), with_response=msg.response)
            if msg.response:
                self.send(pb.BluetoothGATTWriteResponse(address=msg.address, handle=msg.handle))
        elif kind == "BluetoothGATTWriteDescriptorRequest":
            self.send(pb.BluetoothGATTWriteResponse(address=msg.address, handle=msg.handle))
        elif kind == "BluetoothGATTNotifyRequest":
            link = proxy._links.get(msg.address)
            if link is None:
                return
            if msg.enable:
                link.notifying.add(msg.handle)
                self.send(pb.BluetoothGATTNotifyResponse(address=msg.address, handle=msg.handle))
            else:
                link.notifying.discard(msg.handle)
        elif kind == "BluetoothGATTReadRequest":
            self._read(msg.address, msg.handle)

    async def _advertise(self) -> None:
        while True:
            heard = [
                pb.BluetoothLERawAdvertisement(
                    address=mac_to_int(m.address),
                    rssi=self.proxy.rssi,
                    address_type=RANDOM_ADDRESS,
                    data=advertisement_bytes(m),
                )
                for m in self.proxy.massagers
                if m.reachable and not m.connected
            ]
            if heard:
                self.send(pb.BluetoothLERawAdvertisementsResponse(advertisements=heard))
            await asyncio.sleep(ADVERTISING_INTERVAL_S)

    def _report_slots(self) -> None:
        proxy = self.proxy
        self.send(
            pb.BluetoothConnectionsFreeResponse(
                free=proxy.free, limit=proxy.slots, allocated=list(proxy._links)
            )
        )

    def _connection(self, address: int, *, connected: bool, error: int = 0) -> None:
        mtu = PROXY_MTU if connected else 0
        self.send(
            pb.BluetoothDeviceConnectionResponse(
                address=address, connected=connected, mtu=mtu, error=error
            )
        )

    async def _device_request(self, msg: Any) -> None:
        proxy = self.proxy
        request = msg.request_type
        connect = {
            pb.BLUETOOTH_DEVICE_REQUEST_TYPE_CONNECT_V3_WITH_CACHE,
            pb.BLUETOOTH_DEVICE_REQUEST_TYPE_CONNECT_V3_WITHOUT_CACHE,
        }
        if request in connect:
            massager = next(
                (m for m in proxy.massagers if mac_to_int(m.address) == msg.address), None
            )
            if (
                massager is None
                or not massager.reachable
                or massager.connected
                or not proxy.features & BluetoothProxyFeature.ACTIVE_CONNECTIONS
                or proxy.free <= 0
            ):
                self._connection(msg.address, connected=False, error=ESP_GATT_CONN_FAIL_ESTABLISH)
                return
            await massager.start()
            link = _Link(massager, msg.address)
            massager.on_notify = lambda data: self._notify(link, TELEMETRY_CHAR_UUID, data)
            massager.on_battery = lambda pct: self._notify(
                link, BATTERY_LEVEL_CHAR_UUID, bytes([pct])
            )
            massager.on_disconnect = lambda reason: self._peer_dropped(link, reason)
            massager.attach()
            proxy._links[msg.address] = link
            self._connection(msg.address, connected=True)
            self._report_slots()
        elif request == pb.BLUETOOTH_DEVICE_REQUEST_TYPE_DISCONNECT:
            self._drop(msg.address, notify=True)

    def _drop(self, address: int, *, notify: bool, error: int = 0) -> None:
        link = self.proxy._links.pop(address, None)
        if link is not None:
            link.massager.on_notify = link.massager.on_battery = None
            link.massager.on_disconnect = None
            link.massager.detach()
        if notify:
            self._connection(address, connected=False, error=error)
            self._report_slots()

    def _peer_dropped(self, link: _Link, reason: int) -> None:
        if self.proxy._links.get(link.address) is link:
            self._drop(link.address, notify=True, error=reason)

    def _services(self, address: int) -> None:
        link = self.proxy._links.get(address)
        if link is None:
            self._gatt_error(address, 0)
            return
        services = []
        for spec in layout_for(link.massager.description):
            chars = []
            for char in spec.characteristics:
                link.handles[char.uuid] = char.handle
                bits = 0
                for prop in char.properties:
                    bits |= PROPERTY_BITS[prop]
                descriptors = []
                if "notify" in char.properties:
                    descriptors.append(
                        pb.BluetoothGATTDescriptor(
                            uuid=split_uuid(CCCD_UUID), handle=char.handle + 1
                        )
                    )
                chars.append(
                    pb.BluetoothGATTCharacteristic(
                        uuid=split_uuid(char.uuid),
                        handle=char.handle,
                        properties=bits,
                        descriptors=descriptors,
                    )
                )
            services.append(
                pb.BluetoothGATTService(
                    uuid=split_uuid(spec.uuid), handle=spec.handle, characteristics=chars
                )
            )
        self.send(pb.BluetoothGATTGetServicesResponse(address=address, services=services))
        self.send(pb.BluetoothGATTGetServicesDoneResponse(address=address))

    def _notify(self, link: _Link, char_uuid: str, data: bytes) -> None:
        handle = link.handles.get(char_uuid)
        if handle is not None and handle in link.notifying:
            self.send(
                pb.BluetoothGATTNotifyDataResponse(address=link.address, handle=handle, data=data)
            )

    def _read(self, address: int, handle: int) -> None:
        link = self.proxy._links.get(address)
        if link is None or handle != link.handles.get(BATTERY_LEVEL_CHAR_UUID):
            self._gatt_error(address, handle)
            return
        level = round(link.massager.firmware.battery_pct)
        self.send(pb.BluetoothGATTReadResponse(address=address, handle=handle, data=bytes([level])))

    def _gatt_error(self, address: int, handle: int) -> None:
        self.send(pb.BluetoothGATTErrorResponse(address=address, handle=handle, error=0x85))


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


class _Pushback:
    """A StreamReader with one byte put back (the preamble the framing check read)."""

    def __init__(self, head: bytes, reader: asyncio.StreamReader) -> None:
        self._head = head
        self._reader = reader

    async def readexactly(self, n: int) -> bytes:
        if not self._head:
            return await self._reader.readexactly(n)
        take, self._head = self._head[:n], self._head[n:]
        if len(take) == n:
            return take
        return take + await self._reader.readexactly(n - len(take))


async def started(proxies: Iterable[FakeProxy]) -> list[FakeProxy]:
    """Start each proxy; the caller closes them."""
    found = list(proxies)
    for proxy in found:
        await proxy.start()
    return found
