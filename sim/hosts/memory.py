"""Tier 1: an in-memory bleak backend hosting the simulated massager.

`BleakClient(device, backend=InMemoryBleakClient)` and `BleakScanner(backend=InMemoryBleakScanner,
air=air)` run bleak's real front end (and bleak-retry-connector) over a direct function-call link:
microseconds per frame, for bulk and property tests. Notifications are still delivered from the
event loop, never re-entrantly, as a real stack does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from typing import Any, Literal

from bleak.args import SizedBuffer
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient, NotifyCallback
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, AdvertisementDataCallback, BaseBleakScanner
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import BleakDeviceNotFoundError, BleakError

from firmware_bridge.protocol import (
    BATTERY_LEVEL_CHAR_UUID,
    TELEMETRY_CHAR_UUID,
    encode,
)
from sim.hosts.gatt import LAYOUT, ServiceSpec, layout_for
from sim.hosts.runtime import SimulatedMassager

_LOGGER = logging.getLogger(__name__)

CCCD_UUID = "00002902-0000-1000-8000-00805f9b34fb"
DEFAULT_MTU = 247  # what a modern phone or BlueZ negotiates with a device that asks for it
ATT_HEADER = 3  # opcode + handle: an ATT write carries MTU - 3 bytes of value
ADVERTISING_INTERVAL_S = 0.02  # a massager advertises fast so the app finds it quickly


class VirtualAir:
    """The simulated massagers within range of the in-memory scanner."""

    def __init__(self, massagers: Iterable[SimulatedMassager] = ()) -> None:
        self.massagers: dict[str, SimulatedMassager] = {m.address: m for m in massagers}

    def add(self, massager: SimulatedMassager) -> None:
        self.massagers[massager.address] = massager

    def device(self, address: str) -> BLEDevice:
        massager = self.massagers.get(address)
        if massager is None:
            raise BleakDeviceNotFoundError(address, f"no simulated massager at {address}")
        return BLEDevice(massager.address, massager.name, massager)


def build_services(
    mtu: int, layout: tuple[ServiceSpec, ...] = LAYOUT
) -> BleakGATTServiceCollection:
    """The massager's GATT table as bleak objects (same handles on both tiers)."""
    collection = BleakGATTServiceCollection()
    for spec in layout:
        service = BleakGATTService(None, spec.handle, spec.uuid)
        collection.add_service(service)
        for char_spec in spec.characteristics:
            char = BleakGATTCharacteristic(
                None,
                char_spec.handle,
                char_spec.uuid,
                list(char_spec.properties),  # type: ignore[arg-type]
                lambda: mtu - ATT_HEADER,
                service,
            )
            collection.add_characteristic(char)
            if "notify" in char_spec.properties:
                collection.add_descriptor(
                    BleakGATTDescriptor(None, char_spec.handle + 1, CCCD_UUID, char)
                )
    return collection


