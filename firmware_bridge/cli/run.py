"""`massager run PROFILE`: play a profile on a massager or the simulator."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import textwrap
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from firmware_bridge.cli.telemetry_setup import (
    add_telemetry_arguments,
    broker_settings,
    device_id_for,
    session_telemetry,
)
from firmware_bridge.device import MassagerLink, StopReason
from firmware_bridge.durable import writer
from firmware_bridge.errors import (
    BrokerSetupError,
    DeviceConnectionError,
    DeviceIdInUseError,
    DeviceNotFoundError,
    MassagerError,
)
from firmware_bridge.protocol import ScaledClock
from firmware_bridge.record import Event, SessionRecord
from firmware_bridge.runner import Session
from firmware_bridge.safety import DEFAULT_CAP, DEFAULT_SESSION_S, HARD_CEILING_S, SafetySettings
from firmware_bridge.telemetry.bridge import SessionTelemetry
from firmware_bridge.telemetry.mqtt import BrokerSettings
from firmware_bridge.telemetry.topics import valid_device_id
from firmware_bridge.transport import Transport
from profiles.loader import ProfileError, resolve
from profiles.model import Profile

EXIT_OK, EXIT_FAULT, EXIT_BAD_INPUT = 0, 1, 2
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # HUP: the terminal went away
MAX_SPEED = 1000.0  # beyond this the simulated clock outruns the 20 Hz control loop
MAX_DEVICES = 8  # one person's massagers (both feet, a mat); a clinic uses `massager fleet`


def _number(kind: type[float] | type[int], low: float, high: float, what: str) -> Any:
    def parse(text: str) -> float | int:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be a number, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{what} must be {low:g}-{high:g}, got {text}")
        return value

    return parse


class _Addresses(argparse.Action):
    """--address, once per massager: the first one given replaces a configured default."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option: Any = None) -> None:
        current = getattr(namespace, self.dest, None)
        setattr(namespace, self.dest, [*(current if isinstance(current, list) else []), values])


def add_run_command(commands: Any) -> None:
    from firmware_bridge.cli.helptext import epilog

    run = commands.add_parser(
        "run",
        help="play a profile on a massager (or the simulator with --sim)",
        description="Play a profile under the safety governor. Ctrl-C stops at once.",
        epilog=epilog(
            [
                "massager run heel-spur --sim",
                "massager run my-profile.toml --address AA:BB:CC:DD:EE:FF --cap 3",
                "massager run heel-spur --hci usb:0 --mqtt mqtt://127.0.0.1:1883",
                "massager run heel-spur --address AA:BB:CC:DD:EE:01 --address AA:BB:CC:DD:EE:02",
            ],
            [
                (
                    "0",
                    "the session completed or was stopped on purpose: Ctrl-C, `massager "
                    "stop`, the device's button, the time limit or a discomfort rating",
                ),
                (
                    "1",
                    "a fault: no device found or it would not connect, the link was lost, "
                    "a device fault, low battery or over-temperature",
                ),
                (
                    "2",
                    "bad input: one line on stderr names the flag, file or field; also when "
                    "the device id is in use by another session or the broker refuses it "
                    "(certificate, ACL)",
                ),
                ("130", "Ctrl-C again while shutting down"),
            ],
            notes="Defaults of --cap, --max-minutes, --telemetry-hz, --address, --name,\n"
            "--device-id and the MQTT flags can come from config.toml or MASSAGER_*\n"
            "variables (see `massager config --help`); a flag given here always wins.",
        ),
    )
    run.add_argument("profile", help="built-in profile name (see `profiles list`) or a TOML file")
    run.add_argument("--sim", action="store_true", help="use the simulated massager")
    run.add_argument(
        "--sim-tier",
        choices=("bumble", "memory"),
        default="bumble",
        help="simulator under bleak: bumble virtual link (default) or in-memory",
    )
    run.add_argument(
        "--sim-as",
        metavar="DESCRIPTION",
        help="with --sim: impersonate this device description (see `massager devices known`)",
    )
    run.add_argument(
        "--devices",
        type=_number(int, 1, 8, "--devices"),
        default=1,
        help="with --sim: this many simulated massagers played together (default 1)",
    )
    run.add_argument(
        "--speed",
        type=_number(float, 0.1, MAX_SPEED, "--speed"),
        default=1.0,
        help="with --sim: run the simulator and every timer X times faster",
    )
    run.add_argument(
        "--cap",
        type=_number(int, 0, 10, "--cap"),
        default=DEFAULT_CAP,
        help="upper bound on the 0-10 scale: output ≤ cap/10 of the device maximum "
        f"(default {DEFAULT_CAP})",
    )
    run.add_argument(
        "--max-minutes",
        type=_number(float, 0.1, HARD_CEILING_S / 60, "--max-minutes"),
        default=DEFAULT_SESSION_S / 60,
        help=f"session limit in minutes (default {DEFAULT_SESSION_S / 60:g}, at most "
        f"{HARD_CEILING_S / 60:g})",
    )
    run.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    run.add_argument(
        "--person",
        metavar="NAME",
        help="whose session (default: config, else your login name; with --sim: the "
        "built-in simulated person)",
    )
    run.add_argument("--device-id", help="id in MQTT topics (default: from the device address)")
    select = run.add_mutually_exclusive_group()
    select.add_argument(
        "--address",
        action=_Addresses,
        metavar="ADDRESS",
        help="connect to this Bluetooth address; give it again for a second massager "
        "(both feet: one profile, one stop for all)",
    )
    select.add_argument("--name", help="connect to the massager advertising this name")
    from firmware_bridge.cli.scan import add_esphome_argument, hci_moniker

    run.add_argument(
        "--hci", metavar="MONIKER", type=hci_moniker, help="bumble HCI transport, e.g. usb:0"
    )
    add_esphome_argument(run)
    run.add_argument(
        "--scan-timeout", type=_number(float, 0.5, 120, "--scan-timeout"), default=10.0
    )
    add_telemetry_arguments(run)
    run.set_defaults(handler=run_command)


