"""`massager profiles ...`, `massager history`."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from typing import Any

from firmware_bridge.cli.helptext import BAD_INPUT, epilog, group_help
from profiles.loader import ProfileError, library_names, load_builtin, load_file

EXIT_OK, EXIT_FAULT, EXIT_BAD_INPUT = 0, 1, 2


def add_misc_commands(commands: Any) -> None:
    profiles = commands.add_parser(
        "profiles",
        help="list, show or validate profiles",
        description="The built-in profile library, and checks for your own TOML profiles.",
        epilog=epilog(
            [
                "massager profiles list",
                "massager profiles show heel-spur",
                "massager profiles validate my-profile.toml",
            ],
            [("0", "done (profiles with no subcommand prints this help)"), BAD_INPUT],
        ),
    )
    profiles.set_defaults(handler=group_help(profiles))
    sub = profiles.add_subparsers(dest="profiles_command", title="subcommands")
    listing = sub.add_parser(
        "list",
        help="the built-in profiles",
        description="One line per built-in profile: name, length and title.",
        epilog=epilog(
            ["massager profiles list", "massager profiles list | grep -i heel"],
            [("0", "listed")],
        ),
    )
    listing.set_defaults(handler=profiles_list)
    show = sub.add_parser(
        "show",
        help="one profile's segments",
        description="A profile's title, description and segments (start, kind, length, peak "
        "level, zones).",
        epilog=epilog(
            ["massager profiles show heel-spur", "massager profiles show ./my-profile.toml"],
            [
                ("0", "shown"),
                (
                    "2",
                    "no such built-in profile, or a file with problems: one "
                    "line per problem, naming the file and field",
                ),
            ],
        ),
    )
    show.add_argument("name", help="built-in name (see `profiles list`) or a TOML file")
    show.set_defaults(handler=profiles_show)
    validate = sub.add_parser(
        "validate",
        help="check a profile file; exit 2 on any problem",
        description="Check a TOML profile file as `run` would, without a device.",
        epilog=epilog(
            [
                "massager profiles validate my-profile.toml",
                'for f in *.toml; do massager profiles validate "$f"; done',
            ],
            [
                ("0", "the file is a valid profile"),
                ("2", "it is not: one line per problem, naming the file and field"),
            ],
        ),
    )
    validate.add_argument("file", help="a TOML profile file")
    validate.set_defaults(handler=profiles_validate)

    past = commands.add_parser(
        "history",
        help="your past sessions, with their ratings",
        description="One line per session of a person (--person, default: the config's, "
        "else your login name): start, profile, length, how it ended, the ceiling, and the "
        "ratings before, during (the highest), after and the next morning. A session cut "
        "short by a crash is there with what it wrote. --journal lists the journal files "
        "themselves, every person's (MASSAGER_DATA_DIR reads another data directory).",
        epilog=epilog(
            [
                "massager history",
                "massager history --person ana --last 5",
                "massager history --json",
                "massager history --journal",
            ],
            [("0", "listed (an unreadable journal is a line saying so, not an error)"), BAD_INPUT],
        ),
    )
    past.add_argument("--person", metavar="NAME", help="whose sessions (default: config, else you)")
    past.add_argument("--json", action="store_true", help="one JSON object per session")
    past.add_argument("--last", type=_positive, default=20, help="how many (default 20)")
    past.add_argument("--journal", action="store_true", help="the journal files, every person's")
    past.set_defaults(handler=history_command)


def profiles_list(args: argparse.Namespace) -> int:
    for name in library_names():
        profile = load_builtin(name)
        print(f"{name:14} {profile.duration_s / 60:5.1f} min  {profile.title}")
    return EXIT_OK


def profiles_show(args: argparse.Namespace) -> int:
    try:
        profile = load_builtin(args.name) if args.name in library_names() else load_file(args.name)
    except ProfileError as exc:
        _problems(exc)
        return EXIT_BAD_INPUT
    print(
        f"{profile.name}: {profile.title} ({profile.duration_s / 60:.1f} min, "
        f"cool-down {profile.cool_down_s:g} s)"
    )
    if profile.description:
        print(profile.description.strip())
    start = 0.0
    for segment in profile.flat():
        label = segment.label or type(segment).__name__.lower()
        zones = ",".join(segment.zones)
        print(
            f"  {start / 60:5.1f} min  {type(segment).__name__.lower():9} "
            f"{segment.duration_s:5.0f} s  peak {segment.peak():.2f}  {zones:22} {label}"
        )
        start += segment.duration_s
    return EXIT_OK


def profiles_validate(args: argparse.Namespace) -> int:
    try:
        profile = load_file(args.file)
    except ProfileError as exc:
        _problems(exc)
        return EXIT_BAD_INPUT
    print(f"{args.file}: ok ({profile.name}, {profile.duration_s / 60:.1f} min)")
    return EXIT_OK


def _problems(exc: ProfileError) -> None:
    for line in str(exc).splitlines():
        print(f"massager: error: {line}", file=sys.stderr)


def _positive(text: str) -> int:
    if not text.isascii() or not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1, got {text!r}")
    return int(text)


def history_command(args: argparse.Namespace) -> int:
    if getattr(args, "journal", False):
        return journal_history(args)
    from firmware_bridge.cli.person import person_of
    from firmware_bridge.store import Store, StoreError

    person = person_of(args)
    try:
        with Store.open() as store:
            store.import_journal(person)  # sessions a crash cut short, from the journal
            sessions = store.sessions(person, limit=args.last)
    except StoreError as exc:
        print(f"massager: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.json:
        for s in sessions:
            print(json.dumps(asdict(s) | {"person": person}, default=str))
        return EXIT_OK
    if not sessions:
        print(f"no sessions of {person} yet (see `massager history --journal`)", file=sys.stderr)
    for s in sessions:
        minutes = "    ?" if s.duration_s is None else f"{s.duration_s / 60:5.1f}"
        during = max((n for _, n, _ in s.ratings), default=None)
        said = [
            f"{what} {n}"
            for what, n in (
                ("before", s.before),
                ("highest", during),
                ("after", s.after),
                ("next morning", s.morning),
            )
            if n is not None
        ]
        print(
            f"{s.started_at:%Y-%m-%d %H:%M}  {s.profile:12} {minutes} min  "
            f"{s.stop_reason or 'interrupted':12} ceiling {s.ceiling:4.0%}"
        )
        print(f"    ratings: {', '.join(said)}" if said else "    no ratings")
    return EXIT_OK


def journal_history(args: argparse.Namespace) -> int:
    from firmware_bridge.journal import data_dir, history

    sessions = history()[-max(1, args.last) :]
    if args.json:
        for entry in sessions:
            print(json.dumps(entry, default=str))
        return EXIT_OK
    if not sessions:
        print(f"no sessions yet (journal: {data_dir() / 'sessions'})", file=sys.stderr)
    for entry in sessions:
        # Entries are whatever the files said: format defensively, one row each, never a traceback.
        name = str(entry.get("file", "?"))
        if "error" in entry:
            print(f"{name[:25]:25} could not be read: {entry['error']}")
            continue
        started, profile = entry.get("started_at") or name[:16], entry.get("profile", "?")
        duration, peak = entry.get("duration_s"), entry.get("max_intensity")
        minutes = f"{duration / 60:5.1f}" if isinstance(duration, int | float) else "    ?"
        percent = f"{peak:.0%}" if isinstance(peak, int | float) else "?"
        if entry.get("stop_reason"):
            outcome = str(entry["stop_reason"])
        else:  # no stop reason: interrupted, unless the summary was written
            outcome = "ended" if entry.get("closed") else "interrupted"
        notes = ""
        if entry.get("journal") == "degraded":
            notes += f"  (journal: {entry.get('journal_lines_lost', '?')} lines lost)"
        if isinstance(skipped := entry.get("skipped_lines"), int) and skipped:
            notes += f"  ({skipped} unreadable lines)"
        if entry.get("truncated"):
            notes += "  (journal too large: read in part)"
        print(f"{started!s:25} {profile!s:12} {minutes} min  {outcome:17} peak {percent}{notes}")
    return EXIT_OK
