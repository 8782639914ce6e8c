"""`massager run PROFILE`: play a profile on a massager or the simulator."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
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
from firmware_bridge.record import Event, Sample, SessionRecord
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


def add_run_command(commands: Any) -> None:
    run = commands.add_parser(
        "run",
        help="play a profile on a massager (or the simulator with --sim)",
        description="Play a profile under the safety governor. Ctrl-C stops at once.",
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
    run.add_argument("--device-id", help="id in MQTT topics (default: from the device address)")
    select = run.add_mutually_exclusive_group()
    select.add_argument("--address", help="connect to this Bluetooth address")
    select.add_argument("--name", help="connect to the massager advertising this name")
    run.add_argument("--hci", metavar="MONIKER", help="bumble HCI transport, e.g. usb:0")
    run.add_argument(
        "--scan-timeout", type=_number(float, 0.5, 120, "--scan-timeout"), default=10.0
    )
    add_telemetry_arguments(run)
    run.set_defaults(handler=run_command)


def _error(message: str) -> None:
    print(f"massager: error: {message}", file=sys.stderr)


def run_command(args: argparse.Namespace) -> int:
    try:
        profile = resolve(args.profile)
    except ProfileError as exc:
        for line in str(exc).splitlines():
            _error(line)
        return EXIT_BAD_INPUT
    if args.speed != 1.0 and not args.sim:
        _error("--speed needs --sim (real devices run in real time)")
        return EXIT_BAD_INPUT
    if args.sim and (args.address or args.name or args.hci):
        _error("--sim cannot be combined with --address, --name or --hci")
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
    return asyncio.run(_run(args, profile, settings, broker))


@asynccontextmanager
async def _device(
    args: argparse.Namespace, clock: ScaledClock
) -> AsyncIterator[tuple[Transport, Any]]:
    from firmware_bridge import compose as devices  # imports bumble, and `sim` for --sim

    if args.sim:
        async with devices.open_simulator(args.sim_tier, clock=clock) as setup:
            yield setup.transport, setup.massager
    else:
        async with devices.open_hardware(
            address=args.address, name=args.name, hci=args.hci, scan_timeout=args.scan_timeout
        ) as transport:
            yield transport, None


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
    try:
        return await _run_device(
            args, profile=profile, settings=settings, broker=broker, clock=clock, stopper=stopper
        )
    except asyncio.CancelledError:  # a signal before the session: the link was zeroed on exit
        print("massager: stopped before the session started", file=sys.stderr)
        return EXIT_OK
    finally:
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)


class _Stopper:
    """SIGINT/SIGTERM/SIGHUP: a user stop during a session; before it, abandon connecting."""

    def __init__(self, main: asyncio.Task[Any] | None) -> None:
        self.main = main
        self.session: Session | None = None
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
    try:
        async with _device(args, clock) as (transport, massager):
            link = MassagerLink(transport, clock=clock)
            async with link:
                caps = link.capabilities
                device = {
                    "name": transport.name,
                    "address": getattr(getattr(transport, "device", None), "address", ""),
                    "failsafe": link.failsafe,
                    "firmware": caps.firmware_version if caps else None,
                }
                device_id = device_id_for(args, str(device["address"]))
                async with session_telemetry(
                    args, *broker, profile=profile.name, device_id=device_id, device=device
                ) as telemetry:
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
                    telemetry.finish(record, extra)
                    await telemetry.flushed()
                    extra |= telemetry.journal_note()
    except (DeviceIdInUseError, BrokerSetupError) as exc:  # never started: nothing to stop
        _error(str(exc))
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
    from firmware_bridge.cli.display import ProgressLine, mmss

    live = sys.stdout.isatty() and not args.json
    display = ProgressLine(sys.stdout, profile.name) if live else None

    def on_sample(sample: Sample) -> None:
        telemetry.sample(sample)
        if display is not None:
            display.sample(sample)

    def on_event(event: Event) -> None:
        telemetry.event(event)
        if display is not None:
            display.event(event)
        elif not args.json and event.type in {"segment", "stop", "link_lost", "fault"}:
            # Not a terminal (a log file, a service): one plain line per step of progress.
            detail = event.detail.get("label") or event.detail.get("reason") or ""
            with contextlib.suppress(OSError):  # a closed pipe must not become a fault
                print(
                    f"{mmss(event.t)} {event.type} {detail}".rstrip(), file=sys.stderr, flush=True
                )

    session = Session(
        link,
        profile,
        settings,
        rating_source=massager.rating if massager is not None else None,
        on_sample=on_sample,
        on_event=on_event,
    )
    telemetry.attach(session)
    extra: dict[str, Any] = {"speed": args.speed, "session_id": telemetry.session_id}
    print(
        f"Playing {profile.name} ({profile.duration_s / 60:.1f} min, limit "
        f"{settings.session_limit_s / 60:g} min, cap {settings.cap}) on {link.transport.name}. "
        "Ctrl-C stops" + ("; type 0-10 + Enter to rate discomfort." if sys.stdin.isatty() else "."),
        file=sys.stderr,
        flush=True,
    )
    stopper.session = session
    keyboard = _keyboard(session) if sys.stdin.isatty() else contextlib.nullcontext()
    try:
        with keyboard:
            record = await session.run()
    finally:
        if display is not None:
            display.close()
    return record, extra


@contextlib.contextmanager
def _keyboard(session: Session) -> Any:
    """Line input while running: a number 0-10 is a rating; s, q or stop ends the session."""
    loop = asyncio.get_running_loop()

    def on_line() -> None:
        text = sys.stdin.readline().strip().lower()
        if text in {"s", "q", "stop", "quit"}:
            session.request_stop(StopReason.USER_STOP)
        elif text.isdigit() and 0 <= int(text) <= 10:
            session.report_discomfort(int(text))
        elif text:
            print(f"  (type 0-10 to rate, or s to stop; not {text!r})", file=sys.stderr)

    loop.add_reader(sys.stdin.fileno(), on_line)
    try:
        yield
    finally:
        loop.remove_reader(sys.stdin.fileno())


def _report(args: argparse.Namespace, record: SessionRecord, extra: dict[str, Any]) -> None:
    if args.json:
        print(json.dumps(record.summary() | extra))
        return
    from firmware_bridge.cli.display import human_summary

    print(human_summary(record, extra))
