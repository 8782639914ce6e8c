"""What the device's own reports say about whether output may go on (S4, S9).

Pure bookkeeping with time passed in, so it is tested without an event loop: the link feeds it
every STATUS, ACK and malformed frame and acts on the stop reason it returns.
"""

from __future__ import annotations

from dataclasses import dataclass

from firmware_bridge.device.events import StopReason

STATUS_PERIOD_S = 1.0  # protocol v1: a device sends STATUS at least once a second
SILENT_PERIODS = 3  # this many missing STATUS periods and the device counts as lost
MIN_REAL_SILENCE_S = 0.5  # on a sped-up clock, never call a device silent in less real time
# than this: a busy two-core machine stalls the loop for tens of ms (see sim MIN_REAL_WATCHDOG_S)
MIN_REAL_STALE_S = 0.25  # likewise for flagging shown values as stale


@dataclass(frozen=True)
class DeviceLimits:
    """Device conditions that latch a stop (S9)."""

    max_temperature_c: float = 41.0  # contact-surface target; IEC 60601-1 limit is 43 °C
    min_battery_pct: int = 5
    malformed_limit: int = 5  # this many malformed frames ...
    malformed_window_s: float = 10.0  # ... within this window is a fault
    status_period_s: float = STATUS_PERIOD_S
    silent_periods: int = SILENT_PERIODS

    @property
    def silence_s(self) -> float:
        """No STATUS for this long (clock seconds) means the device is lost (S9): the missing
        periods plus half of one, so a device at exactly 1 Hz is not lost after two misses."""
        return self.status_period_s * (self.silent_periods + 0.5)


@dataclass(frozen=True, slots=True)
class Problem:
    """A reason to stop, with what the caller reports about it."""

    reason: StopReason
    detail: dict[str, object]


class DeviceHealth:
    """Tracks the device's reports; each method returns a `Problem` when output must stop."""

    def __init__(self, limits: DeviceLimits | None = None, *, speed: float = 1.0) -> None:
        self.limits = limits or DeviceLimits()
        # Clock seconds: at --speed X the same real-time floor is X times more clock time.
        self.silence_s = max(self.limits.silence_s, MIN_REAL_SILENCE_S * speed)
        self.stale_s = max(2 * self.limits.status_period_s, MIN_REAL_STALE_S * speed)
        self.last_status_at: float | None = None
        self.silent = False  # latched until the next STATUS arrives
        self._malformed_times: list[float] = []

    def expect_status(self, now: float) -> None:
        """A (re)connection: the silence clock starts now."""
        self.last_status_at = now
        self.silent = False

    def forget(self) -> None:
        """The link is gone: silence is the link's business now, not the device's."""
        self.last_status_at = None

    def status_age(self, now: float) -> float | None:
        return None if self.last_status_at is None else now - self.last_status_at

    def stale(self, now: float) -> bool:
        """True when the last STATUS is older than two periods (values shown may be stale)."""
        age = self.status_age(now)
        return self.silent or (age is not None and age > self.stale_s)

    def on_status(
        self,
        levels: tuple[int, ...],
        battery_pct: int,
        temperature_c: float,
        now: float,
        *,
        zones: int | None,
        max_level: int,
    ) -> Problem | None:
        """A STATUS frame: out-of-range levels (once `zones` is known), heat, then battery."""
        self.last_status_at = now
        self.silent = False
        out_of_range = None
        if zones is not None:
            out_of_range = self.check_levels(levels, "status", zones=zones, max_level=max_level)
        return out_of_range or self.unfit(temperature_c, battery_pct)

    def unfit(self, temperature_c: float | None, battery_pct: int | None) -> Problem | None:
        """A device condition that forbids output, from the latest status."""
        if temperature_c is not None and temperature_c > self.limits.max_temperature_c:
            return Problem(StopReason.OVER_TEMPERATURE, {"temperature_c": temperature_c})
        if battery_pct is not None and battery_pct < self.limits.min_battery_pct:
            return Problem(StopReason.LOW_BATTERY, {"battery_pct": battery_pct})
        return None

    @staticmethod
    def check_levels(
        levels: tuple[int, ...], source: str, *, zones: int, max_level: int
    ) -> Problem | None:
        """An ack or status reporting levels this link never allows is a fault (S9)."""
        if len(levels) != zones or any(level > max_level for level in levels):
            return Problem(
                StopReason.FAULT, {"problem": f"out-of-range {source}", "levels": levels}
            )
        return None

    def malformed(self, now: float) -> Problem | None:
        """One more malformed frame; too many within the window is a fault."""
        window = self.limits.malformed_window_s
        self._malformed_times = [t for t in self._malformed_times if now - t < window] + [now]
        if len(self._malformed_times) >= self.limits.malformed_limit:
            return Problem(StopReason.FAULT, {"problem": "repeated malformed frames"})
        return None

    def check_silence(self, now: float) -> Problem | None:
        """No STATUS for `silence_s`: the device is lost even though the link is up (S9)."""
        age = self.status_age(now)
        if age is None or age < self.silence_s or self.silent:
            return None
        self.silent = True
        return Problem(StopReason.DEVICE_SILENT, {"silent_s": round(age, 3)})
