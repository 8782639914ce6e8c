"""`massager fleet FILE`: many independent sessions in one process, from a TOML file.

profile = "relax"          # defaults for every device
cap = 4
sim = true                 # simulated massagers (no address); speed applies to them
[[device]]
id = "room-1"
profile = "heel-spur"      # each device may override profile, cap, max_minutes, sim
start_s = 0                # seconds after the fleet starts
[[device]]
id = "room-2"
sim = false
address = "AA:BB:CC:DD:EE:FF"
person = "alice"           # a real massager plays a screened person's session
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from firmware_bridge.cli.helptext import epilog
from firmware_bridge.safety import DEFAULT_CAP, DEFAULT_SESSION_S, HARD_CEILING_S

EXIT_OK, EXIT_FAULT, EXIT_BAD_INPUT = 0, 1, 2
MAX_FLEET = 1000  # devices in one file: the benchmarked scale of one process
MAX_FLEET_BYTES = 512 * 1024  # 1,000 devices of a few lines each fit easily
MAX_START_S = 24 * 3600.0  # a start later than a day is a mistake


class DeviceEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    profile: str | None = Field(None, max_length=256)
    cap: int | None = Field(None, ge=0, le=10)
    max_minutes: float | None = Field(None, gt=0, le=HARD_CEILING_S / 60)
    start_s: float = Field(0.0, ge=0, le=MAX_START_S)
    sim: bool | None = None
    address: str | None = Field(None, max_length=64)
    person: str | None = Field(None, max_length=64)


class FleetFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    profile: str | None = Field(None, max_length=256)
    cap: int = Field(DEFAULT_CAP, ge=0, le=10)
    max_minutes: float = Field(DEFAULT_SESSION_S / 60, gt=0, le=HARD_CEILING_S / 60)
    sim: bool = False
    tier: Literal["memory", "bumble"] = "memory"
    device: list[DeviceEntry] = Field(min_length=1, max_length=MAX_FLEET)

    @field_validator("device")
    @classmethod
    def _unique(cls, devices: list[DeviceEntry]) -> list[DeviceEntry]:
        seen: set[str] = set()
        for device in devices:
            if device.id in seen:
                raise ValueError(f"id {device.id!r} is given twice")
            seen.add(device.id)
        return devices


class FleetFileError(ValueError):
    """One line per problem, each naming the file and the field."""


def load_fleet(path: str) -> FleetFile:
    from profiles.files import InputFileError, parse_toml, read_text_file

    try:
        data = parse_toml(read_text_file(path, max_bytes=MAX_FLEET_BYTES, what="a fleet file"))
    except InputFileError as exc:
        raise FleetFileError(str(exc)) from exc
    except ValueError as exc:
        raise FleetFileError(f"{path}: {exc}") from exc
    try:
        fleet = FleetFile.model_validate(data)
    except ValidationError as exc:
        lines = [
            f"{path}: {'.'.join(str(p) for p in e['loc']) or 'file'}: {e['msg']}"
            for e in exc.errors()[:10]
        ]
        raise FleetFileError("\n".join(lines)) from None
    problems = _problems(fleet, path)
    if problems:
        raise FleetFileError("\n".join(problems[:10]))
    return fleet


def _problems(fleet: FleetFile, path: str) -> list[str]:
    """What the schema cannot say: each device complete, nobody and nothing twice."""
    problems = []
    people: dict[str, str] = {}
    addresses: dict[str, str] = {}
    for n, device in enumerate(fleet.device):
        where = f"{path}: device.{n} ({device.id})"
        if device.person is not None:
            if device.person in people:  # one session a day (S12), and both feet share a stop
                problems.append(
                    f"{where}: {device.person} already plays on {people[device.person]}; one "
                    "person's massagers play together with `massager run --address A "
                    "--address B`"
                )
            people.setdefault(device.person, device.id)
        if device.address is not None:
            key = device.address.upper()
            if key in addresses:  # two controllers for one massager: neither's stop holds
                problems.append(f"{where}: address {device.address} is {addresses[key]}'s too")
            addresses.setdefault(key, device.id)
        sim = fleet.sim if device.sim is None else device.sim
        if not (device.profile or fleet.profile):
            problems.append(f"{where}: no profile (set one for the device or the whole file)")
        if sim and device.address:
            problems.append(f"{where}: a simulated device has no address (sim = false?)")
        if not sim and not device.address:
            problems.append(f"{where}: a real massager needs its address")
        if not sim and not device.person:
            problems.append(f"{where}: a real massager needs the person whose session it is")
    return problems


def add_fleet_command(commands: Any) -> None:
    from firmware_bridge.cli.telemetry_setup import add_telemetry_arguments

    fleet = commands.add_parser(
        "fleet",
        help="run many independent sessions from a TOML file (a practice, a study)",
        description="Run one session per device listed in FILE, all in this process. Each has "
        "its own safety state, journal and MQTT topics; one device's fault ends only its own "
        "session. Ctrl-C stops them all; `massager stop --all` does so remotely.",
        epilog=epilog(
            [
                "massager fleet rooms.toml",
                "massager fleet rooms.toml --mqtt mqtt://127.0.0.1:1883 --json",
                "massager fleet demo.toml --speed 20",
            ],
            [
                ("0", "every session completed or was stopped on purpose"),
                ("1", "at least one device faulted, lost its link or never connected"),
                ("2", "bad input: the file, a field or a flag (one line each)"),
            ],
            notes="File format: see docs/fleet.md. Real massagers need `address` and "
            "`person`\n(screened with `massager setup`); simulated ones need neither.",
        ),
    )
    fleet.add_argument("file", help="the fleet's TOML file")
    fleet.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    fleet.add_argument(
        "--speed", type=float, default=1.0, help="simulated devices: clock X times faster"
    )
    fleet.add_argument("--scan-timeout", type=float, default=10.0, help=argparse.SUPPRESS)
    add_telemetry_arguments(fleet)
    fleet.set_defaults(handler=fleet_command, cap=DEFAULT_CAP)


def fleet_command(args: argparse.Namespace) -> int:
    from firmware_bridge.cli.display import NOTICE
    from firmware_bridge.cli.telemetry_setup import broker_settings

    try:
        spec = load_fleet(args.file)
    except FleetFileError as exc:
        for line in str(exc).splitlines():
            print(f"massager: error: {line}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if not 0.1 <= args.speed <= 1000:
        print(f"massager: error: --speed must be 0.1-1000, got {args.speed:g}", file=sys.stderr)
        return EXIT_BAD_INPUT
    everything_sim = all(spec.sim if d.sim is None else d.sim for d in spec.device)
    if args.speed != 1.0 and not everything_sim:
        print("massager: error: --speed needs every device simulated", file=sys.stderr)
        return EXIT_BAD_INPUT
    args.sim = any(spec.sim if d.sim is None else d.sim for d in spec.device)
    try:
        broker = broker_settings(args)
        entries = _entries(spec)
    except ValueError as exc:
        for line in str(exc).splitlines():
            print(f"massager: error: {line}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(NOTICE, file=sys.stderr)
    from firmware_bridge.cli.fleet_run import run_fleet

    return asyncio.run(run_fleet(args, spec, entries, broker))


def _entries(spec: FleetFile) -> list[Any]:
    from firmware_bridge.fleet import FleetEntry
    from firmware_bridge.safety import SafetySettings
    from profiles.loader import ProfileError, resolve

    entries = []
    profiles: dict[str, Any] = {}
    for n, device in enumerate(spec.device):
        name = device.profile or spec.profile or ""
        if name not in profiles:
            try:
                profiles[name] = resolve(name)
            except ProfileError as exc:
                raise ValueError(f"device.{n} ({device.id}): {exc}") from exc
        sim = spec.sim if device.sim is None else device.sim
        minutes = device.max_minutes or spec.max_minutes
        cap = spec.cap if device.cap is None else device.cap
        entries.append(
            FleetEntry(
                device.id,
                profiles[name],
                SafetySettings(cap=cap, max_session_s=minutes * 60),
                start_s=device.start_s,
                address=None if sim else device.address,
                person=device.person,
                extra={"tier": spec.tier},
            )
        )
    return entries


__all__ = ["FleetFile", "FleetFileError", "add_fleet_command", "load_fleet"]
