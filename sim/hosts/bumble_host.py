"""Tier 2: the simulated massager behind a real bumble GATT peripheral.

`BumbleMassagerHost` exposes a `SimulatedMassager` with the same GATT table as tier 1 (see
`sim.hosts.gatt.LAYOUT`; handles differ) on any bumble `Device`: the virtual radio in tests, or a
real controller through `serve("usb:0", massager)`, which makes it a BLE device a phone can see.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import Awaitable, Callable

from bumble import att, core, data_types, gatt, hci
from bumble.core import UUID, AdvertisingData
from bumble.device import Connection, Device
from bumble.gatt_server import Server
from bumble.transport import open_transport

from firmware_bridge.protocol import SERVICE_UUID, TELEMETRY_CHAR_UUID, encode
from sim.firmware import LINK_LOSS_REASON
from sim.hosts.runtime import SimulatedMassager

_LOGGER = logging.getLogger(__name__)

ADVERTISING_INTERVAL_MS = 20.0  # fast advertising: a central finds and connects in ~25 ms
LEGACY_ADV_MAX = 31  # bytes of advertising data a legacy advertising PDU carries
JOB_TIMEOUT_S = 2.0  # a notify/disconnect that takes longer is stuck (bumble can wait forever)
# HCI_Disconnect accepts only a few reasons; a device that reboots just goes silent, which the
# central sees as a supervision timeout (0x08). Without a radio that can fake that, say "power off".
POWER_OFF_REASON = hci.HCI_ErrorCode.REMOTE_DEVICE_TERMINATED_CONNECTION_DUE_TO_POWER_OFF_ERROR

_Job = Callable[[], Awaitable[None]]
_Handler = Callable[..., object]

# Which ATT PDU carried the control write being handled: True for a Write Request, False for a
# Write Command, None when the server was not tagged (see `_tag_write_kinds`).
_WRITE_WITH_RESPONSE: contextvars.ContextVar[bool | None] = contextvars.ContextVar(
    "write_with_response", default=None
)


class BumbleMassagerHost:
    """Serves one `SimulatedMassager` as a connectable BLE peripheral on a bumble `Device`."""

    def __init__(
        self,
        device: Device,
        massager: SimulatedMassager,
        *,
        advertising_interval_ms: float = ADVERTISING_INTERVAL_MS,
        link_loss: Callable[[], None] | None = None,
    ) -> None:
        """`link_loss` drops the link as a supervision timeout would (a virtual radio can)."""
        self.device = device
        self.massager = massager
        self.connection: Connection | None = None
        self._interval_ms = advertising_interval_ms
        self._link_loss = link_loss
        self._write_order = asyncio.Lock()  # ATT delivers writes in order, slow or not
        self._slow_writes: set[asyncio.Task[object]] = set()
        self._jobs: asyncio.Queue[_Job] = asyncio.Queue()  # notifications/disconnects, in order
        self._worker: asyncio.Task[None] | None = None
        self._services_added = False
        self._write_kinds_tagged = False
        write_kinds = gatt.Characteristic.Properties.WRITE_WITHOUT_RESPONSE
        description = massager.description
        if description is None or (description.output and description.output.with_response):
            write_kinds |= gatt.Characteristic.Properties.WRITE
        self.control: gatt.Characteristic[bytes] = gatt.Characteristic(
            _bumble_uuid(massager.control_uuid),
            write_kinds,
            gatt.Characteristic.WRITEABLE,
            gatt.CharacteristicValue(read=_not_readable, write=self._on_control_write),
        )
        self.telemetry: gatt.Characteristic[bytes] = gatt.Characteristic(
            UUID(TELEMETRY_CHAR_UUID),
            gatt.Characteristic.Properties.READ | gatt.Characteristic.Properties.NOTIFY,
            gatt.Characteristic.READABLE,
            gatt.CharacteristicValue(read=self._read_status, write=_not_writable),
        )
        self.battery_level: gatt.Characteristic[bytes] = gatt.Characteristic(
            gatt.GATT_BATTERY_LEVEL_CHARACTERISTIC,
            gatt.Characteristic.Properties.READ | gatt.Characteristic.Properties.NOTIFY,
            gatt.Characteristic.READABLE,
            gatt.CharacteristicValue(read=self._read_battery, write=_not_writable),
        )

    @property
    def address(self) -> str:
        """The address centrals see (bleak's form, no address-type suffix)."""
        return str(self.device.random_address.to_string(False))

    async def start(self) -> None:
        """Serve the GATT table and advertise (restarting after every disconnection)."""
        if not self._services_added:
            # Hand-made Battery Service: bumble's profile has no write handler, and a write to it
            # would get no ATT response at all (the client then waits 30 s).
            self.device.add_services(self._services())
            self._services_added = True
        if not self._write_kinds_tagged:
            _tag_write_kinds(self.device.gatt_server)
            self._write_kinds_tagged = True
        self.device.on(Device.EVENT_CONNECTION, self._on_connection)
        self.massager.on_notify = self._queue_notify
        self.massager.on_battery = self._queue_battery
        self.massager.on_disconnect = self._queue_disconnect
        if self._worker is None:
            self._worker = asyncio.create_task(self._run_jobs(), name=f"gatt-host {self.address}")
        adv, scan_response = self._advertising_data()
        await self.device.start_advertising(
            auto_restart=True,
            advertising_data=adv,
            scan_response_data=scan_response,
            advertising_interval_min=self._interval_ms,
            advertising_interval_max=self._interval_ms,
        )

    def _services(self) -> list[gatt.Service]:
        """Protocol v1's table, or the impersonated model's (its write characteristic and,
        if it has one, the Battery Service): see `sim.hosts.gatt.layout_for`."""
        description = self.massager.description
        battery = gatt.Service(gatt.GATT_BATTERY_SERVICE, [self.battery_level])
        if description is None or description.gatt is None:
            return [gatt.Service(UUID(SERVICE_UUID), [self.control, self.telemetry]), battery]
        services = [gatt.Service(_bumble_uuid(description.gatt.service), [self.control])]
        return [*services, battery] if description.gatt.battery else services

    async def stop(self) -> None:
        """Stop advertising and serving; the massager is told the link is gone."""
        self.device.remove_listener(Device.EVENT_CONNECTION, self._on_connection)
        with contextlib.suppress(core.BaseBumbleError, hci.HCI_Error):
            await self.device.stop_advertising()
        connection = self.connection
        if connection is not None:
            with contextlib.suppress(core.BaseBumbleError, hci.HCI_Error, TimeoutError):
                async with asyncio.timeout(JOB_TIMEOUT_S):
                    await connection.disconnect()
            self._on_disconnection(
                connection, hci.HCI_ErrorCode.CONNECTION_TERMINATED_BY_LOCAL_HOST_ERROR
            )
        for task in list(self._slow_writes):
            task.cancel()
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None

    # -- connection events ----------------------------------------------------------------

    def _on_connection(self, connection: Connection) -> None:
        if connection.role != hci.Role.PERIPHERAL:
            return
        if self.connection is not None:
            # One central at a time, like the real device (advertising stops on connection).
            _LOGGER.warning(
                "%s: refusing a second central %s", self.address, connection.peer_address
            )
            self._jobs.put_nowait(connection.disconnect)
            return
        _LOGGER.debug("%s: central %s connected", self.address, connection.peer_address)
        self.connection = connection
        connection.on(
            Connection.EVENT_DISCONNECTION,
            lambda reason: self._on_disconnection(connection, reason),
        )
        self.massager.attach()

    def _on_disconnection(self, connection: Connection, reason: int) -> None:
        if connection is not self.connection:
            return
        _LOGGER.debug("%s: central disconnected (reason 0x%02x)", self.address, reason)
        self.connection = None
        for task in list(self._slow_writes):
            task.cancel()  # the massager only takes writes while a central is connected
        self.massager.detach()

    # -- GATT callbacks: only ever raise att.ATT_Error (anything else means no ATT response) --

    async def _on_control_write(self, connection: Connection, value: bytes) -> None:
        with_response = _WRITE_WITH_RESPONSE.get()  # set in this task's context by the server
        slow = self.massager.plan.slow_write_s
        if not slow and not self._write_order.locked():
            self._deliver(connection, value, with_response)
            return
        # bumble runs each write in its own task, in arrival order; the FIFO lock keeps that
        # order while the device is slow to accept.
        task = asyncio.current_task()
        if task is not None:
            self._slow_writes.add(task)
        try:
            async with self._write_order:
                if slow:
                    await self.massager.clock.sleep(slow)
                self._deliver(connection, value, with_response)
        finally:
            if task is not None:
                self._slow_writes.discard(task)

    def _deliver(self, connection: Connection, value: bytes, with_response: bool | None) -> None:
        if connection is not self.connection:
            return
        try:
            self.massager.write(bytes(value), with_response=with_response)
        except Exception as exc:
            _LOGGER.exception("%s: simulated firmware failed on a write", self.address)
            raise att.ATT_Error(att.ATT_UNLIKELY_ERROR_ERROR) from exc

    def _read_status(self, _connection: Connection) -> bytes:
        return encode(self.massager.firmware.status(), 0)

    def _read_battery(self, _connection: Connection) -> bytes:
        return bytes([max(0, min(100, round(self.massager.firmware.battery_pct)))])

    # -- hooks from the massager: queued so they reach the central in the order they happened --

    def _queue_notify(self, data: bytes) -> None:
        if self.massager.description is None:  # an impersonated model has no telemetry
            self._queue_notification(self.telemetry, bytes(data))

    def _queue_battery(self, percent: int) -> None:
        if self.massager.has_battery_service:
            self._queue_notification(self.battery_level, bytes([max(0, min(100, percent))]))

    def _queue_notification(self, characteristic: gatt.Characteristic[bytes], value: bytes) -> None:
        connection = self.connection
        if connection is None:
            return

        async def notify() -> None:
            if connection is self.connection:
                await self.device.notify_subscriber(connection, characteristic, value)

        self._jobs.put_nowait(notify)

    def _queue_disconnect(self, reason: int) -> None:
        connection = self.connection
        if connection is None:
            return

        async def disconnect() -> None:
            if connection is not self.connection:
                return
            if reason == LINK_LOSS_REASON:
                if self._link_loss is not None:
                    self._link_loss()
                    return
                await connection.disconnect(POWER_OFF_REASON)
                return
            await connection.disconnect(reason)

        self._jobs.put_nowait(disconnect)

    async def _run_jobs(self) -> None:
        while True:
            job = await self._jobs.get()
            try:
                async with asyncio.timeout(JOB_TIMEOUT_S):
                    await job()
            except (core.BaseBumbleError, hci.HCI_Error, TimeoutError) as exc:
                _LOGGER.debug("%s: %r", self.address, exc)  # typically: the link just went away

    def _advertising_data(self) -> tuple[bytes, bytes]:
        """Connectable advertising with the service UUID; the full name in the scan response."""
        head: list[core.DataType] = [
            data_types.Flags(
                AdvertisingData.Flags.LE_GENERAL_DISCOVERABLE_MODE
                | AdvertisingData.Flags.BR_EDR_NOT_SUPPORTED
            ),
        ]
        services = [_bumble_uuid(uuid) for uuid in self.massager.advertised_services]
        short = [uuid for uuid in services if len(uuid.to_bytes()) == 2]  # 16-bit SIG-based
        if short:
            head.append(data_types.CompleteListOf16BitServiceUUIDs(short))
        if full := [uuid for uuid in services if uuid not in short]:
            head.append(data_types.CompleteListOf128BitServiceUUIDs(full))
        for company, data in self.massager.manufacturer_data.items():
            head.append(data_types.ManufacturerSpecificData(company, data))
        name = self.massager.name
        room = LEGACY_ADV_MAX - len(bytes(AdvertisingData(head))) - 2  # 2: AD length + type
        if len(name.encode()) <= room:
            return bytes(AdvertisingData([*head, data_types.CompleteLocalName(name)])), b""
        cut = name.encode()[:room].decode(errors="ignore")
        adv = AdvertisingData([*head, data_types.ShortenedLocalName(cut)])
        return bytes(adv), bytes(AdvertisingData([data_types.CompleteLocalName(name)]))


def _tag_write_kinds(server: Server) -> None:
    """Let write callbacks tell a Write Request from a Write Command (bumble gives both alike).

    bumble's server looks its ATT handlers up by name on the instance, and each write handler
    spawns a task that copies the current context and awaits the characteristic's write
    callback in it; so a context variable set around the handler call reaches the callback.
    A bumble that queued the work instead would leave it unset: recorded as "could not tell".
    """
    for name, with_response in (("on_att_write_request", True), ("on_att_write_command", False)):
        setattr(server, name, _tagged(getattr(server, name), with_response))


def _tagged(handler: _Handler, with_response: bool) -> _Handler:
    def tagged(*args: object) -> object:
        token = _WRITE_WITH_RESPONSE.set(with_response)
        try:
            return handler(*args)
        finally:
            _WRITE_WITH_RESPONSE.reset(token)

    return tagged


def _bumble_uuid(text: str) -> UUID:
    """16-bit form for UUIDs on the Bluetooth base (0000xxxx-0000-1000-8000-00805f9b34fb): a
    GATT server matches a discovery by the stored bytes, and clients search in short form."""
    if text.startswith("0000") and text.endswith("-0000-1000-8000-00805f9b34fb"):
        return UUID.from_16_bits(int(text[4:8], 16))
    return UUID(text)


def _not_readable(_connection: Connection) -> bytes:
    raise att.ATT_Error(att.ATT_READ_NOT_PERMITTED_ERROR)


def _not_writable(_connection: Connection, _value: bytes) -> None:
    raise att.ATT_Error(att.ATT_WRITE_NOT_PERMITTED_ERROR)


async def serve(hci_moniker: str, massager: SimulatedMassager) -> None:
    """Run `massager` as a BLE peripheral on a bumble HCI transport until cancelled."""
    async with await open_transport(hci_moniker) as transport:
        device = Device.with_hci(
            massager.name, hci.Address(massager.address), transport.source, transport.sink
        )
        await device.power_on()
        host = BumbleMassagerHost(device, massager)
        await massager.start()
        try:
            await host.start()
            _LOGGER.info("%s: advertising as %s on %s", massager.name, host.address, hci_moniker)
            await asyncio.Event().wait()  # serve until cancelled
        finally:
            # Shielded so a cancelled serve() still leaves the controller quiet and the link down.
            await asyncio.shield(_shutdown(host, device, massager))


async def _shutdown(host: BumbleMassagerHost, device: Device, massager: SimulatedMassager) -> None:
    await host.stop()
    await device.power_off()
    await massager.close()
