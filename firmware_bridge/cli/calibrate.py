"""`massager calibrate`: find the person's ceiling, the output they call "moderate".

One zone at a time, intensity rises slowly from zero (the governor's rise limit, S2, applies
as in any session) up to the cap at most; the person presses space or Enter when it feels
moderate, and that zone stops at once. The ceiling stored for the person and device is the
lowest of the zones (the most sensitive zone bounds every profile). With `--sim` the
simulator's virtual foot answers instead (`--sim-person`, or no terminal), pressing when its
rating reaches `MODERATE`; on a terminal, `--sim` alone lets you press the keys.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import sys
from typing import TYPE_CHECKING, Any

from firmware_bridge.cli.helptext import BAD_INPUT, epilog
from firmware_bridge.cli.person import add_person_argument, person_of
from firmware_bridge.cli.scan import hci_moniker

if TYPE_CHECKING:  # the command's own imports load when it runs, not at every TAB
    from firmware_bridge.device import MassagerLink

EXIT_OK, EXIT_FAULT, EXIT_BAD_INPUT = 0, 1, 2
RAMP_S = 120.0  # session seconds from zero to the cap: slow enough to notice "moderate"
MODERATE = 4  # the 0-10 rating the simulated person presses at ("moderate, never severe")
POLL_S = 0.5  # session seconds between the simulated person's ratings
PRESS_KEYS = frozenset("\n\rm")  # Enter or m: "this is moderate"
# Stop calibrating, nothing stored: space and s as in `massager run`, q, Esc, and a rating
# of 7 or more (too much is never "moderate").
QUIT_KEYS = frozenset(" sq\x1b789x")


def add_calibrate_command(commands: Any) -> None:
    calibrate = commands.add_parser(
        "calibrate",
        help="find your ceiling: the output you call moderate, per device",
        description="Intensity rises slowly from zero on one zone at a time (heel, arch, "
        "forefoot), never above the cap. Press Enter (or m) when it feels moderate; that "
        "zone stops at once. The lowest of the zones becomes your ceiling on this device, "
        "and profiles scale to it. Space, s or q stops without storing anything. The "
        "screening questions must have been answered (massager setup).",
        epilog=epilog(
            [
                "massager calibrate --sim --speed 20",
                "massager calibrate --address AA:BB:CC:DD:EE:FF --cap 3",
            ],
            [
                ("0", "the ceiling was stored"),
                ("1", "no device, a device problem, or calibration stopped"),
                BAD_INPUT,
            ],
        ),
    )
    add_person_argument(calibrate)
    calibrate.add_argument("--sim", action="store_true", help="the simulated massager")
    calibrate.add_argument(
        "--sim-person",
        action="store_true",
        help="with --sim: the simulated foot answers instead of you (always so without a terminal)",
    )
    calibrate.add_argument("--speed", type=float, default=1.0, help="with --sim: faster clock")
    calibrate.add_argument("--cap", type=int, default=4, choices=range(11), metavar="0-10")
    select = calibrate.add_mutually_exclusive_group()
    select.add_argument("--address", help="connect to this Bluetooth address")
    select.add_argument("--name", help="connect to the massager advertising this name")
    calibrate.add_argument(
        "--hci", metavar="MONIKER", type=hci_moniker, help="bumble HCI transport, e.g. usb:0"
    )
    calibrate.set_defaults(handler=calibrate_command)


def _error(message: str) -> None:
    print(f"massager: error: {message}", file=sys.stderr)


def calibrate_command(args: argparse.Namespace) -> int:
    from firmware_bridge.errors import MassagerError
    from firmware_bridge.person import Calibration

    at_keys = sys.stdin.isatty() and sys.stdout.isatty()
    if not args.sim and not at_keys:
        _error("calibration needs you at the keys: run it on a terminal (or --sim)")
        return EXIT_BAD_INPUT
    if args.sim_person and not args.sim:
        _error("--sim-person needs --sim")
        return EXIT_BAD_INPUT
    args.foot_answers = args.sim and (args.sim_person or not at_keys)
    if not 0.1 <= args.speed <= 1000 or (args.speed != 1 and not args.sim):
        _error("--speed must be 0.1-1000, and only with --sim")
        return EXIT_BAD_INPUT
    refusal, low = _screened(args)
    if refusal:
        _error(refusal)
        return EXIT_BAD_INPUT
    try:
        ceiling, device = asyncio.run(_calibrate(args, low_sensation=low))
    except MassagerError as exc:
        _error(str(exc))
        return EXIT_FAULT
    if ceiling is None:
        print("Calibration stopped; nothing was stored.", file=sys.stderr)
        return EXIT_FAULT
    from firmware_bridge.store import Store, StoreError

    person = person_of(args)
    try:
        with Store.open() as store:
            store.ensure_person(person)
            store.add_calibration(person, Calibration(device, ceiling, dt.datetime.now(dt.UTC)))
    except StoreError as exc:
        _error(str(exc))
        return EXIT_BAD_INPUT
    print(f"{person}: ceiling on {device} is {ceiling:.0%} of the device's output.")
    return EXIT_OK


def _screened(args: argparse.Namespace) -> tuple[str | None, bool]:
    """(why not, or None; low sensation): calibration is output too, so S11 applies."""
    from firmware_bridge.cli.person import describe
    from firmware_bridge.person import status
    from firmware_bridge.store import Store, StoreError

    person = person_of(args)
    try:
        with Store.open() as store:
            latest = store.latest_screening(person)
            screening = status(latest, len(store.sessions(person)))
    except StoreError as exc:
        return str(exc), False
    if latest is None:
        return (
            f"{person} has not answered the screening questions: run `massager setup` first",
            False,
        )
    if screening.blocked:
        return describe(screening, person), False
    return None, screening.low_sensation


async def _calibrate(args: argparse.Namespace, *, low_sensation: bool) -> tuple[float | None, str]:
    from firmware_bridge import compose
    from firmware_bridge.cli.gate import SIM_DEVICE
    from firmware_bridge.device import MassagerLink
    from firmware_bridge.protocol import ScaledClock

    clock = ScaledClock(args.speed)
    if args.sim:
        async with (
            compose.open_simulator("memory", clock=clock) as setup,
            MassagerLink(setup.transport, clock=clock) as link,
        ):
            foot = setup.massager if args.foot_answers else None
            return await _zones(link, args.cap, simulator=foot, low=low_sensation), SIM_DEVICE
    async with (
        compose.open_hardware(address=args.address, name=args.name, hci=args.hci) as transport,
        MassagerLink(transport) as link,
    ):
        found = await _zones(link, args.cap, simulator=None, low=low_sensation)
        return found, str(transport.device.address)


async def _zones(link: MassagerLink, cap: int, *, simulator: Any, low: bool) -> float | None:
    from firmware_bridge.person.rules import MIN_CEILING
    from profiles.model import ZONES

    found: list[float] = []
    for index, zone in enumerate(ZONES[: link.zones]):
        print(f"{zone}: rising slowly; press Enter when it feels moderate (space stops).")
        level = await _one_zone(link, zone, index, cap, simulator, low=low)
        if level is None:
            return None
        print(f"  {zone}: {level:.0%}")
        found.append(level)
    if not found:
        return None
    if min(found) < MIN_CEILING:  # pressed before anything could be felt: the lowest ceiling
        print(f"  (below {MIN_CEILING:.0%}: the lowest ceiling, {MIN_CEILING:.0%}, is stored)")
    return max(MIN_CEILING, min(found))


async def _one_zone(
    link: MassagerLink, zone: str, index: int, cap: int, simulator: Any, *, low: bool
) -> float | None:
    from firmware_bridge.device import StopReason
    from firmware_bridge.runner import Session
    from firmware_bridge.safety import SafetySettings
    from profiles.model import Profile, Ramp

    profile = Profile(
        name="calibration",
        title="Calibration",
        segments=[
            Ramp(duration_s=RAMP_S, start=0.0, end=1.0, zones=[zone], label=f"{zone} rising"),
            Ramp(duration_s=30, start=0.0, end=0.0, zones=[zone], cool_down=True),
        ],
    )
    from firmware_bridge.person.screening import LOW_SENSATION_CEILING

    # Diabetes or loss of sensation: the ramp never passes the low ceiling (S11).
    session = Session(
        link,
        profile,
        SafetySettings(cap=cap, personal_ceiling=LOW_SENSATION_CEILING if low else None),
    )
    pressed: asyncio.Future[float | None] = asyncio.get_running_loop().create_future()

    def press(moderate: bool) -> None:
        if pressed.done():
            return
        max_level = link.capabilities.max_level if link.capabilities else 255
        applied = link.applied[index] if index < len(link.applied) else 0
        pressed.set_result(applied / max_level if moderate else None)
        session.request_stop(StopReason.USER_STOP)

    async with asyncio.TaskGroup() as group:
        playing = group.create_task(session.run(), name="calibration")
        if simulator is not None:
            group.create_task(_simulated_person(simulator, link, playing, press))
        with _keys(press) if simulator is None else contextlib.nullcontext():
            record = await playing  # a press stops it at once (request_stop in press())
    if pressed.done():
        return pressed.result()
    # Never pressed: the ramp reached the cap, which is then the ceiling (never above it).
    return record.max_intensity if record.stop_reason is StopReason.COMPLETED else None


async def _simulated_person(simulator: Any, link: MassagerLink, playing: Any, press: Any) -> None:
    while not playing.done():
        if simulator.rating() >= MODERATE:
            press(True)
            return
        await link.clock.sleep(POLL_S)


@contextlib.contextmanager
def _keys(press: Any) -> Any:
    from firmware_bridge.cli.keys import cbreak

    fd = sys.stdin.fileno()
    loop = asyncio.get_running_loop()

    def readable() -> None:
        try:
            data = os.read(fd, 64).decode(errors="ignore").lower()
        except OSError:
            data = ""
        if not data:  # the terminal went away: stop, and stop listening to it
            loop.remove_reader(fd)
            press(False)
        elif any(ch in QUIT_KEYS for ch in data):
            press(False)
        elif any(ch in PRESS_KEYS for ch in data):
            press(True)

    with cbreak(fd):
        loop.add_reader(fd, readable)
        try:
            yield
        finally:
            loop.remove_reader(fd)
