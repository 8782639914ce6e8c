"""The reference firmware's core (`firmware/core.py`) hosted as the simulator's device model.

`ReferenceFirmware` is a `Firmware` to the hosts (tier 1 in memory, tier 2 over bumble) and the
rigs: the same inputs (`receive`, `tick`, `press_button`, `link_lost`, `reboot`), the same
records (`received`, `applied`, `notified`) and the same actions. Every protocol decision is
the core's, the code that is flashed to a board; this adapter only supplies what a board
supplies:

- the physical world, as the core's sensors see it: motor spin-up, the contact surface's
  temperature and the battery's charge follow `Firmware`'s model (the same constants) and are
  fed to the core as readings before each input (`temperature_c` and `battery_pct` can be set
  by a test, as on `Firmware`);
- the transport faults of a `FaultPlan`: notifications dropped, garbled, delayed or muted, a
  disconnect or reboot at a set time (the connect faults and slow writes act in the hosts).

A `FaultPlan` that changes firmware behaviour (`no_watchdog`, `nack_types`) describes another
firmware, not this one: it is refused. Device time is seconds here and milliseconds (floats)
in the core.
"""

from __future__ import annotations

import math
import random

from firmware import core
from firmware_bridge.protocol import (
    Capabilities,
    FaultFlags,
    ProtocolError,
    Status,
    decode,
)
from sim.firmware import (
    AMBIENT_CONTACT_C,
    BATTERY_DRAIN_PCT_PER_S,
    IDLE_DRAIN_PCT_PER_S,
    LINK_LOSS_REASON,
    MOTOR_HEATING_C,
    MOTOR_RESPONSE_S,
    REMOTE_TERMINATED_REASON,
    THERMAL_TAU_S,
    Action,
    AppliedLevels,
    BatteryLevel,
    Disconnect,
    FaultPlan,
    Firmware,
    Notify,
    ReceivedFrame,
)

MS_PER_S = 1000.0


