"""`massager scan`: what is nearby, massagers first."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from typing import TYPE_CHECKING, Any, TextIO

from firmware_bridge.cli.helptext import INTERRUPTED, epilog

if TYPE_CHECKING:
    from firmware_bridge.discovery import Sighting

SCAN_TIMEOUT_S = 5.0  # s `scan` listens by default; discovery.SCAN_TIMEOUT_S (bleak loads lazily)

EXIT_OK, EXIT_FAULT, EXIT_BAD_INPUT = 0, 1, 2
MAX_SCAN_S = 120.0  # longer than any advertising interval by far; a typo like 500 is refused


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--timeout must be a number, got {text!r}") from None
    if not 0.5 <= value <= MAX_SCAN_S:
        raise argparse.ArgumentTypeError(f"--timeout must be 0.5-{MAX_SCAN_S:g}, got {text}")
    return value


def add_scan_command(commands: Any) -> None:
    scan = commands.add_parser(
        "scan",
        help="look for massagers nearby",
        description="Listen for Bluetooth devices and print address, signal strength and name "
        "of each: massagers speaking this program's protocol first, then devices a device "
        "description matches (`massager devices known`), then the others by name.",
        epilog=epilog(
            [
                "massager scan",
                "massager scan --timeout 15",
                "massager scan --json",
                "massager scan --hci usb:0",
            ],
            [
                ("0", 'scanned (none found is also 0: "no massagers found" on stderr)'),
                (
                    "1",
                    "Bluetooth is not available (off, no adapter, no permission: one line "
                    "says which and what to do), or the --hci transport would not open",
                ),
                ("2", "bad input: a --timeout out of range, or an --hci moniker that is not one"),
                INTERRUPTED,
            ],
        ),
    )
    scan.add_argument(
        "--timeout",
        type=_seconds,
        default=SCAN_TIMEOUT_S,
        help=f"seconds to listen (default {SCAN_TIMEOUT_S:g})",
    )
    scan.add_argument("--json", action="store_true", help="one JSON object per device on stdout")
    scan.add_argument(
        "--hci", metavar="MONIKER", type=hci_moniker, help="bumble HCI transport, e.g. usb:0"
    )
    add_esphome_argument(scan)
    scan.set_defaults(handler=scan_command)


def _error(message: str) -> None:
    print(f"massager: error: {message}", file=sys.stderr)


def hci_moniker(text: str) -> str:
    """argparse type of --hci: a bumble transport moniker's syntax (bad: one line, exit 2)."""
    from firmware_bridge.transport.bumble_backend.central import moniker_problem

    if problem := moniker_problem(text):
        raise argparse.ArgumentTypeError(problem.removeprefix(f"--hci {text}: "))
    return text


def add_esphome_argument(parser: Any) -> None:
    parser.add_argument(
        "--esphome",
        action="append",
        metavar="HOST[:PORT]",
        help="reach massagers through this ESPHome Bluetooth proxy (repeat for more; its key "
        "from MASSAGER_ESPHOME_KEY or esphome_key in config.toml; needs the esphome extra)",
    )
    parser.set_defaults(esphome_key=None)  # config.toml or MASSAGER_ESPHOME_KEY fill it in


def esphome_key(args: argparse.Namespace) -> str | None:
    """The proxies' noise key: config.toml's `esphome_key` or MASSAGER_ESPHOME_KEY."""
    import os

    from firmware_bridge.transport.esphome import KEY_ENV

    return getattr(args, "esphome_key", None) or os.environ.get(KEY_ENV)


def esphome_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with --esphome and its key, checked before anything is opened."""
    if not getattr(args, "esphome", None):
        return None
    if args.hci:
        return "--hci and --esphome: choose one way to reach the massager"
    import os

    from firmware_bridge.transport.esphome import (
        KEY_ENV,
        EsphomeSettingError,
        parse_noise_key,
        parse_proxies,
    )

    try:
        parse_proxies(args.esphome)
        source = KEY_ENV if os.environ.get(KEY_ENV) else "esphome_key in config.toml"
        parse_noise_key(esphome_key(args), source=source)
    except EsphomeSettingError as exc:
        return str(exc)
    return None


def scan_command(args: argparse.Namespace) -> int:
    from firmware_bridge.errors import MassagerError

    problem = esphome_problem(args)
    if problem is not None:
        _error(problem)
        return EXIT_BAD_INPUT
    live = LiveCount(sys.stderr)
    try:
        with live:
            found = asyncio.run(_scan(args, live))
    except MassagerError as exc:  # no Bluetooth, a --hci transport that would not open
        _error(str(exc))
        return EXIT_FAULT
    if not any(s.is_massager for s in found):
        print("no massagers found", file=sys.stderr)
    for sighting in found:
        print(json.dumps(sighting.as_json()) if args.json else sighting.line())
    return EXIT_OK


async def _scan(args: argparse.Namespace, live: LiveCount) -> list[Sighting]:
    from firmware_bridge.discovery import scan

    if args.esphome:
        from firmware_bridge.transport.esphome import open_proxies

        async with open_proxies(args.esphome, esphome_key(args), need_connections=False) as proxies:
            return await scan(
                args.timeout,
                on_count=live.update,
                backend=proxies.scanner,
                **proxies.scanner_kwargs,
            )
    if not args.hci:
        return await scan(args.timeout, on_count=live.update)
    from firmware_bridge.transport.bumble_backend import BumbleBleakScanner, open_central

    async with open_central(args.hci) as central:
        return await scan(
            args.timeout, on_count=live.update, backend=BumbleBleakScanner, central=central
        )


class LiveCount:
    """`scanning… N found`, rewritten in place on a terminal; nothing at all elsewhere."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        try:
            self.enabled = stream.isatty()
        except (AttributeError, ValueError):  # a closed or fake stream
            self.enabled = False

    def __enter__(self) -> LiveCount:
        self.update(0)
        return self

    def __exit__(self, *exc: object) -> None:
        self._write("\r\x1b[K")  # the line is gone: the results start on a clean line

    def update(self, count: int) -> None:
        self._write(f"\rscanning… {count} found\x1b[K")

    def _write(self, text: str) -> None:
        if self.enabled:
            with contextlib.suppress(OSError, ValueError):
                self.stream.write(text)
                self.stream.flush()
