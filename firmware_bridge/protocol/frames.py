"""Frame codec: messages as frozen dataclasses, `encode` to ≤ 20 bytes, `decode` back.

Layout: version (u8) | sequence (u8) | type (u8) | payload length (u8) | payload | CRC-16 (u16 BE)
over everything before it. Multi-byte fields are big-endian. Each message type declares its
payload size (`PAYLOAD_SIZE`) and `decode` refuses any other. Pure: no I/O, no clock.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import ClassVar

from firmware_bridge.errors import ProtocolError
from firmware_bridge.protocol.constants import (
    CRC_SIZE,
    HEADER_SIZE,
    MAX_FRAME_SIZE,
    MAX_PAYLOAD_SIZE,
    MAX_ZONES,
    PROTOCOL_VERSION,
    Button,
    CapabilityFlags,
    ErrorCode,
    FaultCode,
    FaultFlags,
    FrameType,
)
from firmware_bridge.protocol.crc import crc16

_U16_MAX = 0xFFFF


def _check_levels(levels: tuple[int, ...], what: str) -> None:
    if not 1 <= len(levels) <= MAX_ZONES:
        raise ProtocolError(f"{what}: {len(levels)} zones, must be 1-{MAX_ZONES}")
    for level in levels:
        if not 0 <= level <= 0xFF:
            raise ProtocolError(f"{what}: level {level} does not fit in a byte")


def _check_u16(value: int, what: str) -> None:
    if not 0 <= value <= _U16_MAX:
        raise ProtocolError(f"{what}: {value} does not fit in 16 bits")


@dataclass(frozen=True, slots=True)
class PayloadSize:
    """A frame type's payload size: `fixed` bytes, plus one level byte per zone if `per_zone`."""

    fixed: int
    per_zone: bool = False

    @property
    def allowed(self) -> range:
        """Every payload size this type may carry (one per zone count, 1-MAX_ZONES)."""
        if self.per_zone:
            return range(self.fixed + 1, self.fixed + MAX_ZONES + 1)
        return range(self.fixed, self.fixed + 1)

    def __str__(self) -> str:
        if not self.per_zone:
            return str(self.fixed)
        sizes = f"({self.allowed.start}-{self.allowed.stop - 1})"
        return f"zones {sizes}" if not self.fixed else f"{self.fixed} + zones {sizes}"


@dataclass(frozen=True, slots=True)
class Hello:
    """Controller → device: start a session handshake; the device answers CAPABILITIES."""

    TYPE: ClassVar[FrameType] = FrameType.HELLO
    PAYLOAD_SIZE: ClassVar[PayloadSize] = PayloadSize(1)
    protocol_version: int = PROTOCOL_VERSION

    def payload(self) -> bytes:
        return bytes([self.protocol_version])

    @classmethod
    def parse(cls, payload: bytes) -> Hello:
        (version,) = payload
        return cls(version)


@dataclass(frozen=True, slots=True)
class SetIntensity:
    """Controller → device: drive level per zone (0 = off .. device's max level)."""

    TYPE: ClassVar[FrameType] = FrameType.SET_INTENSITY
    PAYLOAD_SIZE: ClassVar[PayloadSize] = PayloadSize(0, per_zone=True)  # a level per zone
    levels: tuple[int, ...]

    def payload(self) -> bytes:
        _check_levels(self.levels, "SET_INTENSITY")
        return bytes(self.levels)

    @classmethod
    def parse(cls, payload: bytes) -> SetIntensity:
        levels = tuple(payload)
        _check_levels(levels, "SET_INTENSITY")
        return cls(levels)


