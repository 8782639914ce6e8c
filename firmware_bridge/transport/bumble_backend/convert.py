"""Conversions between bumble's and bleak's types, and errors, for the bumble backend."""

import asyncio
import logging
import uuid
import weakref
from dataclasses import dataclass
from typing import TypeVar

from bleak.assigned_numbers import CHARACTERISTIC_PROPERTIES, CharacteristicPropertyName
from bleak.exc import BleakError, BleakGATTProtocolError
from bumble import att, core, hci
from bumble.core import UUID, AdvertisingData
from bumble.device import Device

from firmware_bridge.protocol import BATTERY_SERVICE_UUID, SERVICE_UUID

_LOGGER = logging.getLogger(__name__)
_T = TypeVar("_T")

DEFAULT_MTU = 247  # what phones and BlueZ negotiate with a device that asks for it
ATT_HEADER = 3  # opcode + handle: one ATT write carries MTU - 3 bytes of value
OPERATION_TIMEOUT_S = 5.0  # every GATT operation is bounded; bumble's own limit is 30 s
DISCONNECT_TIMEOUT_S = 2.0  # a requested disconnect that takes longer is finished locally
CANCEL_GRACE_S = 1.0  # a controller confirms a cancelled connect within this (or is broken)
DEFAULT_SERVICES = (SERVICE_UUID, BATTERY_SERVICE_UUID)  # discovered unless bleak's services= says
SIG_BASE_SUFFIX = "-0000-1000-8000-00805f9b34fb"  # 16-bit SIG UUIDs live in this 128-bit range

_CONNECT_LOCKS: weakref.WeakKeyDictionary[Device, asyncio.Lock] = weakref.WeakKeyDictionary()


@dataclass(frozen=True, slots=True)
class BumbleDeviceDetails:
    """`BLEDevice.details` from `BumbleBleakScanner`: which central heard which address."""

    central: Device
    address: hci.Address


def _outcome(address: str, what: str, timeout: float, task: asyncio.Task[_T]) -> _T:
    """The task's result, with bumble's exceptions translated into bleak's."""
    exc = task.exception()
    if exc is None:
        return task.result()
    if isinstance(exc, att.ATT_Error):
        raise BleakGATTProtocolError(exc.error_code) from exc
    if isinstance(exc, (TimeoutError, core.TimeoutError)):
        raise TimeoutError(
            f"{address}: {what} timed out after {timeout:g} s; link dropped"
        ) from exc
    if isinstance(exc, (core.BaseBumbleError, hci.HCI_Error)):
        raise BleakError(f"{address}: {what} failed: {_describe(exc)}") from exc
    raise exc


def _describe(exc: BaseException) -> str:
    """A readable one-liner (bumble's own str() of an error carries terminal colour codes)."""
    code = getattr(exc, "error_code", None)
    if isinstance(code, int):
        name = getattr(exc, "error_name", "") or hci.HCI_Constant.error_name(code)
        return f"{type(exc).__name__} {name} (0x{code:02x})"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _parse_address(address: str) -> hci.Address:
    """bleak's address string; a `/P` suffix marks a public address (random is the default)."""
    try:
        return hci.Address.from_string_for_transport(address, core.PhysicalTransport.LE)
    except ValueError as exc:
        raise BleakError(f"{address!r} is not a Bluetooth address") from exc


def _uuid(text: str) -> UUID:
    """A bumble UUID, 16-bit for SIG ones (a server matches services in their short form)."""
    normalized = str(uuid.UUID(text))
    if normalized.startswith("0000") and normalized.endswith(SIG_BASE_SUFFIX):
        return UUID.from_16_bits(int(normalized[4:8], 16))
    return UUID(normalized)


def _uuid_str(value: UUID) -> str:
    """bleak's form: 128-bit, lower case, dashed."""
    return str(uuid.UUID(bytes=bytes(reversed(value.uuid_128_bytes))))


def _properties(flags: int) -> list[CharacteristicPropertyName]:
    return [name for bit, name in CHARACTERISTIC_PROPERTIES.items() if flags & bit]


def _advertised_name(data: AdvertisingData) -> str | None:
    for kind in (
        AdvertisingData.Type.COMPLETE_LOCAL_NAME,
        AdvertisingData.Type.SHORTENED_LOCAL_NAME,
    ):
        if names := data.get_all(kind):
            return str(names[0])
    return None


def _advertised_uuids(data: AdvertisingData) -> list[str]:
    uuids: list[str] = []
    for kind in (
        AdvertisingData.Type.COMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS,
        AdvertisingData.Type.INCOMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS,
        AdvertisingData.Type.COMPLETE_LIST_OF_32_BIT_SERVICE_CLASS_UUIDS,
        AdvertisingData.Type.INCOMPLETE_LIST_OF_32_BIT_SERVICE_CLASS_UUIDS,
        AdvertisingData.Type.COMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS,
        AdvertisingData.Type.INCOMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS,
    ):
        for group in data.get_all(kind):
            for value in group:
                text = _uuid_str(value)
                if text not in uuids:  # a merged scan response repeats the advertisement's
                    uuids.append(text)
    return uuids


def _service_data(data: AdvertisingData) -> dict[str, bytes]:
    result: dict[str, bytes] = {}
    for kind in (
        AdvertisingData.Type.SERVICE_DATA_16_BIT_UUID,
        AdvertisingData.Type.SERVICE_DATA_32_BIT_UUID,
        AdvertisingData.Type.SERVICE_DATA_128_BIT_UUID,
    ):
        for service, payload in data.get_all(kind):
            result[_uuid_str(service)] = bytes(payload)
    return result
