"""Tier 2: bleak's front end + the bumble-central backend + a bumble GATT peripheral, no mocks."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import statistics
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from bleak import BleakClient, BleakScanner
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.exc import BleakError, BleakGATTProtocolError
from bleak_retry_connector import establish_connection
from bumble import hci
from bumble.controller import Controller
from bumble.device import Device
from bumble.host import Host
from bumble.transport.common import AsyncPipeSink
from bumble.transport.tcp_server import open_tcp_server_transport_with_socket

from firmware_bridge.protocol import (
    BATTERY_LEVEL_CHAR_UUID,
    CONTROL_CHAR_UUID,
    SERVICE_UUID,
    TELEMETRY_CHAR_UUID,
    Capabilities,
    FrameType,
    Hello,
    QueryStatus,
    decode,
    encode,
)
from firmware_bridge.transport.bumble_backend import (
    BumbleBleakClient,
    BumbleBleakScanner,
    open_central,
)
from sim.firmware import FaultPlan
from sim.hosts.bumble_host import BumbleMassagerHost, serve
from sim.hosts.gatt import LAYOUT
from sim.hosts.runtime import SimulatedMassager
from sim.hosts.virtual import FixedController, VirtualRadio

PROMPT_S = 1.0  # link loss must fail in-flight operations well inside this


@pytest.fixture(autouse=True)
async def no_leftover_tasks() -> AsyncIterator[None]:
    """Every test leaves the loop as it found it (set up first, so checked last)."""
    yield
    await asyncio.sleep(0)
    current = asyncio.current_task()
    left = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
    assert not left, left


@pytest.fixture
async def radio() -> AsyncIterator[VirtualRadio]:
    radio = VirtualRadio()
    yield radio
    await radio.close()


@pytest.fixture
async def central(radio: VirtualRadio) -> Device:
    return await radio.add_central()


@pytest.fixture
def plan() -> FaultPlan:
    return FaultPlan()


@pytest.fixture
async def massager(plan: FaultPlan) -> AsyncIterator[SimulatedMassager]:
    massager = SimulatedMassager(plan=plan)
    yield massager
    await massager.close()


@pytest.fixture
async def host(radio: VirtualRadio, massager: SimulatedMassager) -> BumbleMassagerHost:
    return await radio.add_peripheral(massager)


@pytest.fixture
async def ble_device(host: BumbleMassagerHost, central: Device) -> BLEDevice:
    return await find(central)


def bumble_args(central: Device) -> dict[str, Any]:
    """Backend keyword arguments; bleak forwards them, but its scanner stubs do not declare them."""
    return {"central": central}


async def find(central: Device, name: str | None = None) -> BLEDevice:
    def matches(_device: BLEDevice, adv: AdvertisementData) -> bool:
        return SERVICE_UUID in adv.service_uuids and (name is None or adv.local_name == name)

    device = await BleakScanner.find_device_by_filter(
        matches,
        timeout=2,
        service_uuids=[SERVICE_UUID],
        backend=BumbleBleakScanner,
        **bumble_args(central),
    )
    assert device is not None
    return device


class Session:
    """A connected BleakClient with telemetry subscribed and frames decoded."""

    def __init__(self, client: BleakClient) -> None:
        self.client = client
        self.frames: asyncio.Queue[bytes] = asyncio.Queue()
        self.disconnects = 0
        self.disconnected = asyncio.Event()

    async def subscribe(self) -> None:
        await self.client.start_notify(
            TELEMETRY_CHAR_UUID, lambda _c, data: self.frames.put_nowait(bytes(data))
        )

    async def expect(self, frame_type: FrameType, within_s: float = 1.0) -> bytes:
        """The next notification of `frame_type` (periodic STATUS frames are skipped)."""
        async with asyncio.timeout(within_s):
            while True:
                raw = await self.frames.get()
                received = decode(raw).message.TYPE
                if received == frame_type:
                    return raw


@contextlib.asynccontextmanager
async def session(
    ble_device: BLEDevice | str, central: Device, **kwargs: Any
) -> AsyncIterator[Session]:
    holder: list[Session] = []

    def disconnected(_client: BleakClient) -> None:
        holder[0].disconnects += 1
        holder[0].disconnected.set()

    client = BleakClient(
        ble_device, disconnected, backend=BumbleBleakClient, central=central, **kwargs
    )
    holder.append(Session(client))
    await client.connect()
    try:
        await holder[0].subscribe()
        yield holder[0]
    finally:
        await client.disconnect()


# -- discovery and connection ------------------------------------------------------------------


async def test_scan_finds_massager_by_service_uuid(
    host: BumbleMassagerHost, central: Device, massager: SimulatedMassager
) -> None:
    device = await find(central, name=massager.name)  # the full name comes in the scan response
    assert device.address == host.address == massager.address
    assert device.name == massager.name
    other = await BleakScanner.discover(
        timeout=0.1,
        service_uuids=["0000abcd-0000-1000-8000-00805f9b34fb"],
        backend=BumbleBleakScanner,
        **bumble_args(central),
    )
    assert other == []
    assert not central.is_scanning


async def test_services_match_tier1_layout(ble_device: BLEDevice, central: Device) -> None:
    async with session(ble_device, central) as s:
        client = s.client
        assert client.mtu_size == 247
        for spec in LAYOUT:
            service = client.services.get_service(spec.uuid)
            assert service is not None
            for char_spec in spec.characteristics:
                char = service.get_characteristic(char_spec.uuid)
                assert char is not None
                assert sorted(char.properties) == sorted(char_spec.properties)
                assert char.max_write_without_response_size == 244
                if "notify" in char_spec.properties:
                    cccd = char.get_descriptor("00002902-0000-1000-8000-00805f9b34fb")
                    assert cccd is not None
                    assert await client.read_gatt_descriptor(cccd.handle) in (
                        bytearray(b"\x01\x00"),  # telemetry: subscribed by session()
                        bytearray(b"\x00\x00"),
                    )


async def test_hello_capabilities_round_trip_both_write_kinds(
    ble_device: BLEDevice, central: Device, massager: SimulatedMassager
) -> None:
    async with session(ble_device, central) as s:
        await s.client.write_gatt_char(CONTROL_CHAR_UUID, encode(Hello(), 1), response=False)
        caps = decode(await s.expect(FrameType.CAPABILITIES)).message
        assert isinstance(caps, Capabilities)
        assert caps == massager.firmware.capabilities
        await s.client.write_gatt_char(CONTROL_CHAR_UUID, encode(QueryStatus(), 2), response=True)
        await s.expect(FrameType.STATUS)
        received = [r.frame.seq for r in massager.firmware.received if r.frame is not None]
        assert received == [1, 2]


async def test_battery_read_and_notify(
    ble_device: BLEDevice, central: Device, massager: SimulatedMassager
) -> None:
    async with session(ble_device, central) as s:
        level = await s.client.read_gatt_char(BATTERY_LEVEL_CHAR_UUID)
        assert level == bytearray([round(massager.firmware.battery_pct)])
        updates: asyncio.Queue[bytearray] = asyncio.Queue()
        await s.client.start_notify(BATTERY_LEVEL_CHAR_UUID, lambda _c, d: updates.put_nowait(d))
        assert massager.on_battery is not None
        massager.on_battery(42)  # what the runtime does when the firmware's level changes
        assert await asyncio.wait_for(updates.get(), 1) == bytearray([42])
        status = await s.client.read_gatt_char(TELEMETRY_CHAR_UUID)
        assert decode(status).message == massager.firmware.status()


async def test_att_errors_become_bleak_protocol_errors(
    ble_device: BLEDevice, central: Device
) -> None:
    async with session(ble_device, central) as s:
        with pytest.raises(BleakGATTProtocolError) as write_error:
            await s.client.write_gatt_char(BATTERY_LEVEL_CHAR_UUID, b"\x01", response=True)
        assert write_error.value.code == 0x03  # write not permitted
        with pytest.raises(BleakGATTProtocolError) as read_error:
            await s.client.read_gatt_char(CONTROL_CHAR_UUID)
        assert read_error.value.code == 0x02  # read not permitted
        with pytest.raises(BleakError, match="exceeds"):
            await s.client.write_gatt_char(CONTROL_CHAR_UUID, bytes(245), response=False)
        assert s.client.is_connected  # none of these costs the link


async def test_absent_address_times_out_cleanly_then_connect_works(
    ble_device: BLEDevice, central: Device
) -> None:
    ghost = BleakClient(
        "F0:0D:00:00:09:99", backend=BumbleBleakClient, central=central, timeout=0.2
    )
    started = time.perf_counter()
    with pytest.raises(TimeoutError):
        await ghost.connect()
    assert time.perf_counter() - started < 0.5
    async with session(ble_device, central) as s:  # needs FixedController's cancel
        assert s.client.is_connected


async def test_stock_controller_cancel_is_broken(
    radio: VirtualRadio, host: BumbleMassagerHost
) -> None:
    """Why FixedController exists: with bumble's own, a timed-out connect never returns."""
    controller = Controller("stock", link=radio.link)
    device = Device(
        name="stock",
        address=hci.Address("C0:00:00:00:0F:01"),
        host=Host(controller, AsyncPipeSink(controller)),
    )
    await device.power_on()
    try:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.6):
                await device.connect("F0:0D:00:00:09:99", timeout=0.2)
        assert controller.pending_le_connection is not None
    finally:
        await device.power_off()
        radio.link.remove_controller(controller)


