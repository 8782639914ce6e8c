"""Profile models (pydantic v2): what a session plays, in fractions of the personal ceiling.

A profile is a named sequence of segments, optionally grouped into repeated blocks. Levels are
fractions 0-1 of the person's *personal ceiling*, not device levels, so one profile fits every
user and every device. Pure: no I/O (loading lives in `profiles.loader`).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    AllowInfNan,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    field_validator,
    model_validator,
)

ZONES = ("heel", "arch", "forefoot")
HARD_CEILING_S = 1800  # S7: no profile, flag or command can make a session longer than 30 min
MIN_COOL_DOWN_S = 30  # every profile ends gently: at least this long at a light level
COOL_DOWN_MAX_LEVEL = 0.4  # a cool-down segment never goes above this fraction

# Shortest times a profile may ask for. The runner renders levels on a 20 Hz loop (one tick =
# 0.05 s) and a vibration motor needs tens of ms to spin up or down, so anything shorter is never
# felt, and tiny positive values (5e-324) overflow or turn the waveform arithmetic into NaN.
MIN_SEGMENT_S = 0.5  # s: ten ticks; a shorter segment is a blip, not a step of a routine
MIN_PULSE_S = 0.05  # s: one tick; a shorter on or off phase of a pulse or burst falls between ticks
MIN_WAVE_PERIOD_S = 0.5  # s: ten ticks per cycle; a faster swell is felt as a buzz, not a wave
MIN_SWITCH_S = 0.25  # s: five ticks per zone; faster switching blurs into all zones at once
MIN_BURST_EVERY_S = 0.25  # s: five ticks per tap; faster taps run together into a buzz

Zone = Literal["heel", "arch", "forefoot", "all"]


def _zones(*zones: Zone) -> list[Zone]:
    return list(zones)


# Strict: TOML has real numbers and booleans, so `true` or "0.5" is a mistake, not a number to
# coerce; strict floats still take integers (`duration_s = 60`). nan and inf (TOML spells both)
# are refused outright rather than left to the range checks.
Number = Annotated[float, Strict(), AllowInfNan(False)]
Level = Annotated[Number, Field(ge=0, le=1, description="fraction of the personal ceiling")]
Seconds = Annotated[Number, Field(ge=MIN_SEGMENT_S, le=HARD_CEILING_S)]


class _Segment(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    label: str = ""
    duration_s: Seconds
    zones: list[Zone] = Field(default_factory=lambda: _zones("all"), min_length=1)
    cool_down: bool = False

    def peak(self) -> float:
        """The highest level this segment asks for."""
        raise NotImplementedError


class Steady(_Segment):
    """Constant level."""

    kind: Literal["steady"] = "steady"  # files must name it; code need not
    level: Level

    def peak(self) -> float:
        return self.level


class Ramp(_Segment):
    """Linear change from `start` to `end`."""

    kind: Literal["ramp"] = "ramp"  # files must name it; code need not
    start: Level
    end: Level

    def peak(self) -> float:
        return max(self.start, self.end)


class Pulse(_Segment):
    """On/off train: `level` for `on_s`, then zero for `off_s`."""

    kind: Literal["pulse"] = "pulse"  # files must name it; code need not
    level: Level
    on_s: Annotated[Number, Field(ge=MIN_PULSE_S, le=60)]
    off_s: Annotated[Number, Field(ge=0, le=60)]  # 0: no gap, the pulse plays as a steady hold

    @field_validator("off_s")
    @classmethod
    def _gap_is_felt(cls, off_s: float) -> float:
        # A gap shorter than a tick would be dropped on some cycles and not others.
        if 0 < off_s < MIN_PULSE_S:
            raise ValueError(f"must be 0 (continuous) or at least {MIN_PULSE_S} s (got {off_s!r})")
        return off_s

    def peak(self) -> float:
        return self.level


class Wave(_Segment):
    """Periodic swell between `low` and `high`; `travel` offsets the phase across zones."""

    kind: Literal["wave"] = "wave"  # files must name it; code need not
    low: Level = 0.0
    high: Level
    period_s: Annotated[Number, Field(ge=MIN_WAVE_PERIOD_S, le=600)]
    shape: Literal["sine", "triangle"] = "sine"
    travel: Literal["none", "toe_to_heel", "heel_to_toe"] = "none"

    @model_validator(mode="after")
    def _low_below_high(self) -> Wave:
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must not exceed high ({self.high})")
        return self

    def peak(self) -> float:
        return self.high


class Burst(_Segment):
    """Rhythmic taps: `level` for `burst_s` at the start of every `every_s`, else `base`."""

    kind: Literal["burst"] = "burst"  # files must name it; code need not
    level: Level
    base: Level = 0.0
    burst_s: Annotated[Number, Field(ge=MIN_PULSE_S, le=10)]
    every_s: Annotated[Number, Field(ge=MIN_BURST_EVERY_S, le=60)]

    @model_validator(mode="after")
    def _burst_fits(self) -> Burst:
        if self.burst_s > self.every_s:
            raise ValueError(f"burst_s ({self.burst_s}) must not exceed every_s ({self.every_s})")
        return self

    def peak(self) -> float:
        return max(self.level, self.base)


class Alternate(_Segment):
    """One zone at a time, switching every `switch_s`, in the order of `zones`."""

    kind: Literal["alternate"] = "alternate"  # files must name it; code need not
    level: Level
    switch_s: Annotated[Number, Field(ge=MIN_SWITCH_S, le=120)]
    zones: list[Zone] = Field(
        default_factory=lambda: _zones("heel", "arch", "forefoot"), min_length=2
    )

    def peak(self) -> float:
        return self.level


class Rest(_Segment):
    """Nothing: a pause."""

    kind: Literal["rest"] = "rest"  # files must name it; code need not

    def peak(self) -> float:
        return 0.0


Segment = Annotated[
    Steady | Ramp | Pulse | Wave | Burst | Alternate | Rest, Field(discriminator="kind")
]


class Repeat(BaseModel):
    """A block of segments played `times` times."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["repeat"] = "repeat"  # files must name it; code need not
    label: str = ""
    times: Annotated[int, Strict(), Field(ge=1, le=20)]  # strict: no `true`, "2" or 2.5
    segments: list[Segment] = Field(min_length=1)


