"""Waveform generators: profile segment + time → level per zone. Pure functions, no I/O."""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from itertools import accumulate

from profiles.model import (
    ZONES,
    Alternate,
    Burst,
    Profile,
    Pulse,
    Ramp,
    Rest,
    Steady,
    Wave,
    Zone,
    _Segment,
)

Levels = tuple[float, ...]  # one fraction 0-1 per zone, in ZONES order
_TOE_TO_HEEL = ("forefoot", "arch", "heel")


def zone_indexes(zones: list[Zone]) -> list[int]:
    """Indexes into ZONES for a zone list ("all" means every zone)."""
    if "all" in zones:
        return list(range(len(ZONES)))
    return sorted({ZONES.index(zone) for zone in zones})


def _on(indexes: list[int], level: float) -> Levels:
    return tuple(level if i in indexes else 0.0 for i in range(len(ZONES)))


def _wave(shape: str, phase: float) -> float:
    """0 at phase 0, 1 at phase 0.5: waves start gently at `low`."""
    frac = phase % 1.0
    if shape == "triangle":
        return 1 - abs(1 - 2 * frac)
    return (1 - math.cos(2 * math.pi * frac)) / 2


def segment_levels(segment: _Segment, t: float) -> Levels:
    """Levels of `segment` at `t` seconds into it (clamped to the segment)."""
    t = min(max(t, 0.0), segment.duration_s)
    indexes = zone_indexes(segment.zones)
    match segment:
        case Steady(level=level):
            return _on(indexes, level)
        case Ramp(start=start, end=end, duration_s=duration):
            return _on(indexes, start + (end - start) * t / duration)
        case Pulse(level=level, on_s=on_s, off_s=off_s):
            return _on(indexes, level if t % (on_s + off_s) < on_s else 0.0)
        case Burst(level=level, base=base, burst_s=burst_s, every_s=every_s):
            return _on(indexes, level if t % every_s < burst_s else base)
        case Alternate(level=level, switch_s=switch_s, zones=zones):
            active = zones[int(t // switch_s) % len(zones)]
            return _on(zone_indexes([active]), level)
        case Wave(low=low, high=high, period_s=period, shape=shape, travel=travel):
            out = [0.0] * len(ZONES)
            order = _TOE_TO_HEEL if travel == "toe_to_heel" else tuple(reversed(_TOE_TO_HEEL))
            for i in indexes:
                lag = 0.0 if travel == "none" else order.index(ZONES[i]) / len(ZONES)
                out[i] = low + (high - low) * _wave(shape, t / period - lag)
            return tuple(out)
        case Rest():
            return (0.0,) * len(ZONES)
    raise TypeError(f"unknown segment {segment!r}")


@dataclass(frozen=True, slots=True)
class Position:
    """Where a session is in its profile at some time."""

    levels: Levels
    index: int  # segment number in play order
    label: str
    segment_start_s: float


class Timeline:
    """A profile laid out in time: `at(t)` gives the levels and segment at `t`."""

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self.segments = profile.flat()
        self._ends = list(accumulate(segment.duration_s for segment in self.segments))
        self.duration_s = self._ends[-1]

    def at(self, t: float) -> Position | None:
        """Position at `t` seconds into the profile; None once it has finished."""
        if t >= self.duration_s:
            return None
        index = bisect.bisect_right(self._ends, max(t, 0.0))
        start = self._ends[index - 1] if index else 0.0
        segment = self.segments[index]
        label = segment.label or type(segment).__name__.lower()
        return Position(segment_levels(segment, t - start), index, label, start)
