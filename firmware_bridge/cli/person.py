"""`massager setup`, `massager checkin`, `massager course`: the person between sessions."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import textwrap
import tomllib
from typing import TYPE_CHECKING, Any

from firmware_bridge.cli.helptext import BAD_INPUT, bad_input, epilog
from firmware_bridge.person.screening import (
    KEYS,
    LOW_SENSATION_CEILING,
    QUESTIONS,
    ScreeningStatus,
    check_answers,
    status,
)
from profiles.files import InputFileError, read_text_file

if TYPE_CHECKING:  # the store and the rules load when a command runs, not at every TAB
    from firmware_bridge.person import Plan, Screening
    from firmware_bridge.store import Store

EXIT_OK, EXIT_FAULT, EXIT_BAD_INPUT = 0, 1, 2
MAX_ANSWERS_BYTES = 16 * 1024  # nineteen true/false keys; anything bigger is not an answers file
MAX_NAME_CHARS = 64  # a person's name: long enough for anyone, short enough for a line
SIMULATED_PERSON = "simulated-person"  # whose history `--sim` sessions without --person build


def add_person_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--person", metavar="NAME", help="whose history (default: config, else the OS user)"
    )


def add_person_commands(commands: Any) -> None:
    setup = commands.add_parser(
        "setup",
        help="answer the screening questions (asked before the first session)",
        description="The screening questions: conditions under which foot massage is not "
        "for you without a clinician's word. Any 'yes' blocks sessions until a clinician "
        "clearance is recorded; diabetes or loss of sensation in the feet also keeps "
        f"intensity low ({LOW_SENSATION_CEILING:.0%} of the device) and turns progression off. "
        "Asked again every 10 sessions.",
        epilog=epilog(
            [
                "massager setup",
                "massager setup --none-apply",
                "massager setup --answers answers.toml",
                "massager setup --clinician-cleared",
            ],
            [
                ("0", "recorded (sessions may still be blocked: it says so)"),
                bad_input("no terminal, and neither --answers nor --none-apply"),
            ],
            notes="--answers FILE is TOML with one key per question, each true or false\n"
            "(e.g. cancer = false):\n" + "\n".join(f"  {key}: {words}" for key, words in QUESTIONS),
        ),
    )
    add_person_argument(setup)
    given = setup.add_mutually_exclusive_group()
    given.add_argument("--answers", metavar="FILE", help="answers from a TOML file")
    given.add_argument(
        "--none-apply",
        action="store_true",
        help="none of the listed conditions applies to me (recorded with the date)",
    )
    setup.add_argument(
        "--clinician-cleared",
        action="store_true",
        help="a clinician said massage is fine for me despite a 'yes'",
    )
    setup.set_defaults(handler=setup_command)

    checkin = commands.add_parser(
        "checkin",
        help="how the foot feels the morning after a session (0-10)",
        description="Record the next-morning rating for your last session: 0 is no "
        "discomfort, 10 the worst imaginable. Worse than before the session lowers the next "
        "session's ceiling one step and shortens it; without a check-in nothing progresses.",
        epilog=epilog(
            ["massager checkin 2", "massager checkin --person ana 3"],
            [("0", "recorded"), ("1", "no session waits for a check-in"), BAD_INPUT],
        ),
    )
    add_person_argument(checkin)
    checkin.add_argument(
        "rating", type=zero_to_ten("a rating"), nargs="?", help="0-10 (asked if omitted)"
    )
    checkin.set_defaults(handler=checkin_command)

    course = commands.add_parser(
        "course",
        help="where you are in the course, and what the next session will be",
        description="Sessions done of the planned course (daily), days missed, how the "
        "ceiling changed and why, the maintenance phase after it (twice a week at most), and "
        "the next session's ceiling and length.",
        epilog=epilog(["massager course", "massager course --json"], [("0", "shown"), BAD_INPUT]),
    )
    add_person_argument(course)
    course.add_argument("--json", action="store_true", help="one JSON document")
    course.add_argument(
        "--cap", type=zero_to_ten("--cap"), default=4, help="the cap the plan stays under"
    )
    course.set_defaults(handler=course_command)


def zero_to_ten(what: str) -> Any:
    """An argparse type: a whole number 0-10 (ASCII digits only), or one line naming `what`."""

    def parse(text: str) -> int:
        if not text.isascii() or not text.isdigit() or not 0 <= int(text) <= 10:
            raise argparse.ArgumentTypeError(f"{what} is a whole number 0-10, not {text!r}")
        return int(text)

    return parse


def person_of(args: argparse.Namespace) -> str:
    """The person a command is for: --person, else the config's, else the OS user.

    Raises ValueError (one line) for a name that is blank, too long or not printable.
    """
    from firmware_bridge.cli.settings import os_user

    name = str(getattr(args, "person", None) or os_user())
    if not name.strip() or len(name) > MAX_NAME_CHARS or not name.isprintable():
        raise PersonInputError(
            f"--person {name!r}: a name of 1-{MAX_NAME_CHARS} printable characters"
        )
    return name


def _error(message: str) -> None:
    print(f"massager: error: {message}", file=sys.stderr)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _interactive() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()


# -- setup ----------------------------------------------------------------------------------


def setup_command(args: argparse.Namespace) -> int:
    from firmware_bridge.person import Screening
    from firmware_bridge.store import Store, StoreError

    person = person_of(args)
    try:
        with Store.open() as store:
            store.ensure_person(person)
            done = len(store.sessions(person))
            latest = store.latest_screening(person)
            answers = _answers(args, latest)
            if answers is None:
                return EXIT_BAD_INPUT
            screening = Screening(
                at=_now(),
                answers=answers[0],
                source=answers[1],
                clinician_cleared=args.clinician_cleared,
                sessions_at=done,
            )
            store.add_screening(person, screening)
    except (StoreError, InputFileError) as exc:
        _error(str(exc))
        return EXIT_BAD_INPUT
    print(describe(status(screening, done), person))
    return EXIT_OK


def _answers(
    args: argparse.Namespace, latest: Screening | None
) -> tuple[dict[str, bool], Any] | None:
    if args.none_apply:
        return dict.fromkeys(KEYS, False), "none-apply"
    if args.answers:
        text = read_text_file(args.answers, max_bytes=MAX_ANSWERS_BYTES, what="an answers file")
        try:
            data = tomllib.loads(text)
            return check_answers(data, args.answers), "file"
        except (tomllib.TOMLDecodeError, RecursionError) as exc:
            _error(f"{args.answers}: not valid TOML ({str(exc).splitlines()[0]})")
        except ValueError as exc:
            _error(str(exc))
        return None
    if args.clinician_cleared and latest is not None:  # clears the answers already given
        return dict(latest.answers), latest.source
    if not _interactive():  # never wait for input that cannot come (CI, pipes, cron)
        _error(
            "the screening questions need answers: run `massager setup` on a terminal, or "
            "answer from a file (--answers FILE, see `massager setup --help`) or with "
            "--none-apply"
        )
        return None
    return ask_questions(), "interactive"


class PersonInputError(ValueError):
    """What the person typed or named cannot be used: one line, exit 2 (`massager` says it)."""


class NoAnswerError(PersonInputError):
    """The terminal closed (Ctrl-D) before every question was answered: nothing recorded."""


def ask_questions() -> dict[str, bool]:
    """Ask each question on the terminal (stderr: stdout may be a --json file): y or n."""
    say = sys.stderr
    print("Before your first session: does any of these apply to you now? (y/n)", file=say)
    answers: dict[str, bool] = {}
    for key, words in QUESTIONS:
        while True:
            print(f"  {words}? ", end="", file=say, flush=True)
            line = sys.stdin.readline()
            if not line:
                raise NoAnswerError("the questions were not all answered: nothing recorded")
            reply = line.strip().lower()
            if reply in {"y", "yes", "n", "no"}:
                answers[key] = reply.startswith("y")
                break
            print("    please answer y or n", file=say)
    return answers


def describe(screening: ScreeningStatus, person: str) -> str:
    """What a screening means, in one or two kind sentences."""
    if screening.blocked:
        return (
            f"Sessions are paused for {person}: {screening.why}. If a clinician says foot "
            "massage is fine for you, record it with `massager setup --clinician-cleared`."
        )
    line = f"Recorded for {person}: {screening.why}."
    if screening.low_sensation:
        line += (
            f" Intensity stays low ({LOW_SENSATION_CEILING:.0%} of the device) and does not "
            "increase over the course, because reduced feeling in the feet makes discomfort "
            "hard to judge."
        )
    return line


# -- checkin --------------------------------------------------------------------------------


def checkin_command(args: argparse.Namespace) -> int:
    from firmware_bridge.store import Store, StoreError

    person = person_of(args)
    rating = args.rating
    if rating is None:
        if not _interactive():
            _error("give the rating as an argument: massager checkin N (0-10)")
            return EXIT_BAD_INPUT
        rating = _ask_rating("How does your foot feel this morning, 0-10? ")
        if rating is None:
            return EXIT_BAD_INPUT
    try:
        with Store.open() as store:
            session = store.record_checkin(person, rating, _now())
    except StoreError as exc:
        _error(str(exc))
        return EXIT_BAD_INPUT
    if session is None:
        _error(f"no session of {person} waits for a next-morning rating")
        return EXIT_FAULT
    before = "?" if session.before is None else str(session.before)
    print(
        f"Recorded {rating} for {session.profile} of {session.started_at:%Y-%m-%d} "
        f"(before it: {before})."
    )
    return EXIT_OK


def _ask_rating(prompt: str) -> int | None:
    print(prompt, end="", file=sys.stderr, flush=True)
    reply = sys.stdin.readline().strip()
    if reply.isascii() and reply.isdigit() and 0 <= int(reply) <= 10:
        return int(reply)
    _error(f"a rating is a whole number 0-10, not {reply!r}")
    return None


# -- course ---------------------------------------------------------------------------------


def plan_for(store: Store, person: str, *, device: str, cap: int, now: dt.datetime) -> Plan:
    """The person's next session on `device`: screening, calibration and history together."""
    from firmware_bridge.person.rules import DEFAULT_CEILING, plan_next

    sessions = store.sessions(person)
    screening = status(store.latest_screening(person), len(sessions))
    calibration = store.calibration(person, device)
    base = calibration.ceiling if calibration is not None else DEFAULT_CEILING
    return plan_next(sessions, base_ceiling=base, cap=cap, now=now, screening=screening)


