"""The safety governor: the single clamp point every intensity passes through (S1-S3, S6, S7).

Pure arithmetic with time passed in, so it is property-tested without an event loop. Inputs are
profile values (fractions of the personal ceiling), discomfort ratings, stops and the passage of
time; the output is a fraction of the device's maximum per zone, which `to_levels` turns into
device levels just before encoding.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from firmware_bridge.device.events import StopReason
from firmware_bridge.errors import SafetyLimitError

STEP_DB = 2.5  # one perceptual step of vibration amplitude (S2)
STEP_FACTOR = 10 ** (STEP_DB / 20)  # ≈ 1.334 × amplitude per step
RISE_PERIOD_S = 3.0  # S2: at most one step up per this many seconds
RISE_FLOOR = 0.05  # below this the envelope rises linearly (0 → floor in one rise period)
RELEASE_PERIOD_S = 10.0  # the envelope sinks one step per this long when the profile is lower
MAX_RISE_GAP_S = 0.5  # a longer gap between calls (paused process, VM) counts as only this much
DEFAULT_CAP = 4  # S6: "moderate, never severe" on the 0-10 scale
DEFAULT_SESSION_S = 15 * 60  # S7 default session limit
HARD_CEILING_S = 30 * 60  # S7: no profile, flag or command can exceed this


class Decision(StrEnum):
    """What a discomfort rating did."""

    TARGET = "target"  # in the target band; a hold is released
    HOLD = "hold"  # no further increases
    DROP = "drop"  # dropped and increases frozen for the session
    STOP = "stop"


@dataclass(frozen=True)
class DiscomfortBands:
    """S6 thresholds on the 0-10 rating (configurable, always ordered)."""

    hold_at: int = 4  # 4-5: hold
    drop_at: int = 6  # ≥ 6: drop at least `drop_steps` and freeze
    stop_at: int = 7  # ≥ 7: stop
    drop_steps: int = 2

    def __post_init__(self) -> None:
        if not 0 < self.hold_at <= self.drop_at <= self.stop_at <= 10:
            raise ValueError("discomfort bands must satisfy 0 < hold ≤ drop ≤ stop ≤ 10")
        if self.drop_steps < 2:
            raise ValueError("a drop is at least two steps (S6)")


@dataclass(frozen=True)
class SafetySettings:
    """Everything that bounds a session; validated so nothing can exceed the hard limits."""

    cap: int = DEFAULT_CAP  # 0-10; output never exceeds cap/10 of the device maximum
    personal_ceiling: float | None = None  # fraction of device max a profile's 1.0 means
    max_session_s: float = DEFAULT_SESSION_S
    bands: DiscomfortBands = field(default_factory=DiscomfortBands)
    rise_period_s: float = RISE_PERIOD_S

    def __post_init__(self) -> None:
        if not 0 <= self.cap <= 10:
            raise ValueError(f"cap must be 0-10, got {self.cap}")
        if self.personal_ceiling is not None and not 0 <= self.personal_ceiling <= 1:
            raise ValueError(f"personal ceiling must be 0-1, got {self.personal_ceiling}")
        if self.max_session_s <= 0:
            raise ValueError(f"session limit must be positive, got {self.max_session_s}")
        if self.rise_period_s < RISE_PERIOD_S:
            raise ValueError(f"rise period must be at least {RISE_PERIOD_S} s")

    @property
    def cap_fraction(self) -> float:
        return self.cap / 10

    @property
    def ceiling(self) -> float:
        """The personal ceiling, never above the cap."""
        wanted = self.cap_fraction if self.personal_ceiling is None else self.personal_ceiling
        return min(wanted, self.cap_fraction)

    @property
    def session_limit_s(self) -> float:
        return min(self.max_session_s, HARD_CEILING_S)


class SafetyGovernor:
    """S1's single limiter: min(profile × personal ceiling, discomfort ceiling, cap, device max),
    rate-limited upwards, immediate downwards, latched off by any stop."""

    def __init__(self, settings: SafetySettings, *, zones: int, device_max: float = 1.0) -> None:
        if not 0 <= device_max <= 1:
            raise ValueError(f"device max must be a fraction 0-1, got {device_max}")
        self.settings = settings
        self.zones = zones
        self.device_max = device_max
        self.started_at: float | None = None
        self.stop_reason: StopReason | None = None
        self.discomfort_ceiling = 1.0
        self.frozen = False  # S6: after a rating ≥ 6, no increase for the rest of the session
        self.holding = False
        self.last_rating: int | None = None
        self.cap = settings.cap  # may be lowered during a session (S8: never raised remotely)
        self.person_cap = settings.cap  # the lowest the person asked for ("-"): a bound on raises
        self.envelope = 0.0  # S2's rate-limited intensity envelope, fraction of device max
        self.paused = False  # the person paused: output held at zero, the session limit runs on
        self._output: tuple[float, ...] = (0.0,) * zones
        self._output_at = 0.0

    @property
    def output(self) -> tuple[float, ...]:
        return self._output

    @property
    def stopped(self) -> bool:
        return self.stop_reason is not None

    @property
    def ceiling(self) -> float:
        """What output may reach now: min(personal ceiling, discomfort ceiling, device, cap)."""
        return min(self.settings.ceiling, self.discomfort_ceiling, self.device_max, self.cap / 10)

    def start(self, now: float) -> None:
        """A new session: from zero, nothing held or frozen (one governor per session)."""
        if self.started_at is not None:
            raise RuntimeError("a governor runs one session; make a new one")
        self.started_at = now
        self._output_at = now

    def elapsed(self, now: float) -> float:
        return 0.0 if self.started_at is None else now - self.started_at

    def remaining(self, now: float) -> float:
        return max(0.0, self.settings.session_limit_s - self.elapsed(now))

    def stop(self, reason: StopReason) -> None:
        """Latch off; idempotent, the first reason stands."""
        if self.stop_reason is None:
            self.stop_reason = reason
        self._output = (0.0,) * self.zones
        self.envelope = 0.0

    def limit(self, wanted: Sequence[float], now: float) -> tuple[float, ...]:
        """The output for these profile values now, as fractions of the device maximum.

        Output per zone is min(value × personal ceiling, discomfort ceiling, cap, device max,
        envelope). The envelope is what S2 rate-limits: it rises at most one step per
        `rise_period_s` from zero, and sinks at the same rate when the profile goes quiet so
        that force builds up again gradually after a rest. Patterns under the envelope (pulses,
        taps, waves) play as written; any decrease of output is immediate.
        """
        if len(wanted) != self.zones:
            raise SafetyLimitError(f"{len(wanted)} values for a {self.zones}-zone device")
        for value in wanted:
            if not (isinstance(value, int | float) and 0.0 <= value <= 1.0):
                raise SafetyLimitError(f"profile value {value!r} is outside 0-1")
        if self.started_at is None:
            raise SafetyLimitError("session not started")
        if self.stopped:
            return self._output
        if self.elapsed(now) >= self.settings.session_limit_s:  # paused time counts (S7)
            self.stop(StopReason.TIMEOUT)
            return self._output
        if self.paused:
            self._output_at = now  # no rise accrues while paused
            return self._output
        bound = self.ceiling
        targets = [min(value * self.settings.ceiling, bound) for value in wanted]
        self.envelope = self._next_envelope(max(targets), now)
        self._output = tuple(min(target, self.envelope) for target in targets)
        return self._output

    def _next_envelope(self, peak: float, now: float) -> float:
        dt = max(0.0, now - self._output_at)
        self._output_at = now
        steps = min(dt, MAX_RISE_GAP_S) / self.settings.rise_period_s  # no jump after a stall
        envelope = min(self.envelope, self.discomfort_ceiling)
        if peak > envelope:
            if self.frozen or self.holding:
                return envelope
            if envelope < RISE_FLOOR:  # from zero: the first step also takes one rise period
                return min(peak, RISE_FLOOR, envelope + RISE_FLOOR * steps)
            return min(peak, envelope * float(STEP_FACTOR**steps))
        release = dt / RELEASE_PERIOD_S
        return max(peak, envelope / float(STEP_FACTOR**release))

    def pause(self, now: float) -> None:
        """Output to zero at once and held there until `resume`; the session limit runs on."""
        if self.stopped or self.paused:
            return
        self.paused = True
        self._output = (0.0,) * self.zones  # now, not at the next tick: falls are immediate (S2)
        self.envelope = 0.0  # so that resuming rises from zero (S2), never jumps back
        self._output_at = now

    def resume(self, now: float) -> None:
        """Output may rise again: from zero, at S2's rate (pause reset the envelope)."""
        if self.stopped or not self.paused:
            return
        self.paused = False
        self._output_at = now

    def lower_cap(self) -> int:
        """The person's "less, please": this session's cap one lower (never higher), at once."""
        if self.cap > 0:
            self.set_cap(self.cap - 1)  # also lowers output and the envelope now (S2)
        self.person_cap = min(self.person_cap, self.cap)  # nothing remote undoes it
        return self.cap

    def set_cap(self, cap: int, *, allow_raise: bool = False) -> str | None:
        """Change the cap mid-session: lower always; raise only if allowed, never above the
        cap the session started with. None when applied, else why not."""
        if isinstance(cap, bool) or not isinstance(cap, int) or not 0 <= cap <= 10:
            return f"cap must be a whole number 0-10, got {cap!r}"
        if cap > self.cap and not allow_raise:
            return "raising the cap remotely is not enabled"
        if cap > self.settings.cap:
            return f"cap {cap} is above the session's cap {self.settings.cap}"
        if cap > self.person_cap:
            return f"the person lowered the cap to {self.person_cap}; only they can raise it"
        self.cap = cap
        self._output = tuple(min(v, cap / 10) for v in self._output)  # lowering is immediate
        self.envelope = min(self.envelope, cap / 10)
        return None

    def report_discomfort(self, rating: int, now: float, *, may_release: bool = True) -> Decision:
        """S6: apply a 0-10 rating. Raises ValueError for anything else.

        `may_release=False` (remote ratings without remote control, S8): a low rating does not
        release a hold, since that would let output rise again.
        """
        if isinstance(rating, bool) or not isinstance(rating, int) or not 0 <= rating <= 10:
            raise ValueError(f"a rating is a whole number 0-10, got {rating!r}")
        self.last_rating = rating
        bands = self.settings.bands
        peak = max(self._output, default=0.0)
        if rating >= bands.stop_at:
            self.stop(StopReason.DISCOMFORT)
            return Decision.STOP
        if rating >= bands.drop_at:
            dropped = max(peak, self.envelope) / STEP_FACTOR**bands.drop_steps
            self.discomfort_ceiling = min(self.discomfort_ceiling, dropped)
            self.envelope = min(self.envelope, dropped)
            self.frozen = True
            self._output = tuple(min(v, dropped) for v in self._output)  # decreases are immediate
            return Decision.DROP
        # The cap is a discomfort level too: a rating above it holds, even below the hold band
        # (cap 2 and a rating of 3: no further increases), so it is enforced by what the
        # person feels as well as by output.
        if rating >= min(bands.hold_at, self.cap + 1):
            held = max(peak, self.envelope, RISE_FLOOR)
            self.discomfort_ceiling = min(self.discomfort_ceiling, held)
            self.holding = True
            return Decision.HOLD
        if not self.frozen and may_release:
            self.holding = False
            self.discomfort_ceiling = 1.0
        return Decision.TARGET


def to_levels(fractions: Sequence[float], max_level: int) -> tuple[int, ...]:
    """Fractions of the device maximum → device levels, rounding down (never above the limit)."""
    levels = []
    for fraction in fractions:
        if not (isinstance(fraction, int | float) and math.isfinite(fraction)):
            raise SafetyLimitError(f"intensity {fraction!r} is not a number")
        if not 0.0 <= fraction <= 1.0:
            raise SafetyLimitError(f"intensity {fraction!r} is outside 0-1 of the device maximum")
        levels.append(math.floor(fraction * max_level + 1e-9))
    return tuple(levels)