@dataclass(frozen=True, slots=True)
class Stop:
    """Controller → device: zero every zone now; the device acks with the applied levels."""

    TYPE: ClassVar[FrameType] = FrameType.STOP
    PAYLOAD_SIZE: ClassVar[PayloadSize] = PayloadSize(0)

    def payload(self) -> bytes:
        return b""

    @classmethod
    def parse(cls, payload: bytes) -> Stop:
        return cls()


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Controller → device: keeps the dead-man watchdog from zeroing output."""

    TYPE: ClassVar[FrameType] = FrameType.HEARTBEAT
    PAYLOAD_SIZE: ClassVar[PayloadSize] = PayloadSize(0)

    def payload(self) -> bytes:
        return b""

    @classmethod
    def parse(cls, payload: bytes) -> Heartbeat:
        return cls()


@dataclass(frozen=True, slots=True)
class SetWatchdog:
    """Controller → device: dead-man watchdog period in milliseconds."""

    TYPE: ClassVar[FrameType] = FrameType.SET_WATCHDOG
    PAYLOAD_SIZE: ClassVar[PayloadSize] = PayloadSize(2)
    ms: int

    def payload(self) -> bytes:
        _check_u16(self.ms, "SET_WATCHDOG")
        return struct.pack(">H", self.ms)

    @classmethod
    def parse(cls, payload: bytes) -> SetWatchdog:
        return cls(*struct.unpack(">H", payload))


@dataclass(frozen=True, slots=True)
class SetTimer:
    """Controller → device: on-device session timer in seconds (0 = off)."""

    TYPE: ClassVar[FrameType] = FrameType.SET_TIMER
    PAYLOAD_SIZE: ClassVar[PayloadSize] = PayloadSize(2)
    seconds: int

    def payload(self) -> bytes:
        _check_u16(self.seconds, "SET_TIMER")
        return struct.pack(">H", self.seconds)

    @classmethod
    def parse(cls, payload: bytes) -> SetTimer:
        return cls(*struct.unpack(">H", payload))


@dataclass(frozen=True, slots=True)
class QueryStatus:
    """Controller → device: ask for a STATUS frame now."""

    TYPE: ClassVar[FrameType] = FrameType.QUERY_STATUS
    PAYLOAD_SIZE: ClassVar[PayloadSize] = PayloadSize(0)

    def payload(self) -> bytes:
        return b""

    @classmethod
    def parse(cls, payload: bytes) -> QueryStatus:
        return cls()


@dataclass(frozen=True, slots=True)
class Capabilities:
    """Device → controller: what this firmware is and can do."""

    TYPE: ClassVar[FrameType] = FrameType.CAPABILITIES
    _FORMAT: ClassVar[str] = ">HBBBBBBH"
    PAYLOAD_SIZE: ClassVar[PayloadSize] = PayloadSize(struct.calcsize(_FORMAT))
    model: int
    firmware: tuple[int, int, int]
    zones: int
    max_level: int
    flags: CapabilityFlags
    watchdog_ms: int

    @property
    def has_watchdog(self) -> bool:
        return CapabilityFlags.WATCHDOG in self.flags

    @property
    def has_timer(self) -> bool:
        return CapabilityFlags.TIMER in self.flags

    @property
    def has_heat(self) -> bool:
        return CapabilityFlags.HEAT in self.flags

    @property
    def firmware_version(self) -> str:
        return ".".join(str(part) for part in self.firmware)

    def payload(self) -> bytes:
        if not 1 <= self.zones <= MAX_ZONES:
            raise ProtocolError(f"CAPABILITIES: zones {self.zones} must be 1-{MAX_ZONES}")
        if not 1 <= self.max_level <= 0xFF:
            raise ProtocolError(f"CAPABILITIES: max_level {self.max_level} must be 1-255")
        _check_u16(self.model, "CAPABILITIES model")
        _check_u16(self.watchdog_ms, "CAPABILITIES watchdog_ms")
        if any(not 0 <= part <= 0xFF for part in self.firmware):
            raise ProtocolError(f"CAPABILITIES: firmware {self.firmware} parts must fit a byte")
        return struct.pack(
            self._FORMAT,
            self.model,
            *self.firmware,
            self.zones,
            self.max_level,
            int(self.flags),
            self.watchdog_ms,
        )

    @classmethod
    def parse(cls, payload: bytes) -> Capabilities:
        model, major, minor, patch, zones, max_level, flags, watchdog_ms = struct.unpack(
            cls._FORMAT, payload
        )
        if not 1 <= zones <= MAX_ZONES or max_level < 1:
            raise ProtocolError(f"CAPABILITIES: zones {zones} / max_level {max_level} invalid")
        return cls(
            model, (major, minor, patch), zones, max_level, CapabilityFlags(flags), watchdog_ms
        )


@dataclass(frozen=True, slots=True)
class Ack:
    """Device → controller: command `acked_seq` was applied; `levels` is what the motors got."""

    TYPE: ClassVar[FrameType] = FrameType.ACK
    PAYLOAD_SIZE: ClassVar[PayloadSize] = PayloadSize(2, per_zone=True)  # seq, type, levels
    acked_seq: int
    acked_type: int
    levels: tuple[int, ...]

    def payload(self) -> bytes:
        _check_levels(self.levels, "ACK")
        return bytes([self.acked_seq & 0xFF, self.acked_type & 0xFF, *self.levels])

    @classmethod
    def parse(cls, payload: bytes) -> Ack:
        levels = tuple(payload[2:])
        _check_levels(levels, "ACK")
        return cls(payload[0], payload[1], levels)


@dataclass(frozen=True, slots=True)
class Nack:
    """Device → controller: command `acked_seq` was refused with `code`; `levels` still apply."""

    TYPE: ClassVar[FrameType] = FrameType.NACK
    PAYLOAD_SIZE: ClassVar[PayloadSize] = PayloadSize(3, per_zone=True)  # + error code
    acked_seq: int
    acked_type: int
    code: ErrorCode
    levels: tuple[int, ...]

    def payload(self) -> bytes:
        _check_levels(self.levels, "NACK")
        return bytes([self.acked_seq & 0xFF, self.acked_type & 0xFF, int(self.code), *self.levels])

    @classmethod
    def parse(cls, payload: bytes) -> Nack:
        try:
            code = ErrorCode(payload[2])
        except ValueError as exc:
            raise ProtocolError(f"NACK: unknown error code 0x{payload[2]:02x}") from exc
        levels = tuple(payload[3:])
        _check_levels(levels, "NACK")
        return cls(payload[0], payload[1], code, levels)


@dataclass(frozen=True, slots=True)
class Status:
    """Device → controller, periodic: applied levels, battery %, contact temperature, faults."""

    TYPE: ClassVar[FrameType] = FrameType.STATUS
    PAYLOAD_SIZE: ClassVar[PayloadSize] = PayloadSize(4, per_zone=True)  # levels + 4 bytes
    levels: tuple[int, ...]
    battery_pct: int
    temperature_c: float  # carried as signed tenths of a degree
    faults: FaultFlags = FaultFlags.NONE

    def payload(self) -> bytes:
        _check_levels(self.levels, "STATUS")
        if not 0 <= self.battery_pct <= 100:
            raise ProtocolError(f"STATUS: battery {self.battery_pct} % must be 0-100")
        decidegrees = round(self.temperature_c * 10)
        if not -0x8000 <= decidegrees <= 0x7FFF:
            raise ProtocolError(f"STATUS: temperature {self.temperature_c} °C out of range")
        return bytes(self.levels) + struct.pack(
            ">BhB", self.battery_pct, decidegrees, int(self.faults)
        )

    @classmethod
    def parse(cls, payload: bytes) -> Status:
        levels = tuple(payload[:-4])
        _check_levels(levels, "STATUS")
        battery, decidegrees, faults = struct.unpack(">BhB", payload[-4:])
        if battery > 100:
            raise ProtocolError(f"STATUS: battery {battery} % must be 0-100")
        return cls(levels, battery, decidegrees / 10, FaultFlags(faults))


@dataclass(frozen=True, slots=True)
class ButtonPress:
    """Device → controller: a button on the device was pressed (the device already acted)."""

    TYPE: ClassVar[FrameType] = FrameType.BUTTON
    PAYLOAD_SIZE: ClassVar[PayloadSize] = PayloadSize(1)
    button: Button = Button.STOP

    def payload(self) -> bytes:
        return bytes([int(self.button)])

    @classmethod
    def parse(cls, payload: bytes) -> ButtonPress:
        (raw,) = payload
        try:
            return cls(Button(raw))
        except ValueError as exc:
            raise ProtocolError(f"BUTTON: unknown button 0x{raw:02x}") from exc


@dataclass(frozen=True, slots=True)
class Fault:
    """Device → controller: something stopped or limited output; `detail` is code-specific."""

    TYPE: ClassVar[FrameType] = FrameType.FAULT
    PAYLOAD_SIZE: ClassVar[PayloadSize] = PayloadSize(2)
    code: FaultCode
    detail: int = 0

    def payload(self) -> bytes:
        return bytes([int(self.code), self.detail & 0xFF])

    @classmethod
    def parse(cls, payload: bytes) -> Fault:
        raw, detail = payload
        try:
            return cls(FaultCode(raw), detail)
        except ValueError as exc:
            raise ProtocolError(f"FAULT: unknown fault code 0x{raw:02x}") from exc


Message = (
    Hello
    | SetIntensity
    | Stop
    | Heartbeat
    | SetWatchdog
    | SetTimer
    | QueryStatus
    | Capabilities
    | Ack
    | Nack
    | Status
    | ButtonPress
    | Fault
)

_PARSERS: dict[int, type[Message]] = {
    cls.TYPE: cls
    for cls in (
        Hello,
        SetIntensity,
        Stop,
        Heartbeat,
        SetWatchdog,
        SetTimer,
        QueryStatus,
        Capabilities,
        Ack,
        Nack,
        Status,
        ButtonPress,
        Fault,
    )
}


@dataclass(frozen=True, slots=True)
class Frame:
    """A decoded frame: its sequence number and message."""

    seq: int
    message: Message = field()


def encode(message: Message, seq: int) -> bytes:
    """Encode `message` with sequence number `seq` (taken modulo 256) into one frame."""
    payload = message.payload()
    if len(payload) > MAX_PAYLOAD_SIZE:
        raise ProtocolError(f"{message.TYPE.name}: payload {len(payload)} > {MAX_PAYLOAD_SIZE}")
    body = bytes([PROTOCOL_VERSION, seq & 0xFF, int(message.TYPE), len(payload)]) + payload
    return body + crc16(body).to_bytes(CRC_SIZE, "big")


def decode(data: bytes | bytearray | memoryview) -> Frame:
    """Decode one frame; raises ProtocolError (and nothing else) on any malformed input."""
    raw = bytes(data)
    if not HEADER_SIZE + CRC_SIZE <= len(raw) <= MAX_FRAME_SIZE:
        raise ProtocolError(f"frame of {len(raw)} bytes, must be 6-{MAX_FRAME_SIZE}")
    version, seq, type_code, length = raw[0], raw[1], raw[2], raw[3]
    if HEADER_SIZE + length + CRC_SIZE != len(raw):
        raise ProtocolError(f"payload length {length} does not match frame size {len(raw)}")
    body, received_crc = raw[:-CRC_SIZE], int.from_bytes(raw[-CRC_SIZE:], "big")
    if crc16(body) != received_crc:
        raise ProtocolError(f"CRC mismatch (got 0x{received_crc:04x}, want 0x{crc16(body):04x})")
    if version != PROTOCOL_VERSION:
        raise ProtocolError(f"protocol version {version}, this controller speaks 1")
    parser = _PARSERS.get(type_code)
    if parser is None:
        raise ProtocolError(f"unknown frame type 0x{type_code:02x}")
    if length not in parser.PAYLOAD_SIZE.allowed:
        # Checked before `parse`: a STOP or HEARTBEAT with stray bytes is not one (S4's
        # watchdog must not be fed by a frame the device would refuse).
        unit = "byte" if length == 1 else "bytes"
        raise ProtocolError(
            f"{parser.TYPE.name}: payload of {length} {unit}, must be {parser.PAYLOAD_SIZE}"
        )
    try:
        message = parser.parse(raw[HEADER_SIZE:-CRC_SIZE])
    except (ValueError, struct.error) as exc:  # defence in depth: the size was checked above
        raise ProtocolError(f"{parser.TYPE.name}: malformed payload: {exc}") from exc
    return Frame(seq, message)
