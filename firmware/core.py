"""Protocol v1 core of the reference massager firmware (see docs/protocol.md, docs/firmware.md).

This file is flashed as it is (`core.py` on the board) and runs unchanged under CPython, where
the tests and the simulator host it. It is sans-IO: no pins, no radio, no clock. The board glue
(`main.py`, `board.py`) hands it each control write, each sensor reading and the passage of time,
and carries out what it returns (notify these frames) and what it reports (`on_levels`: put
these levels on the motors now).

Time is any monotonic count of milliseconds passed in by the caller: an int on the board (see
`board.Clock`), a float when the simulator hosts the core. Temperatures are tenths of a degree
Celsius (ints), battery charge is whole percent.

MicroPython rules kept here: nothing imported but `struct`; no dataclasses, enums or typing at
run time (annotations are never evaluated by MicroPython, and names only mypy knows are quoted);
no `[*a, b]` unpacking displays (MicroPython lacks PEP 448); no f-strings.
"""

import struct

TYPE_CHECKING = False  # mypy treats this name as True; MicroPython has no `typing` module
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    Fields = tuple[Any, ...]  # a message's fields (the table above `payload_of`)

# -- wire constants (firmware_bridge/protocol/constants.py, restated: this file imports nothing) --

PROTOCOL_VERSION = 1
MAX_FRAME_SIZE = 20  # one ATT write or notification at the minimum MTU of 23
HEADER_SIZE = 4  # version, sequence, type, payload length
CRC_SIZE = 2
MIN_FRAME_SIZE = HEADER_SIZE + CRC_SIZE
MAX_ZONES = 8

# Frame types: controller -> device below 0x80, device -> controller from 0x80.
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

# NACK error codes.
OK = 0x00
BAD_CRC = 0x01
BAD_LENGTH = 0x02
UNKNOWN_TYPE = 0x03
OUT_OF_RANGE = 0x04
BAD_VERSION = 0x05
UNSUPPORTED = 0x06
LATCHED = 0x07
BUSY = 0x08

# FAULT codes.
FAULT_OVER_TEMPERATURE = 0x01
FAULT_LOW_BATTERY = 0x02
FAULT_MOTOR = 0x03
FAULT_WATCHDOG_EXPIRED = 0x04
FAULT_TIMER_EXPIRED = 0x05
FAULT_REBOOTED = 0x06

# Fault flags in STATUS.
FLAG_OVER_TEMPERATURE = 0x01
FLAG_LOW_BATTERY = 0x02
FLAG_MOTOR = 0x04
FLAG_WATCHDOG_TRIPPED = 0x08
FLAG_LATCHED = 0x10

# Capability flags.
CAP_WATCHDOG = 0x01
CAP_TIMER = 0x02
CAP_HEAT = 0x04
CAP_WRITE_WITH_RESPONSE = 0x08

BUTTON_STOP = 0x01

# Payload size per type: (fixed bytes, plus one level byte per zone?).
PAYLOAD_SIZES = {
    HELLO: (1, False),
    SET_INTENSITY: (0, True),
    STOP: (0, False),
    HEARTBEAT: (0, False),
    SET_WATCHDOG: (2, False),
    SET_TIMER: (2, False),
    QUERY_STATUS: (0, False),
    CAPABILITIES: (10, False),
    ACK: (2, True),
    NACK: (3, True),
    STATUS: (4, True),
    BUTTON: (1, False),
    FAULT: (2, False),
}

# -- what this firmware is and what it guarantees --------------------------------------------

MODEL_ID = 0x0F10  # the reference firmware (the simulator's model is 0x0F00)
FIRMWARE_VERSION = (1, 0, 0)
ZONES = 3  # heel, arch, forefoot
MAX_LEVEL = 20

DEFAULT_WATCHDOG_MS = 1500  # dead-man period after power-on and after every reboot
MIN_WATCHDOG_MS = 200
MAX_WATCHDOG_MS = 3000  # a longer period is refused (NACK OUT_OF_RANGE)
MAX_TIMER_S = 1800  # a longer on-device session timer is refused
STATUS_INTERVAL_MS = 500  # periodic STATUS at 2 Hz