def _error(message: str) -> None:
    print(f"massager: error: {message}", file=sys.stderr)


def _device_flags_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with the device flags together, if anything (sets `sim_description`)."""
    if args.speed != 1.0 and not args.sim:
        return "--speed needs --sim (real devices run in real time)"
    if args.sim and (args.address or args.name or args.hci or args.esphome):
        return "--sim cannot be combined with --address, --name, --hci or --esphome"
    from firmware_bridge.cli.scan import esphome_problem

    if (problem := esphome_problem(args)) is not None:
        return problem
    if args.devices != 1 and not args.sim:
        return "--devices needs --sim (for real massagers give --address once per device)"
    addresses = [args.address] if isinstance(args.address, str) else list(args.address or [])
    if len({a.upper() for a in addresses}) != len(addresses):
        return "--address: the same massager is given twice"
    if len(addresses) > MAX_DEVICES:
        return f"--address: at most {MAX_DEVICES} massagers in one session"
    args.addresses = addresses  # from config.toml the address is one string
    args.address = addresses[0] if len(addresses) == 1 else None
    args.sim_description = None
    if args.sim_as is not None:
        if not args.sim:
            return "--sim-as needs --sim (it chooses what the simulator impersonates)"
        from firmware_bridge.devices import DescriptionError, by_id

        try:
            args.sim_description = by_id(args.sim_as)
        except DescriptionError as exc:
            return f"--sim-as {exc}"
    return None


def run_command(args: argparse.Namespace) -> int:
    try:
        profile = resolve(args.profile)
    except ProfileError as exc:
        for line in str(exc).splitlines():
            _error(line)
        return EXIT_BAD_INPUT
    problem = _device_flags_problem(args)
    if problem is not None:
        _error(problem)
        return EXIT_BAD_INPUT
    if args.device_id is not None and not valid_device_id(args.device_id):
        _error(f"--device-id {args.device_id!r}: use 1-64 letters, digits, '-' or '_'")
        return EXIT_BAD_INPUT
    if not 1.0 <= args.telemetry_hz <= 50.0:
        _error(f"--telemetry-hz must be 1-50, got {args.telemetry_hz:g}")
        return EXIT_BAD_INPUT
    try:
        broker = broker_settings(args)
    except ValueError as exc:  # BrokerURLError, a bad topic prefix: before touching a device
        _error(str(exc))
        return EXIT_BAD_INPUT
    from firmware_bridge.cli.display import NOTICE

    print(NOTICE, file=sys.stderr)
    settings = SafetySettings(cap=args.cap, max_session_s=args.max_minutes * 60)
    from firmware_bridge.cli.gate import GateRefusal, ask_after, open_gate
    from firmware_bridge.store import StoreError

    try:  # whose session, screened (S11) and allowed today (S12), before any device is touched
        args.gate = open_gate(args)
    except (GateRefusal, StoreError) as exc:
        _error(str(exc))
        return EXIT_BAD_INPUT
    try:
        code = asyncio.run(_run(args, profile, settings, broker))
        ask_after(args.gate)
    except GateRefusal as exc:  # a second session started meanwhile: the device was zeroed
        _error(str(exc))
        return EXIT_BAD_INPUT
    finally:
        args.gate.close()
    return code


@asynccontextmanager
async def _device(
    args: argparse.Namespace, clock: ScaledClock
) -> AsyncIterator[tuple[Transport, Any]]:
    from firmware_bridge import compose as devices  # imports bumble, and `sim` for --sim
    from firmware_bridge.cli.scan import esphome_key

    if args.sim:
        async with devices.open_simulator(
            args.sim_tier, clock=clock, description=args.sim_description
        ) as setup:
            yield setup.transport, setup.massager
    else:
        preferred = await asyncio.to_thread(_remembered, args)
        async with devices.open_hardware(
            address=args.address,
            name=args.name,
            hci=args.hci,
            esphome=args.esphome or (),
            esphome_key=esphome_key(args),
            scan_timeout=args.scan_timeout,
            preferred=preferred,
            ask=_ask_which if sys.stdin.isatty() and sys.stderr.isatty() else None,
            on_chosen=lambda sighting: setattr(args, "chosen", sighting),
        ) as transport:
            yield transport, None


def _remembered(args: argparse.Namespace) -> list[str]:
    """The person's massagers, the last used first (none without --address/--name only)."""
    from firmware_bridge.store import StoreError

    store = args.gate.store
    if store is None or args.address or args.name:
        return []
    try:
        return [device.address for device in store.devices(args.gate.person)]
    except StoreError as exc:  # a history problem must not keep a person from a session
        _say(f"massager: warning: remembered devices unavailable: {exc}")
        return []