async def test_retry_connector_establishes_connection(
    ble_device: BLEDevice, central: Device, massager: SimulatedMassager
) -> None:
    client = await establish_connection(
        BleakClient, ble_device, massager.name, backend=BumbleBleakClient, central=central
    )
    try:
        assert client.is_connected
        char = client.services.get_characteristic(CONTROL_CHAR_UUID)
        assert char is not None
        assert char.max_write_without_response_size == 244
        frames: asyncio.Queue[bytes] = asyncio.Queue()
        await client.start_notify(TELEMETRY_CHAR_UUID, lambda _c, d: frames.put_nowait(bytes(d)))
        await client.write_gatt_char(char, encode(Hello(), 7), response=False)
        async with asyncio.timeout(1):
            while decode(await frames.get()).message.TYPE != FrameType.CAPABILITIES:
                pass
    finally:
        await client.disconnect()


async def test_two_massagers_on_one_central(radio: VirtualRadio, central: Device) -> None:
    massagers = [SimulatedMassager(name=f"M{i}", address=f"F0:0D:00:00:00:1{i}") for i in (1, 2)]
    try:
        for massager in massagers:
            await radio.add_peripheral(massager)
        devices = [await find(central, name=m.name) for m in massagers]
        clients = [BleakClient(d, backend=BumbleBleakClient, central=central) for d in devices]
        await asyncio.gather(*(c.connect() for c in clients))  # connects are serialised inside
        try:
            for client, seq in zip(clients, (1, 2), strict=True):
                await client.write_gatt_char(CONTROL_CHAR_UUID, encode(Hello(), seq), True)
            assert [m.firmware.received[0].frame.seq for m in massagers] == [1, 2]  # type: ignore[union-attr]
        finally:
            await asyncio.gather(*(c.disconnect() for c in clients))
    finally:
        for massager in massagers:
            await massager.close()


