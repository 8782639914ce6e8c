"""Sans-IO model of the massager firmware: what a real device does with each frame and tick.

Inputs are raw control-characteristic writes and the passage of device time; outputs are
actions for a host to carry out (notify these bytes, drop the link). It records every frame it
received and every drive level it applied, with timestamps, so tests can assert what reached the
motors and when. No I/O, no event loop: time is passed in.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from firmware_bridge.protocol import (
    DEFAULT_WATCHDOG_MS,
    MAX_WATCHDOG_MS,
    MIN_WATCHDOG_MS,
    PROTOCOL_VERSION,
    Ack,
    Button,
    ButtonPress,
    Capabilities,
    CapabilityFlags,
    ErrorCode,
    Fault,
    FaultCode,
    FaultFlags,
    Frame,
    FrameType,
    Heartbeat,
    Hello,
    Message,
    Nack,
    ProtocolError,
    QueryStatus,
    SetIntensity,
    SetTimer,
    SetWatchdog,
    Status,
    Stop,
    crc16,
    decode,
    encode,
)

ZONES = ("heel", "arch", "forefoot")
MAX_LEVEL = 20  # drive levels 0..20; one level ≈ 5 % of maximum amplitude
MODEL_ID = 0x0F00
DEVICE_TYPES = 0x80  # frame types from here up are device → controller (docs/protocol.md)
FIRMWARE_VERSION = (1, 2, 0)
MAX_TIMER_S = 1800  # S7 hard ceiling: the firmware refuses a longer on-device timer

STATUS_INTERVAL_S = 0.5  # periodic STATUS at 2 Hz: telemetry needs ≥ 1 Hz
MOTOR_RESPONSE_S = 0.05  # first-order time constant of an eccentric-mass motor spinning up/down
AMBIENT_CONTACT_C = 31.0  # sole-of-foot skin temperature the contact surface starts at
MOTOR_HEATING_C = 6.0  # steady-state rise at full output on every zone
HEATER_C = 9.0  # steady-state rise from the optional heater (can push past the 41 °C target)
THERMAL_TAU_S = 180.0  # contact surface warms/cools with this time constant
OVER_TEMPERATURE_CUTOFF_C = 43.0  # IEC 60601-1 contact limit: firmware cuts output itself
BATTERY_DRAIN_PCT_PER_S = 0.02  # at full output on every zone: 18 % per 15 min
IDLE_DRAIN_PCT_PER_S = 0.0005  # radio and MCU
LOW_BATTERY_PCT = 5.0  # status flag below this; the controller stops (S9)
LINK_LOSS_REASON = 0x08  # HCI "connection timeout": what a walk out of range looks like
REMOTE_TERMINATED_REASON = 0x13  # HCI "remote user terminated connection"


@dataclass(frozen=True, slots=True)
class Notify:
    """Host: send `data` as a notification on the telemetry characteristic after `delay_s`."""

    data: bytes
    delay_s: float = 0.0


@dataclass(frozen=True, slots=True)
class BatteryLevel:
    """Host: update (and notify) the standard Battery Level characteristic."""

    percent: int


@dataclass(frozen=True, slots=True)
class Disconnect:
    """Host: drop the link with this HCI reason code."""

    reason: int = REMOTE_TERMINATED_REASON


Action = Notify | BatteryLevel | Disconnect


CONNECT_FAULTS = frozenset(
    {"refuse", "no_slots", "pairing_required", "pairing_refused", "vanish_mid_connect"}
)


@dataclass
class FaultPlan:
    """Misbehaviour to inject; probabilities per notification, times in device seconds."""

    drop_notify: float = 0.0  # probability a notification never arrives
    garble_notify: float = 0.0  # probability one byte of a notification is corrupted
    delay_notify_s: float = 0.0  # extra latency on every notification
    nack_types: frozenset[FrameType] = frozenset()  # these commands are refused with BUSY
    slow_write_s: float = 0.0  # the device takes this long to accept each write (host-level)
    disconnect_at_s: float | None = None  # peripheral drops the link at this device time
    reboot_at_s: float | None = None  # the device reboots (forgets everything, drops the link)
    no_watchdog: bool = False  # firmware without a dead-man watchdog (must be flagged)
    mute_at_s: float | None = None  # from this device time on nothing is notified (a hung
    # radio task): writes are still obeyed, but no STATUS, ACK or FAULT comes back
    seed: int = 0
    # How every connection attempt fails (hosts: tier 1 memory.py, tier 2 virtual.py), one of
    # CONNECT_FAULTS: "refuse" (the massager rejects the central), "no_slots" (the central's
    # adapter has no free connection slot), "pairing_required" (connects only with pair=True),
    # "pairing_refused" (pairing is rejected), "vanish_mid_connect" (the link drops while the
    # services are discovered, as at the edge of range). None: connections succeed.
    connect_fault: str | None = None
    # An impersonated model drops a write that arrives closer than this to the last one it took
    # (clock s): what its description's `timing.min_gap_ms` warns of. 0: it takes every write.
    drop_crowded_s: float = 0.0


@dataclass(frozen=True, slots=True)
class ReceivedFrame:
    """One control write as the firmware saw it."""

    t: float
    raw: bytes
    frame: Frame | None
    error: str | None
    # True: ATT Write Request (acknowledged by the ATT layer); False: Write Command (no
    # response); None: the host could not tell.
    with_response: bool | None = None


@dataclass(frozen=True, slots=True)
class AppliedLevels:
    """Drive levels the firmware put on the motors at time `t`."""

    t: float
    levels: tuple[int, ...]
    cause: str


@dataclass
class Firmware:
    """The device's behaviour. Call `receive` for each write and `tick` as time passes."""

    zones: int = len(ZONES)
    max_level: int = MAX_LEVEL
    has_heat: bool = True
    battery_pct: float = 100.0
    plan: FaultPlan = field(default_factory=FaultPlan)
    status_interval_s: float = STATUS_INTERVAL_S
    motor_response_s: float = MOTOR_RESPONSE_S
    # Hosts running faster than real time set this: the watchdog never expires sooner than it
    # (see SimulatedMassager), so a process hiccup at --speed 120 is not a dead controller.
    watchdog_floor_s: float = 0.0
    # The watchdog a power-on starts with (None: none); an impersonated model sets its own.
    default_watchdog_s: float | None = DEFAULT_WATCHDOG_MS / 1000

    received: list[ReceivedFrame] = field(default_factory=list, init=False)
    applied: list[AppliedLevels] = field(default_factory=list, init=False)
    notified: list[tuple[float, Message]] = field(default_factory=list, init=False)
    # Called with each entry as it is appended to `applied` (e.g. sim.record writes it out).
    on_applied: Callable[[AppliedLevels], None] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        self._rng = random.Random(self.plan.seed)
        self.temperature_c = AMBIENT_CONTACT_C
        self.heat_on = False
        self.boots = 0
        self._reset(0.0)
        self._disconnect_fired = False
        self._reboot_fired = False
        self._last_battery_reported = round(self.battery_pct)

    # -- state ---------------------------------------------------------------------------

    def _reset(self, now: float) -> None:
        """Power-on state: everything off, defaults back."""
        self.levels: tuple[int, ...] = (0,) * self.zones
        self._amplitude = [0.0] * self.zones
        self.watchdog_s: float | None = None if self.plan.no_watchdog else self.default_watchdog_s
        self.watchdog_tripped = False
        self.latched = False
        self.timer_deadline: float | None = None
        self._last_valid_frame = now
        self._last_update = now
        self._next_status = now + self.status_interval_s
        self._seq = 0
        self.boots += 1

    @property
    def _watchdog_period(self) -> float:
        return max(self.watchdog_s or 0.0, self.watchdog_floor_s)

    @property
    def capabilities(self) -> Capabilities:
        flags = CapabilityFlags.TIMER | CapabilityFlags.WRITE_WITH_RESPONSE
        if not self.plan.no_watchdog:
            flags |= CapabilityFlags.WATCHDOG
        if self.has_heat:
            flags |= CapabilityFlags.HEAT
        watchdog_ms = 0 if self.watchdog_s is None else round(self.watchdog_s * 1000)
        return Capabilities(
            MODEL_ID, FIRMWARE_VERSION, self.zones, self.max_level, flags, watchdog_ms
        )

    @property
    def fault_flags(self) -> FaultFlags:
        flags = FaultFlags.NONE
        if self.temperature_c > OVER_TEMPERATURE_CUTOFF_C:
            flags |= FaultFlags.OVER_TEMPERATURE
        if self.battery_pct < LOW_BATTERY_PCT:
            flags |= FaultFlags.LOW_BATTERY
        if self.watchdog_tripped:
            flags |= FaultFlags.WATCHDOG_TRIPPED
        if self.latched:
            flags |= FaultFlags.LATCHED
        return flags

    def status(self) -> Status:
        return Status(
            self.levels,
            max(0, min(100, round(self.battery_pct))),
            round(self.temperature_c, 1),
            self.fault_flags,
        )

    def vibration(self) -> tuple[float, ...]:
        """Motor amplitude per zone, 0-1, as of the last update (lags drive level)."""
        return tuple(self._amplitude)

    # -- inputs --------------------------------------------------------------------------

    def receive(self, raw: bytes, now: float, *, with_response: bool | None = None) -> list[Action]:
        """Handle one write to the control characteristic (`with_response`: its ATT kind)."""
        actions = self._advance(now)
        try:
            frame = decode(raw)
        except ProtocolError as exc:
            self.received.append(ReceivedFrame(now, bytes(raw), None, str(exc), with_response))
            seq = raw[1] if len(raw) > 1 else 0
            frame_type = raw[2] if len(raw) > 2 else 0
            actions += self._emit(Nack(seq, frame_type, _classify(raw), self.levels), now)
            return actions
        self.received.append(ReceivedFrame(now, bytes(raw), frame, None, with_response))
        if frame.message.TYPE < DEVICE_TYPES:  # a device → controller type is no valid input
            self._last_valid_frame = now  # any valid command feeds the dead-man watchdog
        actions += self._handle(frame, now)
        return actions

    def press_button(self, now: float) -> list[Action]:
        """The physical stop button: zero everything, latch, tell the controller."""
        actions = self._advance(now)
        self.latched = True
        self._apply((0,) * self.zones, now, "button")
        actions += self._emit(ButtonPress(Button.STOP), now)
        return actions

    def drive(
        self,
        motors: dict[int, int],
        now: float,
        *,
        raw: bytes = b"",
        with_response: bool | None = None,
    ) -> list[Action]:
        """A simple-write device's firmware: set these motors' levels (index → level).

        Impersonated models have no frames, acks or latch: a write that parses sets the
        motors and feeds the watchdog (if the model has one); `raw` is kept in `received`.
        """
        actions = self._advance(now)
        if not motors:  # not understood (or dropped): ignored, and it feeds no watchdog
            self.received.append(ReceivedFrame(now, raw, None, "ignored", with_response))
            return actions
        self.received.append(ReceivedFrame(now, raw, None, None, with_response))
        self._last_valid_frame = now
        levels = list(self.levels)
        for motor, level in motors.items():
            levels[motor] = min(level, self.max_level)
        self._apply(tuple(levels), now, "set" if any(levels) else "stop")
        return actions

    def tick(self, now: float) -> list[Action]:
        """Let device time pass up to `now`: watchdog, timer, thermal, battery, status, plan."""
        actions = self._advance(now)
        if now >= self._next_status:
            self._next_status = now + self.status_interval_s
            actions += self._emit(self.status(), now)
        return actions

    def next_deadline(self) -> float:
        """Device time of the next thing `tick` must handle (host sleeps until then)."""
        deadlines = [self._next_status]
        if self.watchdog_s is not None and any(self.levels):
            deadlines.append(self._last_valid_frame + self._watchdog_period)
        if self.timer_deadline is not None:
            deadlines.append(self.timer_deadline)
        for at, fired in (
            (self.plan.disconnect_at_s, self._disconnect_fired),
            (self.plan.reboot_at_s, self._reboot_fired),
        ):
            if at is not None and not fired:
                deadlines.append(at)
        return min(deadlines)

    # -- internals -----------------------------------------------------------------------

    def _handle(self, frame: Frame, now: float) -> list[Action]:  # noqa: PLR0912
        """One case per command type: the dispatcher reads best as a single match."""
        msg, seq = frame.message, frame.seq
        if msg.TYPE in self.plan.nack_types:
            return self._emit(Nack(seq, msg.TYPE, ErrorCode.BUSY, self.levels), now)
        match msg:
            case Hello(protocol_version=version):
                if version != PROTOCOL_VERSION:
                    return self._emit(Nack(seq, msg.TYPE, ErrorCode.BAD_VERSION, self.levels), now)
                self.latched = False
                self.watchdog_tripped = False
                return self._emit(self.capabilities, now)
            case SetIntensity(levels=levels):
                if len(levels) != self.zones or max(levels) > self.max_level:
                    return self._nack(seq, msg, ErrorCode.OUT_OF_RANGE, now)
                if self.latched and any(levels):
                    return self._nack(seq, msg, ErrorCode.LATCHED, now)
                if self.temperature_c > OVER_TEMPERATURE_CUTOFF_C and any(levels):
                    return self._nack(seq, msg, ErrorCode.LATCHED, now)
                self._apply(levels, now, "set")
                return self._emit(Ack(seq, msg.TYPE, self.levels), now)
            case Stop():
                self._apply((0,) * self.zones, now, "stop")
                return self._emit(Ack(seq, msg.TYPE, self.levels), now)
            case Heartbeat():
                return []
            case SetWatchdog(ms=ms):
                if self.plan.no_watchdog:
                    return self._nack(seq, msg, ErrorCode.UNSUPPORTED, now)
                if not MIN_WATCHDOG_MS <= ms <= MAX_WATCHDOG_MS:
                    return self._nack(seq, msg, ErrorCode.OUT_OF_RANGE, now)
                self.watchdog_s = ms / 1000
                return self._emit(Ack(seq, msg.TYPE, self.levels), now)
            case SetTimer(seconds=seconds):
                if seconds > MAX_TIMER_S:
                    return self._nack(seq, msg, ErrorCode.OUT_OF_RANGE, now)
                self.timer_deadline = now + seconds if seconds else None
                return self._emit(Ack(seq, msg.TYPE, self.levels), now)
            case QueryStatus():
                return self._emit(self.status(), now)
            case _:  # device → controller frames sent to the device
                return self._nack(seq, msg, ErrorCode.UNKNOWN_TYPE, now)

    def _nack(self, seq: int, msg: Message, code: ErrorCode, now: float) -> list[Action]:
        return self._emit(Nack(seq, msg.TYPE, code, self.levels), now)

    def _apply(self, levels: tuple[int, ...], now: float, cause: str) -> None:
        if levels != self.levels:
            self.levels = tuple(levels)
            self.applied.append(AppliedLevels(now, self.levels, cause))
            if self.on_applied is not None:
                self.on_applied(self.applied[-1])
        if any(levels):
            self.watchdog_tripped = False

    def _advance(self, now: float) -> list[Action]:
        """Integrate physics from the last update to `now` and fire due deadlines."""
        actions: list[Action] = []
        dt = max(0.0, now - self._last_update)
        self._last_update = max(self._last_update, now)
        output = sum(self.levels) / (self.zones * self.max_level)
        if dt:
            decay = math.exp(-dt / self.motor_response_s) if self.motor_response_s else 0.0
            for zone, level in enumerate(self.levels):
                target = level / self.max_level
                self._amplitude[zone] = target + (self._amplitude[zone] - target) * decay
            heat = HEATER_C if self.heat_on and self.has_heat else 0.0
            target_c = AMBIENT_CONTACT_C + MOTOR_HEATING_C * output + heat
            self.temperature_c = target_c + (self.temperature_c - target_c) * math.exp(
                -dt / THERMAL_TAU_S
            )
            drain = (BATTERY_DRAIN_PCT_PER_S * output + IDLE_DRAIN_PCT_PER_S) * dt
            self.battery_pct = max(0.0, self.battery_pct - drain)
            if round(self.battery_pct) != self._last_battery_reported:
                self._last_battery_reported = round(self.battery_pct)
                actions.append(BatteryLevel(self._last_battery_reported))
        if self.watchdog_s is not None and any(self.levels):
            expiry = self._last_valid_frame + self._watchdog_period
            if now >= expiry:
                # Recorded at the expiry: a real device zeroes on its own clock even when the
                # simulation only catches up later (e.g. the shared event loop was stalled).
                self.watchdog_tripped = True
                self._apply((0,) * self.zones, expiry, "watchdog")
                actions += self._emit(Fault(FaultCode.WATCHDOG_EXPIRED), now)
        if self.timer_deadline is not None and now >= self.timer_deadline:
            self._apply((0,) * self.zones, self.timer_deadline, "timer")
            self.timer_deadline = None
            actions += self._emit(Fault(FaultCode.TIMER_EXPIRED), now)
        if self.temperature_c > OVER_TEMPERATURE_CUTOFF_C and any(self.levels):
            self._apply((0,) * self.zones, now, "over_temperature")
            actions += self._emit(Fault(FaultCode.OVER_TEMPERATURE, 43), now)
        if self.battery_pct <= 0 and any(self.levels):
            self._apply((0,) * self.zones, now, "battery_empty")
            actions += self._emit(Fault(FaultCode.LOW_BATTERY), now)
        plan = self.plan
        at = plan.disconnect_at_s
        if at is not None and not self._disconnect_fired and now >= at:
            self._disconnect_fired = True
            actions.append(Disconnect(REMOTE_TERMINATED_REASON))
        if plan.reboot_at_s is not None and not self._reboot_fired and now >= plan.reboot_at_s:
            self._reboot_fired = True
            actions += self.reboot(now)
        return actions

    def reboot(self, now: float) -> list[Action]:
        """Power-cycle: output zero, settings forgotten, link dropped."""
        self._apply((0,) * self.zones, now, "reboot")
        self._reset(now)
        return [Disconnect(LINK_LOSS_REASON)]

    def link_lost(self, now: float) -> None:
        """The host reports the link is gone; firmware keeps running (watchdog still applies)."""
        self._advance(now)

    def _emit(self, message: Message, now: float) -> list[Action]:
        self.notified.append((now, message))
        data = encode(message, self._seq)
        self._seq = (self._seq + 1) & 0xFF
        if self.plan.mute_at_s is not None and now >= self.plan.mute_at_s:
            return []
        if self.plan.drop_notify and self._rng.random() < self.plan.drop_notify:
            return []
        if self.plan.garble_notify and self._rng.random() < self.plan.garble_notify:
            index = self._rng.randrange(len(data))
            data = data[:index] + bytes([data[index] ^ 0x5A]) + data[index + 1 :]
        return [Notify(data, self.plan.delay_notify_s)]


def _classify(raw: bytes) -> ErrorCode:
    """Which nack code describes a frame that failed to decode."""
    if len(raw) < 6 or len(raw) > 20 or raw[3] + 6 != len(raw):
        return ErrorCode.BAD_LENGTH
    if crc16(raw[:-2]) != int.from_bytes(raw[-2:], "big"):
        return ErrorCode.BAD_CRC
    if raw[0] != PROTOCOL_VERSION:
        return ErrorCode.BAD_VERSION
    if raw[2] not in FrameType._value2member_map_:
        return ErrorCode.UNKNOWN_TYPE
    return ErrorCode.BAD_LENGTH  # the payload size is wrong for the type (or a field in it)
