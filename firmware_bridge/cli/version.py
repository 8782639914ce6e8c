"""`massager --version` and `massager version`: what is installed, for bug reports."""

from __future__ import annotations

import argparse
import json
import platform
from collections.abc import Sequence
from importlib import metadata
from typing import Any

from firmware_bridge.cli.helptext import epilog

DISTRIBUTION = "firmware-bridge"
# The libraries whose versions change how a session behaves (in the order of the stack).
LIBRARIES = (
    "bleak",
    "bleak-retry-connector",
    "bumble",
    "aiomqtt",
    "amqtt",
    "rich",
    "pydantic",
)
NOT_INSTALLED = "not installed"


def installed(distribution: str) -> str:
    """The installed version of `distribution`, or "not installed"."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return NOT_INSTALLED


class VersionAction(argparse.Action):
    """`--version`: looked up only when asked (parsers are built at every completion TAB)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        kwargs.setdefault("help", "print the version and exit")
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        found = installed(DISTRIBUTION)
        print(f"massager {'unknown (not installed)' if found == NOT_INSTALLED else found}")
        parser.exit()


def versions() -> dict[str, str]:
    """firmware-bridge, Python, the libraries and the platform, in that order."""
    python = f"{platform.python_version()} ({platform.python_implementation()})"
    found = {DISTRIBUTION: installed(DISTRIBUTION), "python": python}
    found |= {name: installed(name) for name in LIBRARIES}
    return found | {"platform": platform.platform()}


def add_version_command(commands: Any) -> None:
    version = commands.add_parser(
        "version",
        help="versions of firmware-bridge, Python, libraries and platform",
        description="Print the versions a bug report needs, one per line: firmware-bridge, "
        "Python, " + ", ".join(LIBRARIES) + " and the platform. `massager --version` prints "
        "only the first.",
        epilog=epilog(
            ["massager version", "massager version --json > versions.json"],
            [("0", "printed")],
        ),
    )
    version.add_argument("--json", action="store_true", help="one JSON object")
    version.set_defaults(handler=version_command)


def version_command(args: argparse.Namespace) -> int:
    found = versions()
    if args.json:
        print(json.dumps(found))
    else:
        for name, value in found.items():
            print(f"{name} {value}")
    return 0


__all__ = ["DISTRIBUTION", "VersionAction", "add_version_command", "installed", "versions"]
