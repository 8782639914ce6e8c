"""`massager devices ...`: remembered massagers per person, and the device descriptions."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from firmware_bridge.cli.helptext import BAD_INPUT, epilog

EXIT_OK, EXIT_FAULT, EXIT_BAD_INPUT = 0, 1, 2


def add_devices_command(commands: Any) -> None:
    devices = commands.add_parser(
        "devices",
        help="remembered massagers, and the device descriptions",
        description="The massagers a person used, the last used first: `massager run` without "
        "--address tries them first. Subcommands forget them, check a device description file, "
        "and list the descriptions this program knows.",
        epilog=epilog(
            [
                "massager devices",
                "massager devices --person ana --json",
                "massager devices forget AA:BB:CC:DD:EE:FF",
                "massager devices validate my-massager.toml",
            ],
            [("0", "done"), BAD_INPUT],
        ),
    )
    _person(devices, argparse.SUPPRESS)
    devices.add_argument("--json", action="store_true", help="one JSON object per device")
    devices.set_defaults(handler=devices_list, person=None)
    sub = devices.add_subparsers(dest="devices_command", title="subcommands")
    forget = sub.add_parser(
        "forget",
        help="forget a remembered massager (or all of them)",
        description="Forget one remembered massager of a person, or all with --all; the next "
        "`massager run` without --address scans and asks again.",
        epilog=epilog(
            ["massager devices forget AA:BB:CC:DD:EE:FF", "massager devices forget --all"],
            [("0", "forgotten"), ("2", "bad input, or no such remembered device")],
        ),
    )
    which = forget.add_mutually_exclusive_group(required=True)
    which.add_argument("address", nargs="?", help="the address `massager devices` shows")
    which.add_argument("--all", action="store_true", help="forget every remembered massager")
    _person(forget, argparse.SUPPRESS)
    forget.set_defaults(handler=devices_forget)
    validate = sub.add_parser(
        "validate",
        help="check a device description file; exit 2 on any problem",
        description="Check a TOML device description as `run` would read it, without a device.",
        epilog=epilog(
            [
                "massager devices validate my-massager.toml",
                'for f in devices/*.toml; do massager devices validate "$f"; done',
            ],
            [
                ("0", "valid: FILE: ok (id, driver, failsafe)"),
                ("2", "not valid: one line per problem, naming the file and field"),
            ],
        ),
    )
    validate.add_argument("file", help="a TOML device description")
    validate.set_defaults(handler=devices_validate)
    known = sub.add_parser(
        "known",
        help="the device descriptions: shipped and your own",
        description="One line per device description (yours first, then shipped): id, driver, "
        "failsafe and what it matches.",
        epilog=epilog(
            ["massager devices known", "massager devices known --json"], [("0", "listed")]
        ),
    )
    known.add_argument("--json", action="store_true", help="one JSON object per description")
    known.set_defaults(handler=devices_known)


def _person(parser: argparse.ArgumentParser, default: Any) -> None:
    parser.add_argument(
        "--person", metavar="NAME", default=default, help="whose (default: config, else you)"
    )


def _error(message: str) -> None:
    print(f"massager: error: {message}", file=sys.stderr)


def devices_list(args: argparse.Namespace) -> int:
    from firmware_bridge.cli.person import person_of
    from firmware_bridge.store import Store, StoreError

    person = person_of(args)
    try:
        with Store.open() as store:
            found = store.devices(person)
    except StoreError as exc:
        _error(str(exc))
        return EXIT_BAD_INPUT
    if not found and not args.json:
        print(f"{person} has no remembered massagers (`massager run` remembers the one it uses)")
    for device in found:
        used = device.last_used.astimezone().strftime("%Y-%m-%d %H:%M")
        if args.json:
            record = {
                "address": device.address,
                "name": device.name,
                "description": device.description,
                "last_used": device.last_used.isoformat(),
            }
            print(json.dumps(record))
        else:
            what = device.description or "protocol-v1"
            print(f"{device.address}  {device.name or '?':24} {what:16} last used {used}")
    return EXIT_OK


def devices_forget(args: argparse.Namespace) -> int:
    from firmware_bridge.cli.person import person_of
    from firmware_bridge.store import Store, StoreError

    person = person_of(args)
    try:
        with Store.open() as store:
            gone = store.forget_devices(person, None if args.all else args.address)
    except StoreError as exc:
        _error(str(exc))
        return EXIT_BAD_INPUT
    if not args.all and gone == 0:
        _error(f"{person} has no remembered massager {args.address} (see `massager devices`)")
        return EXIT_BAD_INPUT
    print(f"forgot {gone} massager{'s' if gone != 1 else ''} of {person}")
    return EXIT_OK


def devices_validate(args: argparse.Namespace) -> int:
    from firmware_bridge.devices import DescriptionError, load_description_file

    try:
        found = load_description_file(args.file)
    except DescriptionError as exc:
        for line in str(exc).splitlines():
            _error(line)
        return EXIT_BAD_INPUT
    print(f"{args.file}: ok ({found.id}, {found.driver}, failsafe {found.failsafe})")
    return EXIT_OK


def devices_known(args: argparse.Namespace) -> int:
    from firmware_bridge.devices import catalog

    for found in catalog():
        rules = [*(f"name {glob}" for glob in found.match.names)]
        rules += [f"service {uuid}" for uuid in found.match.services]
        if found.match.manufacturer_id is not None:
            rules.append(f"manufacturer 0x{found.match.manufacturer_id:04x}")
        if args.json:
            record = {
                "id": found.id,
                "name": found.name,
                "driver": found.driver,
                "failsafe": found.failsafe,
                "pairing": found.pairing,
                "match": rules,
            }
            print(json.dumps(record))
        else:
            print(f"{found.id:16} {found.driver:12} failsafe {found.failsafe:8} {', '.join(rules)}")
    return EXIT_OK
