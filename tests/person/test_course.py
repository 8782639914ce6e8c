"""Done-when of the person's course: 21 days on the simulator follow S12 exactly."""

from __future__ import annotations

from pathlib import Path

import pytest

from firmware_bridge.person.rules import COURSE_DEFAULT, MIN_CEILING, STEP
from tests.person.course21 import CAP, DAYS, run_course

pytestmark = pytest.mark.sim_only


@pytest.mark.timeout(240)
async def test_21_days_follow_the_next_session_rules(tmp_path: Path) -> None:
    course = await run_course(tmp_path)
    days = course.played
    assert len(days) == len(course.sessions) == DAYS - len(course.skipped)
    assert len(days) >= COURSE_DEFAULT, "the whole course was played"
    assert course.skipped, "after the course, maintenance allows two sessions a week"
    assert all("maintenance" in why for _, why in course.skipped)
    ceilings = [d.planned_ceiling for d in days]
    fell = rose = held_missing = 0
    for i in range(len(days) - 1):
        now, nxt, day = ceilings[i], ceilings[i + 1], days[i]
        assert nxt <= CAP / 10 + 1e-9, "never above the cap"
        if day.morning is None:
            assert nxt == pytest.approx(now), f"day {i + 1}: no check-in must hold"
            held_missing += 1
        elif day.morning > day.before:
            assert nxt == pytest.approx(max(MIN_CEILING, now * STEP)), f"day {i + 1}: must fall"
            assert days[i + 1].duration_factor < day.duration_factor
            fell += 1
        elif nxt > now:
            previous = days[i - 1] if i else None
            assert previous is not None, "a rise needs two good sessions"
            assert previous.morning is not None
            assert previous.morning <= previous.before, f"day {i + 1}: rose after one good one"
            assert nxt == pytest.approx(min(CAP / 10, now / STEP))
            rose += 1
        else:
            assert nxt == pytest.approx(now)
    # The scenario exercises every rule, or the checks above prove little.
    assert fell >= 1
    assert rose >= 1
    assert held_missing >= 1
    for day in days:  # the governor played each session under its planned ceiling
        assert 0 < day.max_intensity <= day.planned_ceiling + 1 / 255