def course_command(args: argparse.Namespace) -> int:
    from firmware_bridge.store import Store, StoreError

    person = person_of(args)
    try:
        with Store.open() as store:
            sessions = store.sessions(person)
            devices = [c.device for c in store.calibrations(person)] or ["simulator"]
            plan = plan_for(store, person, device=devices[-1], cap=args.cap, now=_now())
    except StoreError as exc:
        _error(str(exc))
        return EXIT_BAD_INPUT
    if args.json:
        print(json.dumps(_course_json(person, plan, len(sessions)), default=str))
        return EXIT_OK
    print(_course_text(person, plan, len(sessions)))
    return EXIT_OK


def _course_json(person: str, plan: Plan, played: int) -> dict[str, Any]:
    return {
        "person": person,
        "phase": plan.phase,
        "done": plan.done,
        "planned": plan.planned,
        "played": played,
        "days_missed": plan.days_missed,
        "next": {
            "allowed": plan.allowed,
            "ceiling": round(plan.ceiling, 4),
            "duration_factor": round(plan.duration_factor, 3),
            "why": plan.why,
        },
        "steps": [
            {
                "session": s.session,
                "day": s.day.isoformat(),
                "ceiling": round(s.ceiling, 4),
                "change": s.change,
                "why": s.why,
            }
            for s in plan.steps
        ],
    }


def _course_text(person: str, plan: Plan, played: int) -> str:
    if plan.phase == "course":
        where = f"Course: {plan.done} of {plan.planned} sessions done, daily in the evening"
        if plan.days_missed:
            where += f"; {plan.days_missed} day(s) missed"
    else:
        where = f"Maintenance: the course of {plan.planned} is done; one or two sessions a week"
    lines = [f"{person}: {where}."]
    if played > plan.done:
        lines.append(f"({played - plan.done} short or interrupted session(s) not counted.)")
    arrows = {-1: "down", 0: "held", 1: "up"}
    lines.extend(
        f"  {step.day}  ceiling {step.ceiling:4.0%}  then {arrows[step.change]:4}  {step.why}"
        for step in plan.steps[-10:]
    )
    nxt = "Next session" if plan.allowed else "Not now"
    lines.append(
        f"{nxt}: ceiling {plan.ceiling:.0%} of the device, {plan.duration_factor:.0%} of the "
        f"profile's length. {plan.why[:1].upper() + plan.why[1:] if plan.why else ''}".rstrip()
    )
    return "\n".join(textwrap.fill(line, 79, subsequent_indent="    ") for line in lines)
