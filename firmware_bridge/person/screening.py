"""The contraindication screening (S11): the questions, and what the answers mean.

Asked before a person's first session and again every `RESCREEN_EVERY` sessions. Any "yes"
blocks sessions unless a clinician clearance is recorded; diabetes or loss of sensation in
the feet also sets a low fixed ceiling and turns progression off, cleared or not, because a
person who cannot feel the feet cannot report discomfort reliably.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from firmware_bridge.person.facts import Screening

RESCREEN_EVERY = 10  # sessions: the answers are asked again this often (conditions change)
LOW_SENSATION_CEILING = 0.2  # fraction of device output: gentle whatever the calibration says

# (key, plain words). Keys are what `--answers FILE` uses; never rename one (stored answers).
QUESTIONS: tuple[tuple[str, str], ...] = (
    ("open_wounds", "open or purulent wounds on your feet"),
    ("radiotherapy", "radiotherapy in progress"),
    ("growths", "growths or lumps on your legs"),
    ("poor_circulation", "poor blood supply to your legs"),
    ("tuberculosis", "tuberculosis"),
    ("skin", "skin problems, rashes or a fungal infection on your feet"),
    ("cancer", "cancer"),
    ("diabetes", "diabetes"),
    ("recent_injury", "a recent fracture, sprain or dislocation"),
    ("joint_disorder", "a joint disorder"),
    ("heart_vessels", "heart or blood-vessel disease"),
    ("varicose_veins", "varicose veins"),
    ("thrombosis", "thrombosis, thrombophlebitis or a blood disorder"),
    ("epilepsy", "epilepsy"),
    ("thyroid", "thyroid problems"),
    ("pregnancy", "pregnancy"),
    ("acute_chronic", "a chronic disease in an acute phase (a flare-up)"),
    ("loss_of_sensation", "loss of sensation in your feet"),
    ("implant", "a pacemaker or another implant"),
)
KEYS = tuple(key for key, _ in QUESTIONS)
LOW_SENSATION_KEYS = frozenset({"diabetes", "loss_of_sensation"})


@dataclass(frozen=True, slots=True)
class ScreeningStatus:
    """What the latest screening means for the next session."""

    needed: bool  # ask (again) before the next session
    blocked: bool  # a "yes" without clearance: no sessions
    low_sensation: bool  # diabetes or loss of sensation: low fixed ceiling, no progression
    applies: tuple[str, ...]  # the keys answered "yes"
    why: str  # one line for the person


def status(latest: Screening | None, sessions_done: int) -> ScreeningStatus:
    """What `latest` (None: never screened) means after `sessions_done` sessions."""
    if latest is None:
        return ScreeningStatus(True, True, False, (), "the screening questions were never asked")
    applies = tuple(key for key in KEYS if latest.answers.get(key))
    low = bool(LOW_SENSATION_KEYS.intersection(applies))
    due = sessions_done - latest.sessions_at >= RESCREEN_EVERY
    if applies and not latest.clinician_cleared:
        words = ", ".join(dict(QUESTIONS)[key] for key in applies)
        why = f"you said {words} applies to you: please ask a clinician first"
        return ScreeningStatus(due, True, low, applies, why)
    if due:
        why = f"{RESCREEN_EVERY} sessions since the questions were last asked"
        return ScreeningStatus(True, False, low, applies, why)
    why = "cleared by a clinician" if applies else "none of the listed conditions applies"
    return ScreeningStatus(False, False, low, applies, why)


def check_answers(answers: Mapping[str, object], source: str) -> dict[str, bool]:
    """Every question answered true/false, nothing else; ValueError names the key and file."""
    unknown = sorted(set(answers) - set(KEYS))
    if unknown:
        raise ValueError(f"{source}: unknown question {unknown[0]!r} (known: {', '.join(KEYS)})")
    missing = [key for key in KEYS if key not in answers]
    if missing:
        raise ValueError(f"{source}: {missing[0]}: missing (answer true or false)")
    for key in KEYS:
        if not isinstance(answers[key], bool):
            raise ValueError(  # noqa: TRY004 - a bad file is a ValueError, whatever is wrong
                f"{source}: {key}: must be true or false (got {answers[key]!r})"
            )
    return {key: bool(answers[key]) for key in KEYS}
