"""firmware-bridge: a safe, observable asyncio controller for BLE vibrating foot massagers."""

import logging

from firmware_bridge.device import (
    DeviceLimits,
    LinkEvent,
    LinkState,
    MassagerLink,
    ReconnectPolicy,
    StopReason,
    StopResult,
)
from firmware_bridge.errors import (
    BluetoothUnavailableError,
    ConnectionLostError,
    DeviceConnectionError,
    DeviceNotFoundError,
    DeviceRejectedError,
    DeviceTimeoutError,
    MassagerError,
    ProtocolError,
    SafetyLimitError,
)
from firmware_bridge.transport import BleakTransport, Transport, find_massager

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "BleakTransport",
    "BluetoothUnavailableError",
    "ConnectionLostError",
    "DeviceConnectionError",
    "DeviceLimits",
    "DeviceNotFoundError",
    "DeviceRejectedError",
    "DeviceTimeoutError",
    "LinkEvent",
    "LinkState",
    "MassagerError",
    "MassagerLink",
    "ProtocolError",
    "ReconnectPolicy",
    "SafetyLimitError",
    "StopReason",
    "StopResult",
    "Transport",
    "find_massager",
]
