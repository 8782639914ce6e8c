"""The "Examples:" and "Exit codes:" sections every command's `--help` ends with."""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Callable, Iterable

# The meanings shared by every command; a command's own lines say what each means for it.
OK = "0", "done"
FAULT = "1", "a device or broker problem"
BAD_INPUT = "2", "bad input: one line on stderr names the flag, file or field"
INTERRUPTED = "130", "interrupted by Ctrl-C"
WIDTH = 79  # epilogs are printed as written: wrapped here to fit an 80-column terminal


def epilog(
    examples: Iterable[str], exit_codes: Iterable[tuple[str, str]], *, notes: str = ""
) -> str:
    """An epilog for RawDescriptionHelpFormatter: notes (as written), examples, exit codes."""
    lines: list[str] = []
    if notes:
        lines += [notes.strip(), ""]
    # Examples are never wrapped: each stays one line to copy and paste.
    lines += ["Examples:", *(f"  {example}" for example in examples), "", "Exit codes:"]
    for code, meaning in exit_codes:
        lead = f"  {code:<4} "
        lines += textwrap.wrap(meaning, WIDTH, initial_indent=lead, subsequent_indent=" " * 7)
    return "\n".join(lines)


def bad_input(also: str) -> tuple[str, str]:
    """Exit code 2's line with what else it means for one command."""
    return BAD_INPUT[0], f"{BAD_INPUT[1]}; also: {also}"


def group_help(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """A handler for a command group named without a subcommand: its help, exit 0."""

    def handler(args: argparse.Namespace) -> int:
        parser.print_help()
        return 0

    return handler


__all__ = ["BAD_INPUT", "FAULT", "INTERRUPTED", "OK", "bad_input", "epilog", "group_help"]
