"""`massager report [SESSION]`: a session (or `--course`) as a PNG, CSV or JSON."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

from firmware_bridge.cli.helptext import BAD_INPUT, epilog
from firmware_bridge.cli.person import add_person_argument, person_of, plan_for

EXIT_OK, EXIT_FAULT, EXIT_BAD_INPUT = 0, 1, 2


def add_report_command(commands: Any) -> None:
    report = commands.add_parser(
        "report",
        help="a session or the course as a picture (PNG), CSV or JSON",
        description="Draws a session: commanded intensity per zone and what the device "
        "applied, the cap and ceiling, ratings by who gave them (you, remote, simulated "
        "person), and stops and limits. --course draws the ceiling and the ratings over the "
        "course. PNGs need matplotlib: pip install 'firmware-bridge[report]'.",
        epilog=epilog(
            [
                "massager report",
                "massager report -o evening.png",
                "massager report --course -o course.png",
                "massager report --csv > session.csv",
            ],
            [
                ("0", "written"),
                ("1", "no session recorded yet, or matplotlib is not installed"),
                BAD_INPUT,
            ],
        ),
    )
    report.add_argument("session", nargs="?", help="a session id (default: the last one)")
    add_person_argument(report)
    report.add_argument("--course", action="store_true", help="the whole course instead")
    report.add_argument("-o", "--output", metavar="FILE.png", help="where to write the PNG")
    form = report.add_mutually_exclusive_group()
    form.add_argument("--csv", action="store_true", help="the data as CSV on stdout")
    form.add_argument("--json", action="store_true", help="the data as JSON on stdout")
    report.set_defaults(handler=report_command)


def _error(message: str) -> None:
    print(f"massager: error: {message}", file=sys.stderr)


def report_command(args: argparse.Namespace) -> int:
    from firmware_bridge.store import Store, StoreError

    person = person_of(args)
    try:
        with Store.open() as store:
            store.import_journal(person)  # a session killed mid-way is reported too
            if args.course:
                return _course(args, store, person)
            return _session(args, store, person)
    except StoreError as exc:
        _error(str(exc))
        return EXIT_BAD_INPUT


def _session(args: argparse.Namespace, store: Any, person: str) -> int:
    from firmware_bridge.journal import data_dir
    from firmware_bridge.report import SessionReport, draw_session, read_events, to_csv

    if args.session:
        facts = store.session(args.session)
        if facts is None:
            _error(f"no session {args.session!r} (see `massager history`)")
            return EXIT_BAD_INPUT
    else:
        recorded = store.sessions(person)
        if not recorded:
            _error(f"no sessions of {person} yet")
            return EXIT_FAULT
        facts = recorded[-1]
    journal = store.journal_file(facts.id)
    events = read_events(data_dir() / "sessions" / journal) if journal else []
    report = SessionReport(facts, store.samples(facts.id), events)
    if args.csv:
        sys.stdout.write(to_csv(report.rows()))
        return EXIT_OK
    if args.json:
        print(json.dumps(report.as_json(), default=str))
        return EXIT_OK
    out = Path(args.output or f"massager-{facts.profile}-{facts.started_at:%Y%m%d-%H%M}.png")
    return _draw(lambda: draw_session(report, out), out)


def _course(args: argparse.Namespace, store: Any, person: str) -> int:
    from firmware_bridge.report import draw_course, to_csv

    sessions = store.sessions(person)
    if not sessions:
        _error(f"no sessions of {person} yet")
        return EXIT_FAULT
    device = sessions[-1].device
    plan = plan_for(store, person, device=device, cap=sessions[-1].cap, now=dt.datetime.now(dt.UTC))
    rows = [
        {
            "session": s.id,
            "day": s.day.isoformat(),
            "profile": s.profile,
            "ceiling": step.ceiling,
            "change": step.change,
            "before": s.before,
            "after": s.after,
            "morning": s.morning,
            "why": step.why,
        }
        for s, step in zip(sessions, plan.steps, strict=True)
    ]
    if args.csv:
        sys.stdout.write(to_csv(rows))
        return EXIT_OK
    if args.json:
        print(json.dumps({"person": person, "sessions": rows}, default=str))
        return EXIT_OK
    out = Path(args.output or f"massager-course-{person}.png")
    return _draw(lambda: draw_course(person, plan, sessions, out), out)


def _draw(draw: Any, out: Path) -> int:
    from firmware_bridge.report import ReportUnavailableError

    try:
        draw()
    except ReportUnavailableError as exc:
        _error(str(exc))
        return EXIT_FAULT
    except OSError as exc:
        _error(f"{out}: cannot write: {exc.strerror or exc}")
        return EXIT_BAD_INPUT
    print(f"wrote {out}")
    return EXIT_OK