# The contact surface must never pass 43.0 °C (the protocol's limit). Motor heat lags, so the
# firmware stops at its own lower target: above 41.0 °C output is zeroed and non-zero levels
# are refused until the surface is back at 40.0 °C or below.
TEMPERATURE_LIMIT_DC = 430
OVER_TEMPERATURE_STOP_DC = 410
OVER_TEMPERATURE_CLEAR_DC = 400
# A reading outside this range is a broken or unplugged sensor: treated as over-temperature.
SENSOR_MIN_DC = -200
SENSOR_MAX_DC = 800
LOW_BATTERY_PCT = 5  # below this: output zeroed, non-zero levels refused ...
LOW_BATTERY_CLEAR_PCT = 7  # ... until the charge reads this much again (no flapping at 5 %)


# -- CRC and framing -------------------------------------------------------------------------


def _crc_table() -> "list[int]":
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
        table.append(crc & 0xFFFF)
    return table


_CRC_TABLE = _crc_table()


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, no reflection, no final xor."""
    crc = 0xFFFF
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ _CRC_TABLE[((crc >> 8) ^ byte) & 0xFF]
    return crc


class FrameError(ValueError):
    """A frame that is not one; `code` is the NACK error code that describes it."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code = code


def payload_sizes(frame_type: int) -> "tuple[int, int]":
    """The smallest and largest payload `frame_type` may carry (ValueError if unknown)."""
    size = PAYLOAD_SIZES.get(frame_type)
    if size is None:
        raise ValueError("unknown frame type")
    fixed, per_zone = size
    if per_zone:
        return fixed + 1, fixed + MAX_ZONES
    return fixed, fixed


def encode(frame_type: int, seq: int, payload: bytes) -> bytes:
    """One frame: header, `payload`, CRC. `seq` is taken modulo 256."""
    low, high = payload_sizes(frame_type)
    if not low <= len(payload) <= high:
        raise ValueError("payload size does not fit the frame type")
    body = bytes((PROTOCOL_VERSION, seq & 0xFF, frame_type, len(payload))) + payload
    return body + struct.pack(">H", crc16(body))


def decode(raw: bytes) -> "tuple[int, int, bytes]":
    """(sequence, type, payload) of one frame; FrameError for anything malformed.

    Checked in the order the NACK codes are given: size and length field (BAD_LENGTH), CRC
    (BAD_CRC), version (BAD_VERSION), type (UNKNOWN_TYPE), payload size for the type
    (BAD_LENGTH). A frame that fails any check is not a valid frame: it feeds no watchdog.
    """
    raw = bytes(raw)
    size = len(raw)
    if size < MIN_FRAME_SIZE or size > MAX_FRAME_SIZE or raw[3] + MIN_FRAME_SIZE != size:
        raise FrameError(BAD_LENGTH, "frame size or length field wrong")
    if crc16(raw[:-CRC_SIZE]) != (raw[-2] << 8 | raw[-1]):
        raise FrameError(BAD_CRC, "CRC mismatch")
    if raw[0] != PROTOCOL_VERSION:
        raise FrameError(BAD_VERSION, "unsupported protocol version")
    frame_type = raw[2]
    if frame_type not in PAYLOAD_SIZES:
        raise FrameError(UNKNOWN_TYPE, "unknown frame type")
    low, high = payload_sizes(frame_type)
    if not low <= raw[3] <= high:
        raise FrameError(BAD_LENGTH, "payload size wrong for the frame type")
    return raw[1], frame_type, raw[HEADER_SIZE:-CRC_SIZE]


