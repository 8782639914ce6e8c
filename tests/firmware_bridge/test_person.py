"""The person's rules (S11 screening, S12 next session, the course), as pure functions."""

from __future__ import annotations

import datetime as dt

import pytest

from firmware_bridge.person import (
    QUESTIONS,
    Plan,
    Screening,
    ScreeningStatus,
    SessionFacts,
    check_answers,
    plan_next,
    status,
)
from firmware_bridge.person.rules import (
    COURSE_DEFAULT,
    MIN_CEILING,
    SHORTER,
    STEP,
)
from firmware_bridge.person.screening import KEYS, LOW_SENSATION_CEILING, RESCREEN_EVERY

DAY0 = dt.datetime(2026, 11, 2, 19, 0, tzinfo=dt.UTC)  # evenings, as the routine suggests
NONE_APPLY = dict.fromkeys(KEYS, False)
CLEAR = Screening(DAY0 - dt.timedelta(days=1), NONE_APPLY, "none-apply")


def _session(
    day: int, *, before: int | None = 2, morning: int | None = 2, **kw: object
) -> SessionFacts:
    fields: dict[str, object] = {
        "id": f"s{day}",
        "started_at": DAY0 + dt.timedelta(days=day),
        "profile": "heel-spur",
        "device": "simulator",
        "ceiling": 0.3,
        "cap": 4,
        "planned_s": 870.0,
        "duration_s": 870.0,
        "stop_reason": "completed",
        "before": before,
        "morning": morning,
    } | kw
    return SessionFacts(**fields)  # type: ignore[arg-type]  # the fields above, typed there


def _plan(
    sessions: list[SessionFacts],
    *,
    cap: int = 4,
    base: float = 0.3,
    now: dt.datetime | None = None,
    screening: ScreeningStatus | None = None,
    per_day: int = 1,
) -> Plan:
    """The plan for the evening after the last session (or `now`)."""
    last = max((s.started_at for s in sessions), default=DAY0 - dt.timedelta(days=1))
    return plan_next(
        sessions,
        base_ceiling=base,
        cap=cap,
        now=now or last + dt.timedelta(days=1),
        screening=screening or status(CLEAR, len(sessions)),
        per_day=per_day,
    )


# -- S11: screening -----------------------------------------------------------------------


@pytest.mark.parametrize("key", KEYS)
def test_each_yes_blocks_until_a_clinician_clears_it(key: str) -> None:
    answers = NONE_APPLY | {key: True}
    blocked = status(Screening(DAY0, answers, "interactive"), 0)
    assert blocked.blocked
    assert blocked.applies == (key,)
    assert dict(QUESTIONS)[key] in blocked.why
    plan = plan_next([], base_ceiling=0.3, cap=4, now=DAY0, screening=blocked)
    assert not plan.allowed
    cleared = status(Screening(DAY0, answers, "interactive", clinician_cleared=True), 0)
    assert not cleared.blocked
    assert plan_next([], base_ceiling=0.3, cap=4, now=DAY0, screening=cleared).allowed


def test_never_screened_blocks_and_none_apply_allows() -> None:
    assert status(None, 0).blocked
    assert status(None, 0).needed
    fine = status(CLEAR, 0)
    assert not fine.blocked
    assert not fine.needed


def test_the_questions_are_asked_again_every_ten_sessions() -> None:
    assert not status(CLEAR, RESCREEN_EVERY - 1).needed
    again = status(CLEAR, RESCREEN_EVERY)
    assert again.needed
    assert not again.blocked


@pytest.mark.parametrize("key", ["diabetes", "loss_of_sensation"])
def test_low_sensation_caps_low_and_never_progresses(key: str) -> None:
    answers = NONE_APPLY | {key: True}
    screening = status(Screening(DAY0, answers, "interactive", clinician_cleared=True), 0)
    assert screening.low_sensation
    good = [_session(d, before=3, morning=1) for d in range(6)]
    plan = _plan(good, base=0.35, screening=screening)
    assert plan.ceiling == pytest.approx(LOW_SENSATION_CEILING)
    assert all(step.change <= 0 for step in plan.steps)


def test_answers_are_checked_key_by_key() -> None:
    assert check_answers(dict(NONE_APPLY), "a.toml") == NONE_APPLY
    with pytest.raises(ValueError, match=r"a.toml: unknown question 'fever'"):
        check_answers(NONE_APPLY | {"fever": False}, "a.toml")
    with pytest.raises(ValueError, match=r"a.toml: cancer: missing"):
        check_answers({k: v for k, v in NONE_APPLY.items() if k != "cancer"}, "a.toml")
    with pytest.raises(ValueError, match=r"a.toml: pregnancy: must be true or false \(got 'no'\)"):
        check_answers(NONE_APPLY | {"pregnancy": "no"}, "a.toml")


# -- S12: the next session -----------------------------------------------------------------


def test_first_session_plays_the_calibrated_ceiling_never_above_the_cap() -> None:
    assert _plan([], base=0.3).ceiling == pytest.approx(0.3)
    assert _plan([], base=0.9, cap=4).ceiling == pytest.approx(0.4)


