"""What every benchmark hands back: figures, each beside the floor measured in the same run.

A figure is a distribution (n, p50, p90, p99, max in its unit); its floor is what the same
machine, link or broker does with nothing of ours in the way, measured in the same run
(`measured`), or a setting the figure cannot beat by construction (`setting`, one value).
The ratios are figure / floor at p50 and at p99.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

MS_PER_S = 1000.0  # samples are taken in seconds and reported in milliseconds


@dataclass(frozen=True)
class Stats:
    """A distribution in one unit; with n = 1, every percentile is that one sample."""

    n: int
    p50: float
    p90: float
    p99: float
    max: float

    @classmethod
    def of(cls, samples: Sequence[float], scale: float = MS_PER_S) -> Stats:
        """Median, p90, p99 and max of `samples` times `scale` (seconds → ms by default)."""
        if not samples:
            raise ValueError("no samples: the benchmark measured nothing")
        values = sorted(s * scale for s in samples)
        if len(values) == 1:
            return cls(1, values[0], values[0], values[0], values[0])
        pct = statistics.quantiles(values, n=100, method="inclusive")
        return cls(len(values), statistics.median(values), pct[89], pct[98], values[-1])

    @classmethod
    def from_summary(cls, summary: Mapping[str, Any]) -> Stats:
        """From `bench.stats.summary`'s dict (already in ms)."""
        return cls(
            int(summary["n"]),
            float(summary["median_ms"]),
            float(summary["p90_ms"]),
            float(summary["p99_ms"]),
            float(summary["max_ms"]),
        )

    @classmethod
    def setting(cls, value: float) -> Stats:
        """A configured value: no samples, every percentile is the value."""
        return cls(0, value, value, value, value)

    def to_json(self) -> dict[str, float]:
        return {
            "n": self.n,
            "p50": round(self.p50, 4),
            "p90": round(self.p90, 4),
            "p99": round(self.p99, 4),
            "max": round(self.max, 4),
        }


@dataclass(frozen=True)
class Floor:
    """What the figure is compared with."""

    label: str
    stats: Stats
    kind: Literal["measured", "setting"] = "measured"

    def to_json(self) -> dict[str, Any]:
        return {"label": self.label, "kind": self.kind, **self.stats.to_json()}


@dataclass(frozen=True)
class Figure:
    """One measured distribution of one benchmark, for one group (a tier, a device count)."""

    group: str
    label: str
    stats: Stats
    floor: Floor | None
    unit: str = "ms"
    notes: dict[str, Any] = field(default_factory=dict)

    def ratio(self) -> dict[str, float] | None:
        """figure / floor at p50 and p99; None without a floor (or a zero floor)."""
        if self.floor is None or self.floor.stats.p50 <= 0 or self.floor.stats.p99 <= 0:
            return None
        return {
            "p50": round(self.stats.p50 / self.floor.stats.p50, 3),
            "p99": round(self.stats.p99 / self.floor.stats.p99, 3),
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "label": self.label,
            "unit": self.unit,
            **self.stats.to_json(),
            "floor": None if self.floor is None else self.floor.to_json(),
            "ratio": self.ratio(),
            "notes": self.notes,
        }


@dataclass
class Outcome:
    """A benchmark's figures and anything else worth keeping (e.g. the costliest imports)."""

    figures: list[Figure]
    extra: dict[str, Any] = field(default_factory=dict)