# -- messages: payload <-> fields ------------------------------------------------------------
#
# Fields per type, as tuples (levels are tuples of ints, temperatures tenths of °C):
#   HELLO (version,)          SET_INTENSITY (levels,)     STOP, HEARTBEAT, QUERY_STATUS ()
#   SET_WATCHDOG (ms,)        SET_TIMER (seconds,)        BUTTON (button,)
#   CAPABILITIES (model, (major, minor, patch), zones, max_level, flags, watchdog_ms)
#   ACK (acked_seq, acked_type, levels)         NACK (acked_seq, acked_type, code, levels)
#   STATUS (levels, battery_pct, temperature_dc, fault_flags)       FAULT (code, detail)


def _byte(value: int) -> int:
    if not 0 <= value <= 0xFF:
        raise ValueError("value does not fit in a byte")
    return value


def _levels(levels: "tuple[int, ...]") -> bytes:
    if not 1 <= len(levels) <= MAX_ZONES:
        raise ValueError("1-8 zones")
    return bytes([_byte(level) for level in levels])


def payload_of(frame_type: int, fields: "Fields") -> bytes:
    """The payload bytes of a message of `frame_type` with `fields` (ValueError if unfit)."""
    if frame_type in (STOP, HEARTBEAT, QUERY_STATUS):
        return b""
    if frame_type in (HELLO, BUTTON):
        return bytes((_byte(fields[0]),))
    if frame_type == SET_INTENSITY:
        return _levels(fields[0])
    if frame_type in (SET_WATCHDOG, SET_TIMER):
        return struct.pack(">H", fields[0])
    if frame_type == CAPABILITIES:
        model, version, zones, max_level, flags, watchdog_ms = fields
        if not 1 <= zones <= MAX_ZONES or not 1 <= max_level <= 0xFF:
            raise ValueError("zones 1-8, max_level 1-255")
        return struct.pack(
            ">HBBBBBBH",
            model,
            version[0],
            version[1],
            version[2],
            zones,
            max_level,
            flags,
            watchdog_ms,
        )
    if frame_type == ACK:
        return bytes((fields[0] & 0xFF, fields[1] & 0xFF)) + _levels(fields[2])
    if frame_type == NACK:
        head = bytes((fields[0] & 0xFF, fields[1] & 0xFF, _byte(fields[2])))
        return head + _levels(fields[3])
    if frame_type == STATUS:
        levels, battery, temperature_dc, flags = fields
        if not 0 <= battery <= 100:
            raise ValueError("battery 0-100 %")
        return _levels(levels) + struct.pack(">BhB", battery, temperature_dc, flags)
    if frame_type == FAULT:
        return bytes((_byte(fields[0]), fields[1] & 0xFF))
    raise ValueError("unknown frame type")


def fields_of(frame_type: int, payload: bytes) -> "Fields":  # noqa: PLR0912 - a case per type
    """The fields of a payload `decode` accepted; FrameError(BAD_LENGTH) if one is invalid."""
    if frame_type in (STOP, HEARTBEAT, QUERY_STATUS):
        return ()
    if frame_type == HELLO:
        return (payload[0],)
    if frame_type == SET_INTENSITY:
        return (tuple(payload),)
    if frame_type in (SET_WATCHDOG, SET_TIMER):
        return (payload[0] << 8 | payload[1],)
    if frame_type == CAPABILITIES:
        model, major, minor, patch, zones, max_level, flags, watchdog_ms = struct.unpack(
            ">HBBBBBBH", payload
        )
        if not 1 <= zones <= MAX_ZONES or max_level < 1:
            raise FrameError(BAD_LENGTH, "CAPABILITIES: zones or max_level invalid")
        return (model, (major, minor, patch), zones, max_level, flags, watchdog_ms)
    if frame_type == ACK:
        return (payload[0], payload[1], tuple(payload[2:]))
    if frame_type == NACK:
        if payload[2] > BUSY:
            raise FrameError(BAD_LENGTH, "NACK: unknown error code")
        return (payload[0], payload[1], payload[2], tuple(payload[3:]))
    if frame_type == STATUS:
        battery, temperature_dc, flags = struct.unpack(">BhB", payload[-4:])
        if battery > 100:
            raise FrameError(BAD_LENGTH, "STATUS: battery over 100 %")
        return (tuple(payload[:-4]), battery, temperature_dc, flags)
    if frame_type == BUTTON:
        if payload[0] != BUTTON_STOP:
            raise FrameError(BAD_LENGTH, "BUTTON: unknown button")
        return (payload[0],)
    if frame_type == FAULT:
        if not FAULT_OVER_TEMPERATURE <= payload[0] <= FAULT_REBOOTED:
            raise FrameError(BAD_LENGTH, "FAULT: unknown fault code")
        return (payload[0], payload[1])
    raise FrameError(UNKNOWN_TYPE, "unknown frame type")