# -- link loss ------------------------------------------------------------------------------------


@pytest.mark.parametrize("plan", [FaultPlan(slow_write_s=0.5)])
@pytest.mark.parametrize("how", ["peripheral_disconnect", "device_reboot", "out_of_range"])
async def test_link_loss_fails_in_flight_operations_and_calls_back_once(
    *,
    how: str,
    radio: VirtualRadio,
    host: BumbleMassagerHost,
    ble_device: BLEDevice,
    central: Device,
    massager: SimulatedMassager,
) -> None:
    async with session(ble_device, central) as s:
        write = asyncio.create_task(
            s.client.write_gatt_char(CONTROL_CHAR_UUID, encode(Hello(), 1), response=True)
        )
        await asyncio.sleep(0.05)  # the peripheral is now sitting in its slow write
        read = asyncio.create_task(s.client.read_gatt_char(BATTERY_LEVEL_CHAR_UUID))  # queued
        await asyncio.sleep(0.01)
        started = time.perf_counter()
        if how == "out_of_range":
            radio.out_of_range(host)
            reason = "0x08"
        elif how == "device_reboot":
            massager.drop_link(0x08)  # goes silent: the central's supervision timer expires
            reason = "0x08"
        else:
            massager.drop_link(0x13)
            reason = "0x13"
        for task in (write, read):
            with pytest.raises(BleakError, match=f"disconnected \\(reason {reason}"):
                await task
        assert time.perf_counter() - started < PROMPT_S
        await asyncio.wait_for(s.disconnected.wait(), PROMPT_S)
        assert not s.client.is_connected
        with pytest.raises(BleakError, match="disconnected"):
            await s.client.write_gatt_char(CONTROL_CHAR_UUID, encode(Hello(), 2), response=False)
        await asyncio.sleep(0.05)
        assert s.disconnects == 1
    assert massager.firmware.received == []  # the slow write never reached the firmware
    if how == "out_of_range":
        with pytest.raises(TimeoutError):
            await BleakClient(
                ble_device, backend=BumbleBleakClient, central=central, timeout=0.2
            ).connect()
        radio.back_in_range(host)
    async with session(ble_device, central) as again:
        await again.client.write_gatt_char(CONTROL_CHAR_UUID, encode(Hello(), 3), response=False)
        await again.expect(FrameType.CAPABILITIES)