class ReferenceFirmware(Firmware):
    """`firmware.core.Core` behind the simulator's firmware interface (see the module doc)."""

    def __init__(
        self,
        *,
        plan: FaultPlan | None = None,
        battery_pct: float = 100.0,
        motor_response_s: float = MOTOR_RESPONSE_S,
    ) -> None:
        plan = plan or FaultPlan()
        if plan.no_watchdog or plan.nack_types:
            raise ValueError(
                "the reference firmware always has its watchdog and refuses nothing on a plan: "
                "no_watchdog and nack_types describe another firmware (use sim.firmware.Firmware)"
            )
        super().__init__(
            zones=core.ZONES,
            max_level=core.MAX_LEVEL,
            has_heat=False,
            battery_pct=battery_pct,
            plan=plan,
            status_interval_s=core.STATUS_INTERVAL_MS / MS_PER_S,
            motor_response_s=motor_response_s,
        )

    def __post_init__(self) -> None:  # replaces Firmware's: the core holds the device state
        self._rng = random.Random(self.plan.seed)
        self.temperature_c = AMBIENT_CONTACT_C
        self.heat_on = False
        self._amplitude = [0.0] * self.zones
        self._last_update = 0.0
        self._disconnect_fired = False
        self._reboot_fired = False
        self._last_battery_reported = round(self.battery_pct)
        self.core = core.Core(
            0.0,
            zones=self.zones,
            max_level=self.max_level,
            battery_pct=self._battery_reading(),
            temperature_dc=self._temperature_reading(),
        )
        self.core.on_levels = self._on_levels
        self._sync()

    # -- what the hosts and tests read ---------------------------------------------------------

    @property
    def capabilities(self) -> Capabilities:
        message = decode(self.core.capabilities()).message
        if not isinstance(message, Capabilities):
            raise TypeError(f"the core's CAPABILITIES decoded as {message!r}")
        return message

    @property
    def fault_flags(self) -> FaultFlags:
        return FaultFlags(self.core.fault_flags())

    def status(self) -> Status:
        message = decode(self.core.status()).message
        if not isinstance(message, Status):
            raise TypeError(f"the core's STATUS decoded as {message!r}")
        return message

    def next_deadline(self) -> float:
        self.core.watchdog_floor_ms = self.watchdog_floor_s * MS_PER_S
        deadlines = [self.core.next_deadline() / MS_PER_S]
        for at, fired in (
            (self.plan.disconnect_at_s, self._disconnect_fired),
            (self.plan.reboot_at_s, self._reboot_fired),
        ):
            if at is not None and not fired:
                deadlines.append(at)
        return min(deadlines)

    # -- inputs --------------------------------------------------------------------------------

    def receive(self, raw: bytes, now: float, *, with_response: bool | None = None) -> list[Action]:
        actions = self._advance(now)
        data = bytes(raw)
        try:
            frame, error = decode(data), None
        except ProtocolError as exc:
            frame, error = None, str(exc)
        self.received.append(ReceivedFrame(now, data, frame, error, with_response))
        actions += self._send(self.core.receive(data, now * MS_PER_S), now)
        self._sync()
        return actions

    def press_button(self, now: float) -> list[Action]:
        actions = self._advance(now)
        actions += self._send(self.core.press_button(now * MS_PER_S), now)
        self._sync()
        return actions

    def drive(
        self,
        motors: dict[int, int],
        now: float,
        *,
        raw: bytes = b"",
        with_response: bool | None = None,
    ) -> list[Action]:
        raise TypeError("the reference firmware speaks protocol v1 only: it impersonates nothing")

    def tick(self, now: float) -> list[Action]:
        actions = self._advance(now)
        actions += self._send(self.core.tick(now * MS_PER_S), now)
        self._sync()
        return actions

    def link_lost(self, now: float) -> None:
        self._advance(now)
        self.core.link_lost(now * MS_PER_S)
        self._sync()

    def reboot(self, now: float) -> list[Action]:
        self.core.reset(now * MS_PER_S)
        self._sync()
        return [Disconnect(LINK_LOSS_REASON)]

    # -- internals -----------------------------------------------------------------------------

    def _battery_reading(self) -> int:
        return max(0, min(100, round(self.battery_pct)))

    def _temperature_reading(self) -> int:
        return round(self.temperature_c * 10)

    def _advance(self, now: float) -> list[Action]:
        """The world up to `now`, then the core's sensors read it; the plan's timed faults."""
        actions = self._physics(now)
        self.core.watchdog_floor_ms = self.watchdog_floor_s * MS_PER_S
        readings = self.core.sense(
            now * MS_PER_S, self._battery_reading(), self._temperature_reading()
        )
        actions += self._send(readings, now)
        self._sync()
        plan = self.plan
        at = plan.disconnect_at_s
        if at is not None and not self._disconnect_fired and now >= at:
            self._disconnect_fired = True
            actions.append(Disconnect(REMOTE_TERMINATED_REASON))
        if plan.reboot_at_s is not None and not self._reboot_fired and now >= plan.reboot_at_s:
            self._reboot_fired = True
            actions += self.reboot(now)
        return actions

    def _physics(self, now: float) -> list[Action]:
        """Motor amplitude, contact temperature and battery charge (`Firmware`'s model)."""
        dt = max(0.0, now - self._last_update)
        self._last_update = max(self._last_update, now)
        if not dt:
            return []
        output = sum(self.levels) / (self.zones * self.max_level)
        decay = math.exp(-dt / self.motor_response_s) if self.motor_response_s else 0.0
        for zone, level in enumerate(self.levels):
            target = level / self.max_level
            self._amplitude[zone] = target + (self._amplitude[zone] - target) * decay
        target_c = AMBIENT_CONTACT_C + MOTOR_HEATING_C * output
        self.temperature_c = target_c + (self.temperature_c - target_c) * math.exp(
            -dt / THERMAL_TAU_S
        )
        drain = (BATTERY_DRAIN_PCT_PER_S * output + IDLE_DRAIN_PCT_PER_S) * dt
        self.battery_pct = max(0.0, self.battery_pct - drain)
        if round(self.battery_pct) != self._last_battery_reported:
            self._last_battery_reported = round(self.battery_pct)
            return [BatteryLevel(self._last_battery_reported)]
        return []

    def _on_levels(self, t_ms: float, levels: tuple[int, ...], cause: str) -> None:
        """The core changed the motors' levels: record it as `Firmware` does."""
        self.levels = tuple(levels)
        self.applied.append(AppliedLevels(t_ms / MS_PER_S, self.levels, cause))
        if self.on_applied is not None:
            self.on_applied(self.applied[-1])

    def _sync(self) -> None:
        """Mirror the core's state into the attributes `Firmware` exposes."""
        state = self.core
        self.levels = state.levels
        self.watchdog_s = state.watchdog_ms / MS_PER_S
        self.watchdog_tripped = state.watchdog_tripped
        self.latched = state.latched
        deadline = state.timer_deadline_ms
        self.timer_deadline = None if deadline is None else deadline / MS_PER_S
        self.boots = state.boots

    def _send(self, frames: list[bytes], now: float) -> list[Action]:
        """The core's frames as notifications, through the plan's transport faults.

        Each frame is decoded with the controller's codec first: a frame the controller could
        not read is a defect of the core and raises here (ProtocolError), where a test sees it.
        """
        actions: list[Action] = []
        plan = self.plan
        for frame in frames:
            self.notified.append((now, decode(frame).message))
            if plan.mute_at_s is not None and now >= plan.mute_at_s:
                continue
            if plan.drop_notify and self._rng.random() < plan.drop_notify:
                continue
            data = frame
            if plan.garble_notify and self._rng.random() < plan.garble_notify:
                index = self._rng.randrange(len(data))
                data = data[:index] + bytes([data[index] ^ 0x5A]) + data[index + 1 :]
            actions.append(Notify(data, plan.delay_notify_s))
        return actions


__all__ = ["ReferenceFirmware"]
