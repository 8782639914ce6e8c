"""The session record: events, per-second samples, ratings and the outcome."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Literal

from firmware_bridge.device.events import StopReason

# Who gave a rating: the person (keyboard, API), someone over MQTT, or the simulator's
# virtual foot. Kept with every rating so a simulated rating is never read as a person's.
RatingSource = Literal["person", "remote", "simulated"]

# Stop reasons that end a session as intended (exit code 0); the rest are faults.
DELIBERATE = frozenset(
    {
        StopReason.COMPLETED,
        StopReason.USER_STOP,
        StopReason.REMOTE_STOP,
        StopReason.DEVICE_BUTTON,
        StopReason.TIMEOUT,
        StopReason.DISCOMFORT,
    }
)


@dataclass(frozen=True, slots=True)
class Sample:
    """One per-second snapshot of a running session."""

    elapsed_s: float
    remaining_s: float
    segment: str
    intensity: float  # commanded, fraction of the device maximum (highest zone)
    applied: float  # acknowledged by the device, same unit
    zones: tuple[float, ...]  # commanded per zone
    nrs: int | None  # last 0-10 rating
    battery: int | None
    temperature_c: float | None
    stale: bool = False  # the device's last STATUS is overdue: applied/battery/temperature lag
    paused: bool = False  # the person paused: output held at zero, the session limit runs on
    rssi: int | None = None  # dBm, from the scan that found the device (None: not known)


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happened, at session time `t`."""

    type: str
    t: float
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class SessionRecord:
    """Everything a session did; `summary()` is the `--json` contract."""

    profile: str
    cap: int
    started_at: str = field(
        default_factory=lambda: dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    )
    stop_reason: StopReason | None = None
    duration_s: float = 0.0
    max_intensity: float = 0.0
    stop_latency_s: float | None = None  # real seconds from stop request to device ack
    stop_confirmed: bool | None = None
    events: list[Event] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    ratings: list[tuple[float, int]] = field(default_factory=list)
    rating_sources: list[RatingSource] = field(default_factory=list)  # one per rating, in order

    def add_rating(self, t: float, nrs: int, source: RatingSource) -> None:
        """A 0-10 rating at session time `t`, and who gave it."""
        self.ratings.append((t, nrs))
        self.rating_sources.append(source)

    def rating_source(self, index: int) -> RatingSource:
        """Who gave rating `index` (ratings appended without a source were the person's)."""
        return self.rating_sources[index] if index < len(self.rating_sources) else "person"

    @property
    def ok(self) -> bool:
        return self.stop_reason in DELIBERATE

    def summary(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "started_at": self.started_at,
            "stop_reason": self.stop_reason.value if self.stop_reason else None,
            "duration_s": round(self.duration_s, 3),
            "max_intensity": round(self.max_intensity, 4),
            "cap": self.cap,
            "stop_confirmed": self.stop_confirmed,
            "stop_latency_ms": None
            if self.stop_latency_s is None
            else round(self.stop_latency_s * 1000, 3),
            "ratings": [
                {"t": round(t, 2), "nrs": n, "source": self.rating_source(i)}
                for i, (t, n) in enumerate(self.ratings)
            ],
            "events": [{"type": e.type, "t": round(e.t, 3), **e.detail} for e in self.events],
            "samples": len(self.samples),
        }