async def test_connect_failing_part_way_leaves_no_link(
    ble_device: BLEDevice, central: Device, massager: SimulatedMassager
) -> None:
    client = BleakClient(
        ble_device, backend=BumbleBleakClient, central=central, operation_timeout=1e-6
    )
    with pytest.raises(TimeoutError, match="MTU exchange timed out"):
        await client.connect()  # connected, then the MTU exchange cannot finish in time
    assert not client.is_connected
    assert not central.connections
    assert not massager.connected
    async with session(ble_device, central) as s:
        assert s.client.is_connected


async def test_requested_disconnect_does_not_call_back(
    ble_device: BLEDevice, central: Device, massager: SimulatedMassager
) -> None:
    async with session(ble_device, central) as s:
        pass
    await asyncio.sleep(0.05)
    assert s.disconnects == 0
    assert not s.client.is_connected
    assert not massager.connected


async def test_reconnect_twice_in_a_row(
    ble_device: BLEDevice, central: Device, massager: SimulatedMassager
) -> None:
    client = BleakClient(ble_device, backend=BumbleBleakClient, central=central)
    for seq in (1, 2, 3):
        await client.connect()
        try:
            await client.write_gatt_char(CONTROL_CHAR_UUID, encode(Hello(), seq), response=True)
            assert massager.connected
        finally:
            await client.disconnect()
        assert not massager.connected
    assert massager.connections == 3


@pytest.mark.parametrize("plan", [FaultPlan(slow_write_s=0.3)])
async def test_cancelled_write_raises_cancelled_error_and_link_stays_usable(
    ble_device: BLEDevice, central: Device, massager: SimulatedMassager
) -> None:
    async with session(ble_device, central) as s:
        write = asyncio.create_task(
            s.client.write_gatt_char(CONTROL_CHAR_UUID, encode(Hello(), 1), response=True)
        )
        await asyncio.sleep(0.05)
        write.cancel()
        with pytest.raises(asyncio.CancelledError):
            await write
        # The abandoned request still gets its own response, so this one is not fooled by it.
        started = time.perf_counter()
        await s.client.write_gatt_char(CONTROL_CHAR_UUID, encode(Hello(), 2), response=True)
        assert time.perf_counter() - started > 0.3  # its own slow write, not the late response
        assert [r.frame.seq for r in massager.firmware.received if r.frame] == [1, 2]
        assert s.client.is_connected
        assert s.disconnects == 0


@pytest.mark.parametrize("plan", [FaultPlan(slow_write_s=0.5)])
async def test_operation_timeout_drops_the_link(ble_device: BLEDevice, central: Device) -> None:
    async with session(ble_device, central, operation_timeout=0.1) as s:
        with pytest.raises(TimeoutError, match="timed out"):
            await s.client.write_gatt_char(CONTROL_CHAR_UUID, encode(Hello(), 1), response=True)
        await asyncio.wait_for(s.disconnected.wait(), PROMPT_S)
        assert s.disconnects == 1
        assert not s.client.is_connected