def pack(frame_type: int, seq: int, fields: "Fields") -> bytes:
    """One whole frame from a message's fields."""
    return encode(frame_type, seq, payload_of(frame_type, fields))


def unpack(raw: bytes) -> "tuple[int, int, Fields]":
    """(sequence, type, fields) of one frame; FrameError for anything malformed."""
    seq, frame_type, payload = decode(raw)
    return seq, frame_type, fields_of(frame_type, payload)


# -- the device --------------------------------------------------------------------------------


class Core:
    """The massager's behaviour: feed it writes, sensor readings and time; send what it returns.

    Every input method returns a list of frames (bytes) to notify on the telemetry
    characteristic, oldest first (drop them if no central is connected). Whenever the levels on
    the motors change, `on_levels(t_ms, levels, cause)` is called at once: `t_ms` is when the
    change took effect (a watchdog or timer zeroes at its own deadline even when the caller is
    late), `cause` one of set, stop, watchdog, timer, button, over_temperature, low_battery,
    link_lost, reboot. `levels` always holds what the motors must be driving now.
    """

    def __init__(
        self,
        now_ms: float = 0,
        *,
        zones: int = ZONES,
        max_level: int = MAX_LEVEL,
        battery_pct: int = 100,
        temperature_dc: int = 250,
        model: int = MODEL_ID,
        firmware: "tuple[int, int, int]" = FIRMWARE_VERSION,
    ) -> None:
        if not 1 <= zones <= MAX_ZONES or not 1 <= max_level <= 0xFF:
            raise ValueError("zones 1-8, max_level 1-255")
        self.zones = zones
        self.max_level = max_level
        self.model = model
        self.firmware = firmware
        self.on_levels: Callable[[float, tuple[int, ...], str], None] | None = None
        # Hosts that run faster than real time set this: the watchdog never expires sooner.
        self.watchdog_floor_ms: float = 0
        self.battery_pct = battery_pct
        self.temperature_dc = temperature_dc
        self.over_temperature = False
        self.low_battery = False
        self.boots = 0
        self.levels: tuple[int, ...] = (0,) * zones
        self.reset(now_ms)
        self._check_limits(now_ms)

    # -- state -------------------------------------------------------------------------------

    def reset(self, now_ms: float) -> None:
        """Power-on state: output zero, watchdog back to default, timer off, latch clear."""
        self._apply((0,) * self.zones, now_ms, "reboot")
        self.watchdog_ms = DEFAULT_WATCHDOG_MS
        self.watchdog_tripped = False
        self.latched = False
        self.timer_deadline_ms: float | None = None
        self.last_valid_ms = now_ms
        self.next_status_ms = now_ms + STATUS_INTERVAL_MS
        self.seq = 0
        self.boots += 1

    def fault_flags(self) -> int:
        flags = 0
        if self.over_temperature:
            flags |= FLAG_OVER_TEMPERATURE
        if self.low_battery:
            flags |= FLAG_LOW_BATTERY
        if self.watchdog_tripped:
            flags |= FLAG_WATCHDOG_TRIPPED
        if self.latched:
            flags |= FLAG_LATCHED
        return flags

    def capabilities(self) -> bytes:
        """The CAPABILITIES frame (sequence 0) this firmware answers HELLO with."""
        return pack(CAPABILITIES, 0, self._capability_fields())

    def status(self) -> bytes:
        """The STATUS frame (sequence 0): also the telemetry characteristic's read value."""
        return pack(STATUS, 0, self._status_fields())

    def next_deadline(self) -> float:
        """When `tick` next has something to do (the caller may sleep until then)."""
        deadline = self.next_status_ms
        if any(self.levels):
            deadline = min(deadline, self.last_valid_ms + self._watchdog_period())
        if self.timer_deadline_ms is not None:
            deadline = min(deadline, self.timer_deadline_ms)
        return deadline

    # -- inputs ------------------------------------------------------------------------------

    def receive(self, raw: bytes, now_ms: float) -> "list[bytes]":
        """One write to the control characteristic."""
        out = self._advance(now_ms)
        try:
            seq, frame_type, payload = decode(raw)
        except FrameError as exc:
            seq = raw[1] if len(raw) > 1 else 0
            frame_type = raw[2] if len(raw) > 2 else 0
            out.append(self._nack(seq, frame_type, exc.code))
            return out
        if frame_type >= 0x80:  # a device -> controller frame is no command: not valid here
            out.append(self._nack(seq, frame_type, UNKNOWN_TYPE))
            return out
        self.last_valid_ms = now_ms  # every valid frame feeds the dead-man watchdog
        out.extend(self._command(seq, frame_type, fields_of(frame_type, payload), now_ms))
        return out

    def tick(self, now_ms: float) -> "list[bytes]":
        """Time passed: watchdog, timer, periodic STATUS."""
        out = self._advance(now_ms)
        if now_ms >= self.next_status_ms:
            self.next_status_ms = now_ms + STATUS_INTERVAL_MS
            out.append(self._emit(STATUS, self._status_fields()))
        return out

    def sense(self, now_ms: float, battery_pct: int, temperature_dc: int) -> "list[bytes]":
        """New sensor readings: battery charge (%) and contact temperature (tenths of °C)."""
        out = self._advance(now_ms)
        self.battery_pct = battery_pct
        self.temperature_dc = temperature_dc
        out.extend(self._check_limits(now_ms))
        return out

    def press_button(self, now_ms: float) -> "list[bytes]":
        """The stop button: zero at once, latch until the next HELLO, tell the controller."""
        out = self._advance(now_ms)
        self.latched = True
        self._apply((0,) * self.zones, now_ms, "button")
        out.append(self._emit(BUTTON, (BUTTON_STOP,)))
        return out

    def link_lost(self, now_ms: float) -> None:
        """The central is gone: output is zeroed at once (nobody is left to stop it)."""
        self._advance(now_ms)
        self._apply((0,) * self.zones, now_ms, "link_lost")

    # -- internals -----------------------------------------------------------------------------

    def _command(self, seq: int, frame_type: int, fields: "Fields", now_ms: float) -> "list[bytes]":
        if frame_type == HELLO:
            if fields[0] != PROTOCOL_VERSION:
                return [self._nack(seq, frame_type, BAD_VERSION)]
            self.latched = False
            self.watchdog_tripped = False
            return [self._emit(CAPABILITIES, self._capability_fields())]
        if frame_type == SET_INTENSITY:
            levels = fields[0]
            if len(levels) != self.zones or max(levels) > self.max_level:
                return [self._nack(seq, frame_type, OUT_OF_RANGE)]  # refused, never clamped
            if any(levels) and (self.latched or self.over_temperature or self.low_battery):
                return [self._nack(seq, frame_type, LATCHED)]
            self._apply(levels, now_ms, "set")
            return [self._ack(seq, frame_type)]
        if frame_type == STOP:  # accepted in every state
            self._apply((0,) * self.zones, now_ms, "stop")
            return [self._ack(seq, frame_type)]
        if frame_type == HEARTBEAT:
            return []
        if frame_type == SET_WATCHDOG:
            if not MIN_WATCHDOG_MS <= fields[0] <= MAX_WATCHDOG_MS:
                return [self._nack(seq, frame_type, OUT_OF_RANGE)]
            self.watchdog_ms = fields[0]
            return [self._ack(seq, frame_type)]
        if frame_type == SET_TIMER:
            if fields[0] > MAX_TIMER_S:
                return [self._nack(seq, frame_type, OUT_OF_RANGE)]
            self.timer_deadline_ms = now_ms + fields[0] * 1000 if fields[0] else None
            return [self._ack(seq, frame_type)]
        if frame_type == QUERY_STATUS:
            return [self._emit(STATUS, self._status_fields())]
        return [self._nack(seq, frame_type, UNKNOWN_TYPE)]

    def _watchdog_period(self) -> float:
        return max(self.watchdog_ms, self.watchdog_floor_ms)

    def _advance(self, now_ms: float) -> "list[bytes]":
        """Fire the deadlines that are due by `now_ms`."""
        out = []
        if any(self.levels):
            expiry = self.last_valid_ms + self._watchdog_period()
            if now_ms >= expiry:
                self.watchdog_tripped = True
                self._apply((0,) * self.zones, expiry, "watchdog")
                out.append(self._emit(FAULT, (FAULT_WATCHDOG_EXPIRED, 0)))
        deadline = self.timer_deadline_ms
        if deadline is not None and now_ms >= deadline:
            self.timer_deadline_ms = None
            self._apply((0,) * self.zones, deadline, "timer")
            out.append(self._emit(FAULT, (FAULT_TIMER_EXPIRED, 0)))
        return out

    def _check_limits(self, now_ms: float) -> "list[bytes]":
        """Over-temperature and low battery: zero output, refuse more, report once."""
        out = []
        reading = self.temperature_dc
        broken = not SENSOR_MIN_DC <= reading <= SENSOR_MAX_DC
        if broken or reading > OVER_TEMPERATURE_STOP_DC:
            self.over_temperature = True
        elif reading <= OVER_TEMPERATURE_CLEAR_DC:
            self.over_temperature = False
        if self.battery_pct < LOW_BATTERY_PCT:
            self.low_battery = True
        elif self.battery_pct >= LOW_BATTERY_CLEAR_PCT:
            self.low_battery = False
        if self.over_temperature and any(self.levels):
            self._apply((0,) * self.zones, now_ms, "over_temperature")
            degrees = max(0, min(0xFF, reading // 10))
            out.append(self._emit(FAULT, (FAULT_OVER_TEMPERATURE, degrees)))
        if self.low_battery and any(self.levels):
            self._apply((0,) * self.zones, now_ms, "low_battery")
            charge = max(0, min(100, self.battery_pct))
            out.append(self._emit(FAULT, (FAULT_LOW_BATTERY, charge)))
        return out

    def _apply(self, levels: "tuple[int, ...]", t_ms: float, cause: str) -> None:
        levels = tuple(levels)
        if any(levels):
            self.watchdog_tripped = False
        if levels == self.levels:
            return
        self.levels = levels
        if self.on_levels is not None:
            self.on_levels(t_ms, levels, cause)

    def _capability_fields(self) -> "tuple[int, tuple[int, int, int], int, int, int, int]":
        flags = CAP_WATCHDOG | CAP_TIMER | CAP_WRITE_WITH_RESPONSE
        return (self.model, self.firmware, self.zones, self.max_level, flags, self.watchdog_ms)

    def _status_fields(self) -> "tuple[tuple[int, ...], int, int, int]":
        battery = max(0, min(100, self.battery_pct))
        temperature = max(-0x8000, min(0x7FFF, self.temperature_dc))
        return (self.levels, battery, temperature, self.fault_flags())

    def _ack(self, seq: int, frame_type: int) -> bytes:
        return self._emit(ACK, (seq, frame_type, self.levels))

    def _nack(self, seq: int, frame_type: int, code: int) -> bytes:
        return self._emit(NACK, (seq, frame_type, code, self.levels))

    def _emit(self, frame_type: int, fields: "Fields") -> bytes:
        frame = pack(frame_type, self.seq, fields)
        self.seq = (self.seq + 1) & 0xFF
        return frame
