"""Wire constants: GATT UUIDs, frame types, error and fault codes (see docs/protocol.md)."""

from __future__ import annotations

from enum import IntEnum, IntFlag

# 128-bit UUIDs of the massager service; the 0xF00D prefix is this project's, not an SIG number.
SERVICE_UUID = "f00d0001-7a1e-4c3b-9e55-1b2c3d4e5f60"
CONTROL_CHAR_UUID = "f00d0002-7a1e-4c3b-9e55-1b2c3d4e5f60"  # write / write-without-response
TELEMETRY_CHAR_UUID = "f00d0003-7a1e-4c3b-9e55-1b2c3d4e5f60"  # notify / read
BATTERY_SERVICE_UUID = "0000180f-0000-1000-8000-00805f9b34fb"
BATTERY_LEVEL_CHAR_UUID = "00002a19-0000-1000-8000-00805f9b34fb"

PROTOCOL_VERSION = 1
MAX_FRAME_SIZE = 20  # bytes: fits one ATT write/notification at the minimum MTU of 23
HEADER_SIZE = 4  # version, sequence, type, payload length
CRC_SIZE = 2
MAX_PAYLOAD_SIZE = MAX_FRAME_SIZE - HEADER_SIZE - CRC_SIZE  # 14 bytes
MAX_ZONES = 8  # a status frame carries one level byte per zone plus 4 bytes

DEFAULT_WATCHDOG_MS = 1500  # device zeroes output if no valid frame arrives within this
MAX_WATCHDOG_MS = 3000  # S4: a watchdog longer than this is refused (nack OUT_OF_RANGE)
MIN_WATCHDOG_MS = 200  # shorter would trip on ordinary BLE connection-interval jitter


class FrameType(IntEnum):
    """Frame types; controller → device below 0x80, device → controller from 0x80."""

    HELLO = 0x01
    SET_INTENSITY = 0x02
    STOP = 0x03
    HEARTBEAT = 0x04
    SET_WATCHDOG = 0x05
    SET_TIMER = 0x06
    QUERY_STATUS = 0x07

    CAPABILITIES = 0x81
    ACK = 0x82
    NACK = 0x83
    STATUS = 0x84
    BUTTON = 0x85
    FAULT = 0x86


class ErrorCode(IntEnum):
    """Why a device nacked a command."""

    OK = 0x00
    BAD_CRC = 0x01
    BAD_LENGTH = 0x02
    UNKNOWN_TYPE = 0x03
    OUT_OF_RANGE = 0x04
    BAD_VERSION = 0x05
    UNSUPPORTED = 0x06
    LATCHED = 0x07  # output is latched off (button, fault) until a new HELLO
    BUSY = 0x08


class FaultCode(IntEnum):
    """Device-side events that stopped or limited output."""

    OVER_TEMPERATURE = 0x01
    LOW_BATTERY = 0x02
    MOTOR = 0x03
    WATCHDOG_EXPIRED = 0x04  # no valid frame within the watchdog: output zeroed
    TIMER_EXPIRED = 0x05  # on-device session timer elapsed: output zeroed
    REBOOTED = 0x06


class FaultFlags(IntFlag):
    """Bit field in STATUS frames; several can be set at once."""

    NONE = 0
    OVER_TEMPERATURE = 0x01
    LOW_BATTERY = 0x02
    MOTOR = 0x04
    WATCHDOG_TRIPPED = 0x08
    LATCHED = 0x10


class CapabilityFlags(IntFlag):
    """What the firmware can do, sent in CAPABILITIES."""

    NONE = 0
    WATCHDOG = 0x01
    TIMER = 0x02
    HEAT = 0x04
    WRITE_WITH_RESPONSE = 0x08


class Button(IntEnum):
    """Device buttons reported in BUTTON frames."""

    STOP = 0x01