def _remember(args: argparse.Namespace) -> None:
    """The massager just used becomes the person's default (`massager devices` lists it)."""
    from firmware_bridge.store import StoreError

    chosen = getattr(args, "chosen", None)
    if args.sim or chosen is None or args.gate.store is None:
        return
    try:
        args.gate.store.remember_device(
            args.gate.person, chosen.address, name=chosen.name, description=chosen.description_id
        )
    except StoreError as exc:
        _say(f"massager: warning: could not remember {chosen.address}: {exc}")


class NoChoiceError(MassagerError):
    """The person closed the prompt (Ctrl-D) without choosing a massager."""


async def _ask_which(candidates: list[Any]) -> Any:
    """A numbered list on stderr; the person types a number (stdin is read without blocking
    the event loop, so Ctrl-C still stops at once)."""
    loop = asyncio.get_running_loop()
    _say("Several massagers are in range:")
    for number, sighting in enumerate(candidates, 1):
        _say(f"  {number}. {sighting.line()}")
    while True:
        print(f"Which one (1-{len(candidates)})? ", end="", file=sys.stderr, flush=True)
        answer: asyncio.Future[str] = loop.create_future()

        def readable(answer: asyncio.Future[str] = answer) -> None:
            if not answer.done():
                answer.set_result(sys.stdin.readline())

        loop.add_reader(sys.stdin.fileno(), readable)
        try:
            line = await answer
        finally:
            loop.remove_reader(sys.stdin.fileno())
        if not line:
            raise NoChoiceError("no massager chosen; pass --address ADDRESS to choose one")
        text = line.strip()
        if text.isdigit() and 1 <= int(text) <= len(candidates):
            return candidates[int(text) - 1]
        _say(f"Type a number from 1 to {len(candidates)}.")


async def _run(
    args: argparse.Namespace,
    profile: Profile,
    settings: SafetySettings,
    broker: tuple[str, BrokerSettings | None],
) -> int:
    clock = ScaledClock(args.speed)
    stopper = _Stopper(asyncio.current_task())
    loop = asyncio.get_running_loop()
    for sig in STOP_SIGNALS:  # for the whole run: connecting, the session, and the teardown
        loop.add_signal_handler(sig, stopper)
    several = args.devices > 1 if args.sim else len(args.addresses) > 1
    try:
        if several:
            from firmware_bridge.cli.run_group import run_devices

            return await _guarded(
                run_devices(
                    args,
                    profile=profile,
                    settings=settings,
                    broker=broker,
                    clock=clock,
                    stopper=stopper,
                )
            )
        return await _run_device(
            args, profile=profile, settings=settings, broker=broker, clock=clock, stopper=stopper
        )
    except asyncio.CancelledError:  # a signal before the session: the link was zeroed on exit
        print("massager: stopped before the session started", file=sys.stderr)
        return EXIT_OK
    finally:
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)


