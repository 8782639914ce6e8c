"""The production transport: bleak's front end + bleak-retry-connector over any bleak backend.

`backend=None` is the operating system's stack; simulators and bumble HCI transports plug in
underneath through bleak's `backend=` seam, so tests always run this code path.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from bleak import BleakClient, BleakScanner
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, BaseBleakScanner
from bleak.exc import BleakError, BleakGATTProtocolError
from bleak_retry_connector import (
    BleakNotFoundError,
    BleakOutOfConnectionSlotsError,
    establish_connection,
)

from firmware_bridge.errors import (
    ConnectionLostError,
    DeviceConnectionError,
    DeviceNotFoundError,
    DeviceRejectedError,
    DeviceTimeoutError,
    MassagerError,
)
from firmware_bridge.protocol import (
    BATTERY_LEVEL_CHAR_UUID,
    CONTROL_CHAR_UUID,
    MAX_FRAME_SIZE,
    SERVICE_UUID,
    TELEMETRY_CHAR_UUID,
)

_LOGGER = logging.getLogger(__name__)

OPERATION_TIMEOUT_S = 5.0  # every GATT operation is bounded; a stuck stack must not stall a stop
CONNECT_ATTEMPTS = 3  # bleak-retry-connector's attempts per connect() call
SCAN_TIMEOUT_S = 10.0
NAME_MAX = 40  # characters of an advertised name kept for messages
# Each connection attempt is bounded by bleak-retry-connector's BLEAK_TIMEOUT (20 s in 4.x: it
# passes `timeout=` to BleakClient.connect itself, so it is not ours to set) and its 60 s safety
# timeout. BlueZ resolves a device's services slowly, seconds on a first connection: a test
# checks the connector still allows at least this, so an upgrade that shortened it is noticed.
MIN_CONNECT_TIMEOUT_S = 10.0
MAX_DETAIL_CHARS = 120  # the stack's own words, kept after the advice, cut to fit one line
MAX_CAUSES = 8  # exception chains are a few deep; this bounds a pathological cycle

# One line of advice for each way a connection fails, found in the stack's words (bleak,
# BlueZ, WinRT, CoreBluetooth, ESPHome proxies, bumble HCI status names; the strings
# bleak-retry-connector classifies by are among them). Checked in this order, case-folded.
NOT_FOUND_ADVICE = (
    "not found: it is off, out of range, or connected to a phone or another app; switch it "
    "on, bring it closer, close the other app, and check `massager scan`"
)
CONNECT_ADVICE: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "the Bluetooth adapter has no free connection slot; disconnect other Bluetooth LE "
        "devices (Linux: `bluetoothctl disconnect`), or use another adapter (--hci usb:0)",
        (
            "connection slot",
            "available connection",
            "le-connection-abort-by-local",
            "connection limit exceeded",
            "connection_limit_exceeded",
            "memory capacity exceeded",
            "memory_capacity_exceeded",
        ),
    ),
    (
        "pairing is needed or was refused; put the massager in pairing mode and pair it "
        "(Linux: `bluetoothctl pair ADDRESS`; Windows: Settings > Bluetooth & devices; macOS "
        "asks on first use), or remove an old pairing on both sides and pair again",
        (
            "authentication",
            "pairing",
            "pin or key missing",
            "pin_or_key_missing",
            "insufficient encryption",
            "not paired",
            "access denied",
        ),
    ),
    (
        "the massager refused the connection; it may accept only its own phone or app: "
        "switch it off and on, close its app, and try again",
        ("refused", "rejected", "unacceptable bd_addr", "unacceptable_bd_addr"),
    ),
    (
        "the massager went away while connecting (out of range or switched off); bring it "
        "closer, keep it on, and try again",
        (
            "disconnected",
            "unknownobject",
            "connection_timeout",
            "connection timeout",
            "connection failed to be established",
            "connection_failed_to_be_established",
            "le-connection-abort-by-remote",
        ),
    ),
)


class BleakTransport:
    """One massager over bleak; reusable (connect again after a disconnect)."""

    def __init__(
        self,
        device: BLEDevice,
        *,
        backend: type[BaseBleakClient] | None = None,
        backend_kwargs: dict[str, Any] | None = None,
        connect_attempts: int = CONNECT_ATTEMPTS,
        operation_timeout: float = OPERATION_TIMEOUT_S,
        pair: bool = False,
        rssi: int | None = None,
    ) -> None:
        self.device = device
        name = device.name or device.address  # anyone's radio text: printed, so made safe
        self.name = (name if name.isprintable() else repr(name)[1:-1])[:NAME_MAX]
        self.pair = pair  # bond before use (a device description with `pairing = true`)
        # dBm: the scan's advertisement RSSI; bleak offers none for a connected link, so this
        # is what telemetry can report (None where the device was not found by scanning).
        self.rssi = rssi
        self.on_frame: Callable[[bytes], None] | None = None
        self.on_battery: Callable[[int], None] | None = None
        self.on_disconnect: Callable[[], None] | None = None
        self._backend = backend
        self._backend_kwargs = backend_kwargs or {}
        self._attempts = connect_attempts
        self._timeout = operation_timeout
        self._client: BleakClient | None = None
        self._control: BleakGATTCharacteristic | None = None
        self._closing = False

    @property
    def backend(self) -> type[BaseBleakClient] | None:
        return self._backend

    @property
    def backend_kwargs(self) -> dict[str, Any]:
        return dict(self._backend_kwargs)

    @property
    def is_connected(self) -> bool:
        return self._client is not None and self._client.is_connected

    @property
    def max_frame_size(self) -> int:
        if self._control is None:
            return MAX_FRAME_SIZE
        return self._control.max_write_without_response_size

    @property
    def supports_write_with_response(self) -> bool:
        return self._control is not None and "write" in self._control.properties

    async def connect(self) -> None:
        """Connect (with bleak-retry-connector's retries), find the service, subscribe."""
        self._closing = False
        kwargs: dict[str, Any] = dict(self._backend_kwargs)
        pair = bool(kwargs.pop("pair", False)) or self.pair  # devices.transport_for passes it
        if self._backend is not None:
            kwargs["backend"] = self._backend
        try:
            # A new BleakClient per call (establish_connection makes it; its retries reuse it).
            client = await establish_connection(
                BleakClient,
                self.device,
                self.name,
                disconnected_callback=self._disconnected,
                max_attempts=self._attempts,
                pair=pair,
                **kwargs,
            )
        except (BleakError, TimeoutError) as exc:
            raise connect_error(self.name, exc) from exc
        self._client = client
        try:
            await self._setup(client)
        except BaseException:
            await self.disconnect()
            raise

    async def _setup(self, client: BleakClient) -> None:
        control = client.services.get_characteristic(CONTROL_CHAR_UUID)
        telemetry = client.services.get_characteristic(TELEMETRY_CHAR_UUID)
        if control is None or telemetry is None:
            raise DeviceConnectionError(
                f"{self.name}: massager service {SERVICE_UUID} not found; is this a massager?"
            )
        size = control.max_write_without_response_size
        if size < MAX_FRAME_SIZE:
            raise DeviceConnectionError(
                f"{self.name}: link carries {size}-byte writes, frames need {MAX_FRAME_SIZE}"
            )
        self._control = control
        async with asyncio.timeout(self._timeout):
            await client.start_notify(telemetry, self._notified)
            battery = client.services.get_characteristic(BATTERY_LEVEL_CHAR_UUID)
            if battery is not None and "notify" in battery.properties:
                await client.start_notify(battery, self._battery_notified)
        _LOGGER.debug("%s: connected, %d-byte writes", self.name, size)

    async def disconnect(self) -> None:
        """Disconnect on purpose (no on_disconnect callback)."""
        self._closing = True
        client, self._client = self._client, None
        self._control = None
        if client is not None:
            try:
                async with asyncio.timeout(self._timeout):
                    await client.disconnect()
            except (BleakError, TimeoutError, EOFError) as exc:
                _LOGGER.debug("%s: disconnect: %s", self.name, exc)

    async def write(self, data: bytes, *, response: bool) -> None:
        """Write one frame to the control characteristic."""
        client, control = self._client, self._control
        if client is None or control is None or not client.is_connected:
            raise ConnectionLostError(f"{self.name}: not connected")
        try:
            async with asyncio.timeout(self._timeout):
                await client.write_gatt_char(control, data, response=response)
        except BleakGATTProtocolError as exc:
            raise DeviceRejectedError(
                f"{self.name}: write refused by the device: {exc}",
                code=int(exc.code),
                frame_type=data[2] if len(data) > 2 else 0,
            ) from exc
        except TimeoutError as exc:
            raise DeviceTimeoutError(
                f"{self.name}: write timed out after {self._timeout} s"
            ) from exc
        except BleakError as exc:
            if not client.is_connected:
                raise ConnectionLostError(f"{self.name}: link lost during write: {exc}") from exc
            raise DeviceConnectionError(f"{self.name}: write failed: {exc}") from exc

    # -- callbacks from bleak --------------------------------------------------------------

    def _notified(self, _char: BleakGATTCharacteristic, data: bytearray) -> None:
        if self.on_frame is not None:
            self.on_frame(bytes(data))

    def _battery_notified(self, _char: BleakGATTCharacteristic, data: bytearray) -> None:
        if self.on_battery is not None and data:
            self.on_battery(data[0])

    def _disconnected(self, client: BleakClient) -> None:
        if self._closing or client is not self._client:
            _LOGGER.debug("%s: disconnected", self.name)
            return
        _LOGGER.warning("%s: link lost", self.name)
        if self.on_disconnect is not None:
            self.on_disconnect()


def connect_error(name: str, exc: BaseException) -> MassagerError:
    """Why connecting to `name` failed, as one line of advice and the stack's own words.

    Classified by the stack's words in the exception's causes (bleak-retry-connector's own
    message adds its advice, whose words would mislead), else in the exception itself.
    """
    causes: list[str] = []
    cause = exc.__cause__ or exc.__context__
    while cause is not None and len(causes) < MAX_CAUSES:
        causes.append(f"{type(cause).__name__}: {cause}")
        cause = cause.__cause__ or cause.__context__
    said = " ".join(causes or [str(exc)]).casefold()
    detail = " ".join((causes[-1] if causes else str(exc) or type(exc).__name__).split())
    if len(detail) > MAX_DETAIL_CHARS:
        detail = detail[: MAX_DETAIL_CHARS - 1] + "…"
    if isinstance(exc, BleakOutOfConnectionSlotsError):
        return DeviceConnectionError(f"{name}: {CONNECT_ADVICE[0][0]} ({detail})")
    for advice, needles in CONNECT_ADVICE:
        if any(needle in said for needle in needles):
            return DeviceConnectionError(f"{name}: {advice} ({detail})")
    if isinstance(exc, BleakNotFoundError | TimeoutError) or "not found" in said:
        return DeviceNotFoundError(f"{name}: {NOT_FOUND_ADVICE} ({detail})")
    return DeviceConnectionError(f"{name}: could not connect ({detail})")


async def find_massager(
    *,
    address: str | None = None,
    name: str | None = None,
    timeout: float = SCAN_TIMEOUT_S,  # noqa: ASYNC109 - scan duration, named as bleak names it
    backend: type[BaseBleakScanner] | None = None,
    **scanner_kwargs: Any,
) -> BLEDevice:
    """Scan for a massager by address, by name, or (default) by its service UUID."""

    def matches(device: BLEDevice, adv: AdvertisementData) -> bool:
        if address is not None:
            return device.address.upper() == address.upper()
        if name is not None:
            return (adv.local_name or device.name) == name
        return SERVICE_UUID in adv.service_uuids

    if backend is not None:
        scanner_kwargs["backend"] = backend
    if not (address or name):
        scanner_kwargs["service_uuids"] = [SERVICE_UUID]
    try:
        device = await BleakScanner.find_device_by_filter(
            matches, timeout=timeout, **scanner_kwargs
        )
    except (BleakError, OSError) as exc:  # no BlueZ / D-Bus / adapter: OSError from the socket
        from firmware_bridge.discovery import unavailable  # noqa: PLC0415 - it imports this

        raise unavailable(exc) from exc
    if device is None:
        wanted = address or name or f"service {SERVICE_UUID}"
        raise DeviceNotFoundError(
            f"no massager found ({wanted}) within {timeout:g} s; is it on, in range, not "
            "connected to a phone?"
        )
    return device
