"""The person: screening (S11), the next session's plan (S12) and the course, from facts."""

from firmware_bridge.person.facts import Calibration, RatingSource, Screening, SessionFacts
from firmware_bridge.person.rules import Plan, Step, counts, plan_next
from firmware_bridge.person.screening import QUESTIONS, ScreeningStatus, check_answers, status

__all__ = [
    "QUESTIONS",
    "Calibration",
    "Plan",
    "RatingSource",
    "Screening",
    "ScreeningStatus",
    "SessionFacts",
    "Step",
    "check_answers",
    "counts",
    "plan_next",
    "status",
]