async def _guarded(running: Any) -> int:
    """Several devices: the same one-line errors and exit codes as one device."""
    from firmware_bridge.discovery import SeveralMassagersError

    try:
        return int(await running)
    except (DeviceIdInUseError, BrokerSetupError, SeveralMassagersError) as exc:
        _error(str(exc).splitlines()[0])
        return EXIT_BAD_INPUT
    except (DeviceNotFoundError, DeviceConnectionError) as exc:
        _error(str(exc))
        return EXIT_FAULT
    except MassagerError as exc:
        _error(f"device problem: {exc}")
        return EXIT_FAULT


class _Stopper:
    """SIGINT/SIGTERM/SIGHUP: a user stop during a session; before it, abandon connecting."""

    def __init__(self, main: asyncio.Task[Any] | None) -> None:
        self.main = main
        self.session: Any = None  # a Session, or a SessionGroup (several massagers)
        self.stopping = False

    def __call__(self) -> None:
        if self.session is not None:
            self.session.request_stop(StopReason.USER_STOP)
        elif not self.stopping and self.main is not None:
            self.stopping = True
            self.main.cancel()  # the link's exit writes zero, shielded from this cancellation


async def _run_device(
    args: argparse.Namespace,
    *,
    profile: Profile,
    settings: SafetySettings,
    broker: tuple[str, BrokerSettings | None],
    clock: ScaledClock,
    stopper: _Stopper,
) -> int:
    from firmware_bridge.discovery import SeveralMassagersError  # bleak: only with a device

    try:
        async with _device(args, clock) as (transport, massager):
            link = MassagerLink(transport, clock=clock)
            async with link:
                await asyncio.to_thread(_remember, args)
                caps = link.capabilities
                device = {
                    "name": transport.name,
                    "address": getattr(getattr(transport, "device", None), "address", ""),
                    "failsafe": link.failsafe,
                    "firmware": caps.firmware_version if caps else None,
                    # which device description drives it (protocol-v1: our own protocol)
                    "description": getattr(
                        getattr(transport, "description", None), "id", "protocol-v1"
                    ),
                }
                device_id = device_id_for(args, str(device["address"]))
                from firmware_bridge.cli.gate import SIM_DEVICE, finish, settle

                device_key = SIM_DEVICE if args.sim else str(device["address"])
                person = {"person": args.gate.person, "simulated": args.gate.demo}
                async with session_telemetry(
                    args,
                    *broker,
                    profile=profile.name,
                    device_id=device_id,
                    device=device,
                    header=person | {"device_key": device_key},
                ) as telemetry:
                    journal = telemetry.journal
                    settings = await asyncio.to_thread(
                        settle,
                        args.gate,
                        args,
                        device=device_key,
                        profile=profile,
                        settings=settings,
                        session_id=telemetry.session_id,
                        journal_file=journal.path.name if journal is not None else None,
                    )
                    record, extra = await _play(
                        args,
                        link,
                        profile=profile,
                        settings=settings,
                        massager=massager,
                        telemetry=telemetry,
                        stopper=stopper,
                    )
                    extra["device"] = device | {"id": device_id}
                    extra |= await finish(args.gate, record)
                    telemetry.finish(record, extra)
                    await telemetry.flushed()
                    extra |= telemetry.journal_note()
    except (DeviceIdInUseError, BrokerSetupError) as exc:  # never started: nothing to stop
        _error(str(exc))
        return EXIT_BAD_INPUT
    except (SeveralMassagersError, NoChoiceError) as exc:  # which one? --address says
        for line in str(exc).splitlines():
            _error(line.strip())
        return EXIT_BAD_INPUT
    except (DeviceNotFoundError, DeviceConnectionError) as exc:
        _error(str(exc))
        return EXIT_FAULT
    except MassagerError as exc:
        _error(f"device problem: {exc}")
        return EXIT_FAULT
    # Whatever the publisher popped from the outbox while closing is on the disk before exit
    # (the durable writer is a daemon thread: the interpreter would not wait for it).
    await asyncio.to_thread(writer().flush)
    if massager is not None:
        extra["sim"] = {
            "final_levels": list(massager.firmware.levels),
            "last_change": massager.firmware.applied[-1].cause
            if massager.firmware.applied
            else None,
            "frames_received": len(massager.firmware.received),
        }
    _report(args, record, extra)
    return EXIT_OK if record.ok else EXIT_FAULT


