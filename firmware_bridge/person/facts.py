"""What is known about a person: the recorded facts the rules (S11, S12, the course) read.

Plain frozen dataclasses, no I/O: `firmware_bridge.store` reads and writes them, and
`firmware_bridge.person.rules` decides from them. Times are timezone-aware UTC datetimes;
ratings are 0-10 (0 no discomfort, 10 the worst imaginable).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from firmware_bridge.record import RatingSource  # one definition, re-exported (__all__)

ScreeningSource = Literal["interactive", "file", "none-apply"]


@dataclass(frozen=True, slots=True)
class Screening:
    """One answered contraindication screening."""

    at: dt.datetime
    answers: Mapping[str, bool]  # question key (person.screening.QUESTIONS) -> "yes, applies"
    source: ScreeningSource
    clinician_cleared: bool = False  # a clinician said massage is fine despite a "yes"
    sessions_at: int = 0  # how many sessions the person had done when answering


@dataclass(frozen=True, slots=True)
class Calibration:
    """The fraction of a device's output this person calls "moderate" (their ceiling)."""

    device: str  # the device's key: its Bluetooth address, or "simulator"
    ceiling: float  # 0-1 of the device maximum
    at: dt.datetime


@dataclass(frozen=True, slots=True)
class SessionFacts:
    """One session as the rules see it."""

    id: str
    started_at: dt.datetime
    profile: str
    device: str
    ceiling: float  # the personal ceiling the session played under (fraction of device max)
    cap: int  # the 0-10 cap it ran with
    planned_s: float  # its session limit
    duration_s: float | None = None  # session time played; None if unknown
    stop_reason: str | None = None  # None: the process died mid-session (interrupted)
    before: int | None = None  # how the foot felt before the session
    after: int | None = None  # right after it
    morning: int | None = None  # the next morning (massager checkin)
    peak_rating: int | None = None  # the highest rating during the session
    simulated: bool = False  # the built-in simulated person (`--sim` without --person): a demo,
    # never part of a real person's course (a person on the simulator is not "simulated")
    ratings: tuple[tuple[float, int, RatingSource], ...] = field(default=())  # (t, nrs, source)

    @property
    def day(self) -> dt.date:
        """The local calendar day it started on (the per-day limit counts these)."""
        return self.started_at.astimezone().date()


__all__ = ["Calibration", "RatingSource", "Screening", "ScreeningSource", "SessionFacts"]