class InMemoryBleakClient(BaseBleakClient):
    """bleak client backend whose peer is a `SimulatedMassager` in this process."""

    def __init__(
        self,
        address_or_ble_device: BLEDevice | str,
        *,
        disconnected_callback: Callable[[], None] | None = None,
        timeout: float = 10.0,
        massager: SimulatedMassager | None = None,
        mtu: int = DEFAULT_MTU,
        **kwargs: Any,  # bleak passes services/bluez/winrt; the retry connector passes more
    ) -> None:
        super().__init__(
            address_or_ble_device, disconnected_callback=disconnected_callback, timeout=timeout
        )
        details = getattr(address_or_ble_device, "details", None)
        self._massager = massager or (details if isinstance(details, SimulatedMassager) else None)
        self._mtu = mtu
        self._connected = False
        self._callbacks: dict[int, NotifyCallback] = {}
        self._write_order = asyncio.Lock()  # ATT delivers writes in order, slow or not

    @property
    def name(self) -> str:
        return self._massager.name if self._massager else self.address

    @property
    def mtu_size(self) -> int:
        return self._mtu

    @property
    def is_connected(self) -> bool:
        return self._connected

    async def connect(self, pair: bool, **kwargs: Any) -> None:
        massager = self._massager
        if massager is None or not massager.reachable:
            raise BleakDeviceNotFoundError(self.address, f"device {self.address} not found")
        if massager.connected:
            raise BleakError(f"{massager.name} already has a central connected")
        _connect_fault(massager.plan.connect_fault, self.address, pair=pair)
        await massager.start()
        massager.on_notify = self._deliver_telemetry
        massager.on_battery = self._deliver_battery
        massager.on_disconnect = self._peer_disconnected
        massager.attach()
        self._connected = True
        self.services = build_services(self._mtu, layout_for(massager.description))

    async def disconnect(self) -> None:
        if self._connected:
            self._connected = False
            self._callbacks.clear()
            if self._massager is not None:
                self._massager.detach()

    async def pair(self, *args: Any, **kwargs: Any) -> None:
        _LOGGER.debug("%s: pairing is not needed by the simulated massager", self.address)

    async def unpair(self) -> None:
        _LOGGER.debug("%s: nothing to unpair", self.address)

    async def read_gatt_char(
        self, characteristic: BleakGATTCharacteristic, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        massager = self._require_connected()
        if characteristic.uuid == TELEMETRY_CHAR_UUID and massager.description is None:
            return bytearray(encode(massager.firmware.status(), 0))
        if characteristic.uuid == BATTERY_LEVEL_CHAR_UUID and massager.has_battery_service:
            return bytearray([round(massager.firmware.battery_pct)])
        raise BleakError(f"characteristic {characteristic.uuid} is not readable")

    async def read_gatt_descriptor(
        self, descriptor: BleakGATTDescriptor, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        self._require_connected()
        enabled = descriptor.characteristic_handle in self._callbacks
        return bytearray(b"\x01\x00" if enabled else b"\x00\x00")

    async def write_gatt_char(
        self, characteristic: BleakGATTCharacteristic, data: SizedBuffer, response: bool
    ) -> None:
        massager = self._require_connected()
        if characteristic.uuid != massager.control_uuid:
            raise BleakError(f"characteristic {characteristic.uuid} is not writable")
        if response and "write" not in characteristic.properties:
            raise BleakError(f"characteristic {characteristic.uuid} takes no Write Request")
        payload = bytes(data)
        if not response and len(payload) > self._mtu - ATT_HEADER:
            raise BleakError(f"write of {len(payload)} bytes exceeds MTU {self._mtu}")
        slow = massager.plan.slow_write_s
        if slow or self._write_order.locked():
            async with self._write_order:
                if slow:
                    await massager.clock.sleep(slow)
                self._require_connected()
                massager.write(payload, with_response=response)
        else:
            massager.write(payload, with_response=response)

    async def write_gatt_descriptor(
        self, descriptor: BleakGATTDescriptor, data: SizedBuffer
    ) -> None:
        self._require_connected()

    async def start_notify(
        self, characteristic: BleakGATTCharacteristic, callback: NotifyCallback, **kwargs: Any
    ) -> None:
        self._require_connected()
        if "notify" not in characteristic.properties:
            raise BleakError(f"characteristic {characteristic.uuid} does not notify")
        self._callbacks[characteristic.handle] = callback

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        self._callbacks.pop(characteristic.handle, None)

    # -- from the simulated massager -------------------------------------------------------

    def _require_connected(self) -> SimulatedMassager:
        if not self._connected or self._massager is None:
            raise BleakError("Not connected")
        return self._massager

    def _deliver(self, uuid: str, data: bytes) -> None:
        if self.services is None:
            return
        char = self.services.get_characteristic(uuid)
        callback = self._callbacks.get(char.handle) if char else None
        if callback is not None:
            asyncio.get_running_loop().call_soon(callback, bytearray(data))

    def _deliver_telemetry(self, data: bytes) -> None:
        self._deliver(TELEMETRY_CHAR_UUID, data)

    def _deliver_battery(self, percent: int) -> None:
        self._deliver(BATTERY_LEVEL_CHAR_UUID, bytes([percent]))

    def _peer_disconnected(self, reason: int) -> None:
        if not self._connected:
            return
        self._connected = False
        self._callbacks.clear()
        if self._massager is not None:
            self._massager.detach()
        _LOGGER.debug("%s: link dropped by peer (reason 0x%02x)", self.address, reason)
        if self._disconnected_callback is not None:
            asyncio.get_running_loop().call_soon(self._disconnected_callback)


# What each FaultPlan.connect_fault looks like from bleak's side: the words the real stacks
# use (BlueZ over D-Bus, bleak-retry-connector's classification), so the controller's advice
# for each is tested against the text it will meet.
CONNECT_FAULT_ERRORS = {
    "refuse": "[org.bluez.Error.Failed] le-connection-refused: Connection Rejected due to "
    "Unacceptable BD_ADDR",
    "no_slots": "[org.bluez.Error.Failed] le-connection-abort-by-local: No free connection slot",
    "pairing_required": "[org.bluez.Error.Failed] GATT Protocol Error: Insufficient Authentication",
    "pairing_refused": "[org.bluez.Error.AuthenticationRejected] Authentication Rejected",
    "vanish_mid_connect": "failed to discover services, device disconnected",
}


def _connect_fault(fault: str | None, address: str, *, pair: bool) -> None:
    """Raise what a connection attempt meets under `fault` (nothing for None)."""
    if fault is None or (fault == "pairing_required" and pair):
        return
    text = CONNECT_FAULT_ERRORS.get(fault)
    if text is None:
        raise ValueError(f"unknown connect_fault {fault!r}; see sim.firmware.CONNECT_FAULTS")
    raise BleakError(f"{address}: {text}")


class InMemoryBleakScanner(BaseBleakScanner):
    """bleak scanner backend that 'hears' the massagers in a `VirtualAir`."""

    def __init__(
        self,
        detection_callback: AdvertisementDataCallback | None,
        service_uuids: list[str] | None,
        scanning_mode: Literal["active", "passive"] = "active",
        *,
        air: VirtualAir | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(detection_callback, service_uuids)
        self._air = air or VirtualAir()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.seen_devices = {}
        self._advertise()
        self._task = asyncio.create_task(self._keep_hearing(), name="in-memory scanner")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _keep_hearing(self) -> None:
        while True:
            await asyncio.sleep(ADVERTISING_INTERVAL_S)
            self._advertise()

    def _advertise(self) -> None:
        for massager in self._air.massagers.values():
            if massager.connected or not massager.reachable:
                continue  # a connected peripheral stops advertising
            adv = AdvertisementData(
                local_name=massager.name,
                manufacturer_data=massager.manufacturer_data,
                service_data={},
                service_uuids=massager.advertised_services,
                tx_power=None,
                rssi=-55,
                platform_data=(),
            )
            if not self.is_allowed_uuid(adv.service_uuids):
                continue
            device = self.create_or_update_device(
                massager.address, massager.address, massager.name, massager, adv
            )
            self.call_detection_callbacks(device, adv)
