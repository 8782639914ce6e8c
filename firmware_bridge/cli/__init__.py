"""`massager`: the command line. The composition root: only here is `sim` imported (lazily)."""

from __future__ import annotations

import argparse
import logging
import re
import sys
from collections.abc import Sequence
from typing import NoReturn

from firmware_bridge.cli.commands import add_misc_commands
from firmware_bridge.cli.monitor import add_monitor_commands
from firmware_bridge.cli.run import add_run_command
from firmware_bridge.cli.stop import add_stop_command

EXIT_OK = 0
EXIT_FAULT = 1
EXIT_BAD_INPUT = 2


class _Parser(argparse.ArgumentParser):
    """argparse, but a user mistake is one line and exit code 2, never a usage dump."""

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


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="massager",
        description="Safe, observable controller for BLE vibrating foot massagers.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv)")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    add_run_command(commands)
    add_misc_commands(commands)
    add_monitor_commands(commands)
    add_stop_command(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `massager` console script and `python -m firmware_bridge`."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=(logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)],
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if args.verbose < 2:
        logging.getLogger("bumble").setLevel(logging.ERROR)  # benign link chatter at WARNING
    try:
        code: int = args.handler(args)
    except KeyboardInterrupt:  # a second Ctrl-C while shutting down
        return 130
    return code


__all__ = ["EXIT_BAD_INPUT", "EXIT_FAULT", "EXIT_OK", "build_parser", "main"]