def test_a_worse_morning_lowers_the_ceiling_one_step_and_shortens_the_session() -> None:
    plan = _plan([_session(0, before=2, morning=4)])
    assert plan.ceiling == pytest.approx(0.3 * STEP)
    assert plan.duration_factor == pytest.approx(SHORTER)
    assert "worse" in plan.why


def test_a_discomfort_stop_counts_as_a_worse_morning() -> None:
    plan = _plan([_session(0, morning=None, stop_reason="discomfort")])
    assert plan.ceiling == pytest.approx(0.3 * STEP)


def test_only_two_good_sessions_in_a_row_raise_one_step() -> None:
    one = _plan([_session(0)], base=0.2)
    assert one.ceiling == pytest.approx(0.2)
    two = _plan([_session(0), _session(1)], base=0.2)
    assert two.ceiling == pytest.approx(0.2 / STEP)
    three = _plan([_session(0), _session(1), _session(2)], base=0.2)
    assert three.ceiling == pytest.approx(0.2 / STEP)  # the streak starts again after a rise
    four = _plan([_session(d) for d in range(4)], base=0.2)
    assert four.ceiling == pytest.approx(0.2 / STEP**2)


def test_a_missing_check_in_holds_and_breaks_the_streak() -> None:
    plan = _plan([_session(0), _session(1, morning=None), _session(2)])
    assert plan.ceiling == pytest.approx(0.3)
    assert [s.change for s in plan.steps] == [0, 0, 0]
    assert "no next-morning check-in" in plan.steps[1].why


def test_progression_never_passes_the_cap() -> None:
    good = [_session(d) for d in range(20)]
    plan = _plan(good, cap=4, base=0.3)
    assert plan.ceiling <= 0.4
    assert plan.ceiling > 0.3


def test_the_ceiling_never_falls_below_a_felt_minimum() -> None:
    bad = [_session(d, before=1, morning=5) for d in range(20)]
    assert _plan(bad).ceiling == pytest.approx(MIN_CEILING)


def test_one_session_a_day_by_default_two_at_most() -> None:
    today = [_session(0)]
    same_day = DAY0 + dt.timedelta(hours=1)
    plan = _plan(today, now=same_day)
    assert not plan.allowed
    assert "a day" in plan.why
    assert _plan(today, now=same_day, per_day=2).allowed
    with pytest.raises(ValueError, match="1-2"):
        _plan(today, per_day=3)


def test_after_the_course_two_sessions_a_week() -> None:
    course = [_session(d) for d in range(COURSE_DEFAULT)]
    plan = _plan(course)
    assert plan.phase == "maintenance"
    assert not plan.allowed
    later = _plan(course, now=DAY0 + dt.timedelta(days=COURSE_DEFAULT + 6))
    assert later.allowed


def test_days_missed_counts_course_days_without_a_session() -> None:
    plan = _plan([_session(0), _session(3)])
    assert plan.days_missed == 2


def test_low_sensation_bounds_a_lower_calibration_never_raises_it() -> None:
    answers = NONE_APPLY | {"diabetes": True}
    screening = status(Screening(DAY0, answers, "file", clinician_cleared=True), 0)
    assert _plan([], base=0.08, screening=screening).ceiling == pytest.approx(0.08)
    assert _plan([], base=0.35, screening=screening).ceiling == pytest.approx(0.2)


def test_a_rating_of_six_during_counts_as_worse_but_a_simulated_one_never() -> None:
    hurt = _plan([_session(0, ratings=((120.0, 6, "person"),))])
    assert hurt.ceiling == pytest.approx(0.3 * STEP)
    remote = _plan([_session(0, ratings=((120.0, 7, "remote"),))])
    assert remote.ceiling == pytest.approx(0.3 * STEP)
    simulated = [_session(d, ratings=((120.0, 9, "simulated"),)) for d in range(2)]
    assert _plan(simulated, base=0.2).ceiling == pytest.approx(0.2 / STEP)  # two good ones


@pytest.mark.parametrize(("played", "reason"), [(5.0, "user_stop"), (None, None)])
def test_a_short_or_interrupted_session_never_progresses(
    played: float | None, reason: str | None
) -> None:
    cut = [_session(d, duration_s=played, stop_reason=reason) for d in range(2)]
    plan = _plan(cut, base=0.2)
    assert plan.ceiling == pytest.approx(0.2)
    assert plan.done == 0
    assert all("too short to judge" in step.why for step in plan.steps)


def test_a_session_refused_at_start_does_not_use_the_day() -> None:
    refused = _session(0, duration_s=0.0, stop_reason="low_battery", morning=None)
    later = DAY0 + dt.timedelta(hours=1)
    assert _plan([refused], now=later).allowed
    interrupted = _session(0, duration_s=None, stop_reason=None, morning=None)
    assert not _plan([interrupted], now=later).allowed  # it may have played: the day is used