Item = Annotated[
    Steady | Ramp | Pulse | Wave | Burst | Alternate | Rest | Repeat, Field(discriminator="kind")
]


class Profile(BaseModel):
    """A named routine. `duration_s` is derived; a cool-down at the end is required."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,39}$")]
    title: Annotated[str, Field(min_length=1, max_length=80)]
    description: Annotated[str, Field(max_length=2000)] = ""
    segments: list[Item] = Field(min_length=1)

    def flat(self) -> list[_Segment]:
        """Segments in play order, repeats unrolled."""
        out: list[_Segment] = []
        for item in self.segments:
            if isinstance(item, Repeat):
                out += list(item.segments) * item.times
            else:
                out.append(item)
        return out

    @property
    def duration_s(self) -> float:
        return sum(segment.duration_s for segment in self.flat())

    @property
    def cool_down_s(self) -> float:
        """Length of the trailing run of cool-down segments."""
        total = 0.0
        for segment in reversed(self.flat()):
            if not segment.cool_down:
                break
            total += segment.duration_s
        return total

    @model_validator(mode="after")
    def _safe_shape(self) -> Profile:
        if self.duration_s > HARD_CEILING_S:
            raise ValueError(
                f"total duration {self.duration_s:g} s exceeds the {HARD_CEILING_S} s hard ceiling"
            )
        if self.cool_down_s < MIN_COOL_DOWN_S:
            raise ValueError(
                f"must end with at least {MIN_COOL_DOWN_S} s of segments marked cool_down = true"
            )
        for segment in self.flat():
            if segment.cool_down and segment.peak() > COOL_DOWN_MAX_LEVEL:
                name = segment.label or type(segment).__name__.lower()
                raise ValueError(
                    f"cool-down segment {name!r} peaks at "
                    f"{segment.peak():g}, above {COOL_DOWN_MAX_LEVEL}"
                )
        return self
