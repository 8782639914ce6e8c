"""A 21-day course on the simulator: a virtual person, the store, the S12 rules, real sessions.

Used by the test (`test_course.py`) and by `scripts/course_plot.py` (the plot in docs/).
Each evening the plan is read from the store, the session plays on the simulated massager
(in-memory tier, 1000x) under the plan's ceiling and length, and the next morning the virtual
person checks in, or forgets to.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field
from pathlib import Path

import firmware_bridge
from firmware_bridge.cli.person import plan_for
from firmware_bridge.person import Screening, SessionFacts
from firmware_bridge.person.screening import KEYS
from firmware_bridge.safety import SafetySettings
from firmware_bridge.store import Store

DAYS = 21
PROFILE = "maintenance"
CAP = 4
EVENING = dt.time(19, 0)
MORNING = dt.time(8, 0)
START = dt.date(2026, 11, 2)


@dataclass
class VirtualPerson:
    """Next-morning soreness depends on yesterday's dose; sometimes no check-in."""

    tolerance: float = 0.27  # a ceiling above this leaves the heel worse the next morning
    soreness: int = 3  # how the heel feels before a session, 0-10
    forgets: float = 0.15  # chance of no check-in on a given morning
    rng: random.Random = field(default_factory=lambda: random.Random(7))

    def morning_after(self, ceiling: float, played_s: float) -> int:
        dose = ceiling * min(1.0, played_s / 420)  # a shorter session is a smaller dose
        if dose > self.tolerance:
            self.soreness = min(10, self.soreness + 2)
        else:
            self.soreness = max(1, self.soreness - 1)
            self.tolerance += 0.02  # the tissue gets used to it
        return self.soreness

    def checks_in(self) -> bool:
        return self.rng.random() >= self.forgets


@dataclass(frozen=True)
class Day:
    day: dt.date
    planned_ceiling: float
    duration_factor: float
    max_intensity: float
    before: int
    morning: int | None
    why: str


@dataclass(frozen=True)
class Course:
    played: list[Day]
    skipped: list[tuple[dt.date, str]]  # evenings the plan said no, and why
    sessions: list[SessionFacts]


async def run_course(data: Path, *, days: int = DAYS) -> Course:
    """Play `days` evenings for person "ana"; the store lives in `data`."""
    person, who = "ana", VirtualPerson()
    log: list[Day] = []
    skipped: list[tuple[dt.date, str]] = []
    with Store.open(data / "history.sqlite3") as store:
        store.ensure_person(person)
        when = dt.datetime.combine(START - dt.timedelta(days=1), EVENING, dt.UTC)
        store.add_screening(person, Screening(when, dict.fromkeys(KEYS, False), "none-apply"))
        profile = firmware_bridge.load_profile(PROFILE)
        for n in range(days):
            day = START + dt.timedelta(days=n)
            evening = dt.datetime.combine(day, EVENING, dt.UTC)
            plan = plan_for(store, person, device="simulator", cap=CAP, now=evening)
            if not plan.allowed:  # after the course: twice a week at most
                skipped.append((day, plan.why))
                continue
            limit = profile.duration_s * plan.duration_factor
            settings = SafetySettings(cap=CAP, personal_ceiling=plan.ceiling, max_session_s=limit)
            facts = SessionFacts(
                id=f"day{n + 1:02d}",
                started_at=evening,
                profile=PROFILE,
                device="simulator",
                ceiling=plan.ceiling,
                cap=CAP,
                planned_s=limit,
                before=who.soreness,
            )
            store.begin_session(person, facts, None)
            async with firmware_bridge.simulated(speed=1000, person=False) as massager:
                record = await massager.play(profile, settings=settings)
            store.add_samples(facts.id, record.samples)
            reason = record.stop_reason.value if record.stop_reason else "fault"
            store.finish_session(facts.id, duration_s=record.duration_s, stop_reason=reason)
            sore = who.morning_after(plan.ceiling, record.duration_s)
            morning = None
            if who.checks_in():
                at = dt.datetime.combine(day + dt.timedelta(days=1), MORNING, dt.UTC)
                store.record_checkin(person, sore, at)
                morning = sore
            log.append(
                Day(
                    day,
                    plan.ceiling,
                    plan.duration_factor,
                    record.max_intensity,
                    facts.before or 0,
                    morning,
                    plan.why,
                )
            )
        return Course(log, skipped, store.sessions(person))
