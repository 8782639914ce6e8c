# PYTHON_ARGCOMPLETE_OK  (argcomplete's global completion looks for this marker)
"""`massager`: the command line. The composition root: only here is `sim` imported (lazily)."""

from __future__ import annotations

import argparse
import logging
import re
import sys
from collections.abc import Sequence
from typing import NoReturn

from firmware_bridge.cli.calibrate import add_calibrate_command
from firmware_bridge.cli.commands import add_misc_commands
from firmware_bridge.cli.completion import add_completion_command, autocomplete
from firmware_bridge.cli.config import add_config_command
from firmware_bridge.cli.devices_cmd import add_devices_command
from firmware_bridge.cli.doctor import add_doctor_command
from firmware_bridge.cli.fleet_cmd import add_fleet_command
from firmware_bridge.cli.helptext import BAD_INPUT, epilog
from firmware_bridge.cli.monitor import add_monitor_commands
from firmware_bridge.cli.person import PersonInputError, add_person_commands
from firmware_bridge.cli.report import add_report_command
from firmware_bridge.cli.run import add_run_command
from firmware_bridge.cli.scan import add_scan_command
from firmware_bridge.cli.settings import (
    Config,
    ConfigError,
    apply,
    command_parsers,
    configured_commands,
    load,
    readable_secret,
    resolve,
)
from firmware_bridge.cli.sim_cmd import add_sim_command
from firmware_bridge.cli.stop import add_stop_command
from firmware_bridge.cli.version import VersionAction, add_version_command

EXIT_OK = 0
EXIT_FAULT = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Text with line breaks (the epilogs) stays as written; one-line descriptions wrap."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return super()._fill_text(text, width, indent)
        return argparse.HelpFormatter._fill_text(self, text, width, indent)


class _Parser(argparse.ArgumentParser):
    """argparse, but a user mistake is one line and exit code 2, never a usage dump."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]  # argparse's own keywords

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {_unechoed(message)} (see --help)\n")


def _unechoed(message: str) -> str:
    """argparse quotes arguments back; a mistyped `--mqtt-pasword SECRET` (or `--mqtt-=SECRET`,
    which argparse calls ambiguous) must not print the secret, so only flag names are shown:
    `=value` parts and loose words become "…"."""
    message = _FLAG_VALUE.sub(r"\1=…", message)
    head, sep, rest = message.partition("unrecognized arguments: ")
    if not sep:
        return message
    shown = [word if _FLAG.fullmatch(word) else "…" for word in rest.split()]
    return head + sep + " ".join(shown)


_FLAG = re.compile(r"--[a-z][a-z0-9-]*(=…)?")  # a long flag as we spell ours
_FLAG_VALUE = re.compile(r"(--?[A-Za-z][\w-]*)=\S+")

NOTES = """\
Settings: config.toml and MASSAGER_* variables, see `massager config --help`.
TAB completion for bash, zsh and fish: see `massager completion --help`."""


def build_parser() -> argparse.ArgumentParser:
    """The whole command tree, without config applied (help text is the same everywhere)."""
    parser = _Parser(
        prog="massager",
        description="Safe, observable controller for BLE vibrating foot massagers.",
        epilog=epilog(
            [
                "massager run heel-spur --sim",
                "massager profiles list",
                "massager monitor --mqtt mqtt://127.0.0.1:1883",
                "massager doctor",
            ],
            [
                ("0", "done: a session completed or was stopped on purpose"),
                ("1", "a fault: device or broker problem; `stop` not confirmed"),
                BAD_INPUT,
                ("130", "interrupted by Ctrl-C (during a session Ctrl-C is a stop: 0)"),
            ],
            notes=NOTES,
        ),
    )
    parser.add_argument("--version", action=VersionAction)
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv)")
    commands = parser.add_subparsers(
        dest="command", parser_class=_Parser, title="commands", metavar="COMMAND"
    )
    add_run_command(commands)
    add_person_commands(commands)
    add_calibrate_command(commands)
    add_report_command(commands)
    add_scan_command(commands)
    add_devices_command(commands)
    add_fleet_command(commands)
    add_misc_commands(commands)
    add_sim_command(commands)
    add_monitor_commands(commands)
    add_stop_command(commands)
    add_doctor_command(commands)
    add_config_command(commands)
    add_completion_command(commands)
    add_version_command(commands)
    return parser


def _configure(parser: argparse.ArgumentParser) -> Config | ConfigError:
    """Make config.toml and MASSAGER_* values the commands' defaults; a problem is kept for
    the commands that use them (`config path`, `profiles`, ... work with a broken file)."""
    try:
        config = load()
    except ConfigError as exc:
        return exc
    apply(command_parsers(parser), config)
    return config


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `massager` console script and `python -m firmware_bridge`."""
    parser = build_parser()
    autocomplete(parser)  # when the shell asks for completions, answers and exits here
    config = _configure(parser)
    args = parser.parse_args(argv)
    if args.command is None:  # bare `massager`: what can I do?
        parser.print_help()
        return EXIT_OK
    if isinstance(config, ConfigError):
        # The commands a key gives defaults to refuse a bad config; doctor reports it instead.
        if args.command in configured_commands(command_parsers(parser)) - {"doctor"}:
            print(f"massager: error: {config}", file=sys.stderr)
            return EXIT_BAD_INPUT
    elif str(config.path) in resolve(args).values() and readable_secret(config):
        print(
            f"massager: warning: {config.path} holds an MQTT password and other users may "
            "read it; chmod 600 it",
            file=sys.stderr,
        )
    logging.basicConfig(
        level=(logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)],
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if args.verbose < 2:
        logging.getLogger("bumble").setLevel(logging.ERROR)  # benign link chatter at WARNING
    try:
        code: int = args.handler(args)
    except KeyboardInterrupt:  # Ctrl-C outside a session, or again while shutting down
        return EXIT_INTERRUPTED
    except PersonInputError as exc:  # a bad --person name, or Ctrl-D during the questions
        print(f"massager: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return code


__all__ = ["EXIT_BAD_INPUT", "EXIT_FAULT", "EXIT_INTERRUPTED", "EXIT_OK", "build_parser", "main"]