async def _play(
    args: argparse.Namespace,
    link: MassagerLink,
    *,
    profile: Profile,
    settings: SafetySettings,
    massager: Any,
    telemetry: SessionTelemetry,
    stopper: _Stopper,
) -> tuple[SessionRecord, dict[str, Any]]:
    from firmware_bridge.cli.display import PLAIN_EVENTS, plain_line
    from firmware_bridge.cli.keys import Keyboard, interactive, one_key_input
    from firmware_bridge.cli.live import LiveScreen, screen_console

    # The screen goes where progress goes: stdout, or stderr when stdout carries --json.
    console = screen_console(sys.stderr if args.json else sys.stdout)
    keys = interactive(sys.stdin.fileno()) if sys.stdin is not None else False
    screen: LiveScreen | None = None

    def on_event(event: Event) -> None:
        telemetry.event(event)
        if screen is not None:
            screen.event(event)
        elif event.type in PLAIN_EVENTS:  # no screen (a log, a service): one plain line each
            _say(plain_line(event))

    session = Session(
        link,
        profile,
        settings,
        # The simulated person rates only its own demo sessions: a person on the simulator rates
        # for themselves, and a simulated rating never enters their course.
        rating_source=massager.rating if massager is not None and args.gate.demo else None,
        on_sample=telemetry.sample,
        on_event=on_event,
    )
    telemetry.attach(session)
    if console is not None:
        screen = LiveScreen(console, session, demo=args.sim, keys=keys)
    extra: dict[str, Any] = {"speed": args.speed, "session_id": telemetry.session_id}
    hint = " Ctrl-C stops."
    if keys:
        hint = (
            "" if screen else " Keys: space stops, 0-9 or x (10) rate, - lowers the cap, p pauses."
        )
    _say(
        f"Playing {profile.name} ({profile.duration_s / 60:.1f} min, limit "
        f"{settings.session_limit_s / 60:g} min, cap {settings.cap}) on {link.transport.name}."
        + hint
    )
    stopper.session = session
    with contextlib.ExitStack() as terminal:  # unwound on every way out: the terminal is restored
        if screen is not None:
            terminal.enter_context(screen)
        if keys:
            said = screen.said if screen is not None else _say
            terminal.enter_context(one_key_input(sys.stdin.fileno(), Keyboard(session, said)))
        drawing = asyncio.create_task(screen.refreshing(), name="screen") if screen else None
        try:
            record = await session.run()
        finally:
            if drawing is not None:
                drawing.cancel()
                with contextlib.suppress(asyncio.CancelledError, RuntimeError):
                    await drawing  # RuntimeError: the screen failed and stopped the session
        if screen is not None:
            screen.finish(record)
    return record, extra


def _say(text: str) -> None:
    """A line for the person on stderr, folded to the terminal; a closed pipe is no fault."""
    with contextlib.suppress(OSError):
        print(_fold(text, sys.stderr), file=sys.stderr, flush=True)


def _fold(text: str, stream: Any) -> str:
    """`text` folded to `stream`'s terminal width, so the terminal never wraps mid-word."""
    try:
        width = os.get_terminal_size(stream.fileno()).columns if stream.isatty() else None
    except (OSError, ValueError):  # no terminal, or a stream without a file descriptor
        width = None
    if width is None:
        return text
    return "\n".join(
        textwrap.fill(line, max(20, width - 1), break_on_hyphens=False)  # names keep whole
        for line in text.splitlines()
    )


def _report(args: argparse.Namespace, record: SessionRecord, extra: dict[str, Any]) -> None:
    if args.json:
        print(json.dumps(record.summary() | extra))
        return
    from firmware_bridge.cli.display import human_summary

    print(_fold(human_summary(record, extra), sys.stdout))


def report_group(args: argparse.Namespace, summary: dict[str, Any]) -> None:
    """The summary of several massagers: JSON, or a line for the session and one per device."""
    if args.json:
        print(json.dumps(summary))
        return
    from firmware_bridge.cli.display import mmss

    reason = str(summary["stop_reason"] or "unknown").replace("_", " ")
    lines = [
        f"Session {reason} after {mmss(summary['duration_s'])} (profile {summary['profile']}) "
        f"on {len(summary['devices'])} massagers; highest intensity sent "
        f"{summary['max_intensity']:.0%} (cap {summary['cap']}).",
    ]
    for device in summary["devices"]:
        latency = device["stop_latency_ms"]
        zero = (
            f"zero confirmed {latency:.1f} ms after the stop"
            if device["stop_confirmed"] and latency is not None
            else "zero confirmed"
            if device["stop_confirmed"]
            else "zero NOT confirmed (its watchdog stops it)"
        )
        lines.append(
            f"[{device['label']}] {device['name']} ({device['id']}): "
            f"{str(device['stop_reason']).replace('_', ' ')}, highest "
            f"{device['max_intensity']:.0%}, {zero}."
        )
    print("\n".join(_fold(line, sys.stdout) for line in lines))
