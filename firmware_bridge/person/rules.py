"""The next session, decided from the record (S12) and where the person is in the course.

Pure functions of recorded facts: the same history always gives the same plan, and the plan
says why. A step is 2.5 dB of amplitude (x0.75), the perceptual step the governor uses.

- Next morning worse than before the session: the next ceiling drops one step and the
  session is about 20 % shorter. A session stopped for discomfort counts the same way.
- Only two good sessions in a row (next morning no worse than before) raise the ceiling one
  step, never above the cap; the streak then starts again.
- No next-morning check-in: no progression (the ceiling holds, the streak restarts).
- Diabetes or loss of sensation: a low fixed ceiling that never rises.
- At most one session a day by default (two at most); in maintenance, two a week.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

from firmware_bridge.person.facts import SessionFacts
from firmware_bridge.person.screening import LOW_SENSATION_CEILING, ScreeningStatus

STEP = 10 ** (-2.5 / 20)  # one perceptual step of amplitude: 2.5 dB down is x0.7499
SHORTER = 0.8  # after a bad morning the next session is about 20 % shorter
MIN_DURATION_FACTOR = 0.4  # never shorter than this share of the profile: still a session
MIN_CEILING = 0.05  # fraction of device output: below this a session is not felt at all
DEFAULT_CEILING = 0.25  # before calibration: a quarter of the device's output
PER_DAY_DEFAULT, PER_DAY_MAX = 1, 2  # sessions a day: one by default, two at most
COURSE_MIN, COURSE_MAX, COURSE_DEFAULT = 10, 20, 14  # sessions in the daily course
MAINTENANCE_PER_WEEK = 2  # after the course: one or two sessions a week
COUNTS_MIN_S = 60.0  # session seconds: a shorter session does not count toward the course
WORSE_PEAK = 6  # a rating this high during a session counts like a worse morning


@dataclass(frozen=True, slots=True)
class Step:
    """What one recorded session did to the plan, for `massager course`."""

    session: str
    day: dt.date
    ceiling: float  # the ceiling it was played at
    change: int  # -1 down, 0 held, +1 up (for the session after it)
    why: str


@dataclass(frozen=True, slots=True)
class Plan:
    """The next session: allowed or not, its ceiling and length, and why."""

    allowed: bool
    ceiling: float  # fraction of the device output the profile's 1.0 will mean
    duration_factor: float  # share of the profile's length to play (1.0 = all of it)
    phase: str  # "course" or "maintenance"
    done: int  # sessions that count toward the course
    planned: int  # sessions in the course
    days_missed: int  # course days without a session since the first one
    why: str  # one line: the reason for this ceiling (or why no session now)
    steps: tuple[Step, ...] = field(default=())


def counts(session: SessionFacts) -> bool:
    """Whether a session counts toward the course: it ended and lasted a minute or more."""
    return session.stop_reason is not None and (session.duration_s or 0) >= COUNTS_MIN_S


def _verdict(session: SessionFacts) -> tuple[int, str]:
    """-1 worse, +1 good, 0 unknown: what this session says about the dose."""
    # Only the person's own ratings (or remote ones) count: the simulated foot's never do.
    felt = max((n for _, n, source in session.ratings if source != "simulated"), default=0)
    if session.stop_reason == "discomfort" or felt >= WORSE_PEAK:
        return -1, "discomfort during the session"
    if not counts(session):  # stopped early, refused or cut short: no dose to judge by
        return 0, "too short to judge (under a minute, or interrupted): held"
    if session.morning is None:
        return 0, "no next-morning check-in: held"
    if session.before is None:
        return 0, "no rating before the session to compare with: held"
    if session.morning > session.before:
        return -1, f"next morning worse than before ({session.morning} > {session.before})"
    return 1, f"next morning no worse than before ({session.morning} <= {session.before})"


def plan_next(
    sessions: Sequence[SessionFacts],
    *,
    base_ceiling: float,
    cap: int,
    now: dt.datetime,
    screening: ScreeningStatus,
    per_day: int = PER_DAY_DEFAULT,
    planned: int = COURSE_DEFAULT,
) -> Plan:
    """The plan for a session starting at `now`, after `sessions` (any order)."""
    if not 1 <= per_day <= PER_DAY_MAX:
        raise ValueError(f"sessions a day must be 1-{PER_DAY_MAX}, got {per_day}")
    if not COURSE_MIN <= planned <= COURSE_MAX:
        raise ValueError(f"a course is {COURSE_MIN}-{COURSE_MAX} sessions, got {planned}")
    history = sorted(sessions, key=lambda s: s.started_at)
    top = cap / 10
    # Low sensation bounds the calibration (never replaces it with something higher).
    base = min(LOW_SENSATION_CEILING, base_ceiling) if screening.low_sensation else base_ceiling
    base = max(MIN_CEILING, min(base, top))
    level, streak, factor = 0, 0, 1.0
    steps: list[Step] = []
    why = "first session: the calibrated ceiling" if not history else ""
    for session in history:
        ceiling = _ceiling(base, level, top)
        verdict, reason = _verdict(session)
        change = 0
        if verdict < 0:
            level, streak, factor = level - 1, 0, max(MIN_DURATION_FACTOR, factor * SHORTER)
            change = -1
        elif verdict == 0:
            streak = 0
        else:
            streak += 1
            if (
                streak >= 2
                and not screening.low_sensation
                and _ceiling(base, level + 1, top) > ceiling
            ):
                level, streak, factor = level + 1, 0, min(1.0, factor / SHORTER)
                change = +1
                reason += "; two good sessions in a row: one step up"
            elif streak >= 2:
                streak = 0
                reason += "; at the cap" if not screening.low_sensation else "; no progression"
        steps.append(Step(session.id, session.day, ceiling, change, reason))
        why = reason
    done = sum(1 for s in history if counts(s))
    phase = "course" if done < planned else "maintenance"
    ceiling = _ceiling(base, level, top)
    allowed, refusal = _allowed(history, now, screening, per_day, phase)
    return Plan(
        allowed=allowed,
        ceiling=ceiling,
        duration_factor=factor,
        phase=phase,
        done=done,
        planned=planned,
        days_missed=_days_missed(history, now, phase),
        why=refusal or why,
        steps=tuple(steps),
    )


def _ceiling(base: float, level: int, top: float) -> float:
    return max(MIN_CEILING, min(top, base * STEP ** (-level)))


def _allowed(
    history: Sequence[SessionFacts],
    now: dt.datetime,
    screening: ScreeningStatus,
    per_day: int,
    phase: str,
) -> tuple[bool, str]:
    if screening.blocked:
        return False, screening.why
    today = now.astimezone().date()
    # A session refused at start (battery, temperature) played nothing: it does not use the day.
    played = [s for s in history if s.stop_reason is None or (s.duration_s or 0) > 0]
    if sum(1 for s in played if s.day == today) >= per_day:
        return False, f"{per_day} session(s) a day at most: the next one tomorrow"
    if phase == "maintenance":
        week = now - dt.timedelta(days=7)
        recent = sum(1 for s in history if counts(s) and s.started_at > week)
        if recent >= MAINTENANCE_PER_WEEK:
            return False, f"maintenance: {MAINTENANCE_PER_WEEK} sessions a week at most"
    return True, ""


def _days_missed(history: Sequence[SessionFacts], now: dt.datetime, phase: str) -> int:
    """Course days (from the first session to yesterday) with no session."""
    if not history or phase != "course":
        return 0
    first, today = history[0].day, now.astimezone().date()
    played = {s.day for s in history}
    return sum(1 for n in range((today - first).days) if first + dt.timedelta(days=n) not in played)