# -- latency -------------------------------------------------------------------------------------


async def round_trips(latency_s: float, count: int) -> tuple[list[float], list[int]]:
    """HELLO → CAPABILITIES times, and the sequence numbers of a burst as the firmware saw them."""
    radio = VirtualRadio(latency_s=latency_s)
    massager = SimulatedMassager()
    try:
        central = await radio.add_central()
        await radio.add_peripheral(massager)
        async with session(await find(central), central) as s:
            times = []
            for seq in range(count):
                started = time.perf_counter()
                await s.client.write_gatt_char(CONTROL_CHAR_UUID, encode(Hello(), seq), False)
                await s.expect(FrameType.CAPABILITIES)
                times.append(time.perf_counter() - started)
            massager.firmware.received.clear()
            for seq in range(50):
                await s.client.write_gatt_char(CONTROL_CHAR_UUID, encode(Hello(), seq), False)
            for _ in range(50):
                await s.expect(FrameType.CAPABILITIES)
            order = [r.frame.seq for r in massager.firmware.received if r.frame]
        return times, order
    finally:
        await radio.close()
        await massager.close()


async def test_latency_slows_round_trips_and_keeps_order() -> None:
    fast, fast_order = await round_trips(0.0, 20)
    slow, slow_order = await round_trips(0.005, 20)
    assert statistics.median(fast) < 0.005
    assert statistics.median(slow) >= 0.010  # two one-way trips of 5 ms
    assert fast_order == slow_order == list(range(50))


# -- real HCI transports (H4 over TCP into the same virtual link) ---------------------------------


async def test_serve_and_open_central_over_tcp_hci(radio: VirtualRadio) -> None:
    bridges = []
    for index in (1, 2):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        transport = await open_tcp_server_transport_with_socket(sock)
        server: asyncio.Server = transport.server  # type: ignore[attr-defined]  # subclass attr
        controller = FixedController(
            f"tcp-{index}",
            host_source=transport.source,
            host_sink=transport.sink,
            link=radio.link,
            public_address=f"A0:00:00:00:0E:0{index}",
        )
        bridges.append((transport, server, controller, sock.getsockname()[1]))
    massager = SimulatedMassager(name="TcpSim")
    serving = asyncio.create_task(serve(f"tcp-client:127.0.0.1:{bridges[0][3]}", massager))
    try:
        async with open_central(f"tcp-client:127.0.0.1:{bridges[1][3]}") as central:
            device = await find(central, name="TcpSim")
            async with session(device, central) as s:
                await s.client.write_gatt_char(CONTROL_CHAR_UUID, encode(Hello(), 1), True)
                await s.expect(FrameType.CAPABILITIES)
    finally:
        serving.cancel()
        with pytest.raises(asyncio.CancelledError):
            await serving
        for transport, server, controller, _port in bridges:
            radio.link.remove_controller(controller)
            await transport.close()
            server.close()
            await server.wait_closed()
    assert not massager.connected


async def test_a_request_cancelled_before_it_began_leaves_no_unawaited_coroutine() -> None:
    """A link lost in the same loop iteration cancels an ATT request's task before its first
    step; its write coroutine must be closed, not left to warn "never awaited" (seen in CI)."""
    import gc  # noqa: PLC0415
    import warnings  # noqa: PLC0415

    from tests.rigs import open_rig  # noqa: PLC0415

    async with open_rig("bumble") as rig:
        client = rig.bleak_client()
        await client.connect()
        try:
            backend = client._backend
            assert isinstance(backend, BumbleBleakClient)
            started = asyncio.Event()

            async def request() -> None:
                started.set()

            runner = asyncio.create_task(backend._run("write", request()))
            await asyncio.sleep(0)  # the runner has queued its request's task, not started it
            for task in list(backend._operations):
                task.cancel()
            with pytest.raises(BleakError):
                await runner
            assert not started.is_set()  # it really never began
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                gc.collect()
            assert not [w for w in caught if "never awaited" in str(w.message)]
        finally:
            await client.disconnect()
