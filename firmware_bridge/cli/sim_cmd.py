"""`massager sim serve`: the simulated massager as a separate device (and `massager sim --hci`)."""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
from typing import Any

from firmware_bridge.cli.helptext import bad_input, epilog, group_help
from firmware_bridge.cli.scan import hci_moniker

EXIT_OK, EXIT_FAULT, EXIT_BAD_INPUT = 0, 1, 2
DEFAULT_NAME = "FootMassager-SIM"  # as sim.hosts.runtime.DEFAULT_NAME (sim is imported lazily)
MAX_SPEED = 1000.0  # as `massager run --speed`: beyond it the 20 Hz control loop falls behind
MAX_PORT = 65535

SERVE_NOTES = """\
Without --hci, the simulator brings its own radio: a virtual BLE link in this
process, reached over TCP on 127.0.0.1 (never from another machine). It prints
the command for the controller side; run that in a second terminal. With --hci
it is a BLE peripheral on that controller instead (usb:0: a spare dongle).
--record FILE: one JSON line per change of the motor levels,
{"ts": Unix time, "levels": [...], "cause": "set"|"stop"|"watchdog"|...},
written as it happens (tail -f it); the file is user-only (0600).
--fault-plan FILE.toml: FaultPlan fields (drop_notify = 0.1, mute_at_s = 30,
...; see sim/faultplan.py); the flags below override the file."""


def _number(low: float, high: float, what: str) -> Any:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be a number, got {text!r}") from None
        if not (math.isfinite(value) and low <= value <= high):
            bound = f"≥ {low:g}" if math.isinf(high) else f"{low:g}-{high:g}"
            raise argparse.ArgumentTypeError(f"{what} must be {bound}, got {text}")
        return value

    return parse


def _seconds(what: str) -> Any:
    return _number(0, math.inf, what)


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > MAX_PORT:
        raise argparse.ArgumentTypeError(f"--port must be 0-{MAX_PORT}, got {text!r}")
    return int(text)


def add_sim_command(commands: Any) -> None:
    sim = commands.add_parser(
        "sim",
        help="the simulated massager as a separate device (`sim serve`)",
        description="Run the simulated massager as a device of its own, for a controller in "
        "another process (`sim serve`) or on another machine (`sim serve --hci usb:0`). "
        "`massager sim --hci MONIKER` is the older spelling of `massager sim serve --hci`.",
        epilog=epilog(
            [
                "massager sim serve",
                "massager sim serve --hci usb:0",
                "massager sim --hci tcp-server:_:9000",
            ],
            [
                ("0", "ended with Ctrl-C (no subcommand and no --hci prints this help)"),
                ("1", "the transport could not be opened or failed"),
                bad_input("see `massager sim serve --help`"),
            ],
        ),
    )
    sim.add_argument(
        "--hci", metavar="MONIKER", type=hci_moniker, help="as `sim serve --hci` (e.g. usb:0)"
    )
    sim.add_argument("--name", default=DEFAULT_NAME, help="advertised name")
    sim.add_argument("--no-watchdog", action="store_true", help="firmware without a watchdog")
    sim.set_defaults(
        handler=_sim_without_subcommand(sim),
        port=None,
        record=None,
        fault_plan=None,
        speed=1.0,
        disconnect_at=None,
        reboot_at=None,
        mute_at=None,
        drop_notify=None,
        delay_notify=None,
    )
    sub = sim.add_subparsers(dest="sim_command", title="subcommands")
    serve = sub.add_parser(
        "serve",
        help="serve the simulated massager until Ctrl-C",
        description="Serve the simulated massager until Ctrl-C, for a controller in another "
        "process or on another machine.",
        epilog=epilog(
            [
                "massager sim serve",
                "massager sim serve --port 9000 --record levels.jsonl",
                "massager sim serve --fault-plan faults.toml --mute-at 30",
                "massager sim serve --hci usb:0 --name FootMassager-test",
            ],
            [
                ("0", "ended with Ctrl-C"),
                ("1", "the port or --hci transport could not be opened, or failed"),
                bad_input("a fault-plan file with an unknown key or a wrong type"),
            ],
            notes=SERVE_NOTES,
        ),
    )
    serve.add_argument(
        "--hci", metavar="MONIKER", type=hci_moniker, help="a Bluetooth controller, e.g. usb:0"
    )
    serve.add_argument(
        "--as",
        dest="impersonate",
        metavar="DESCRIPTION",
        help="impersonate a device description: an id (`massager devices known`) or a file",
    )
    serve.add_argument(
        "--port", type=_port, help="without --hci: the TCP port (default 0: a free one)"
    )
    serve.add_argument("--name", default=DEFAULT_NAME, help="advertised name")
    serve.add_argument("--record", metavar="FILE", help="write each motor-level change (JSON)")
    serve.add_argument(
        "--speed",
        type=_number(0.1, MAX_SPEED, "--speed"),
        default=1.0,
        help="device time runs X times faster (fault-plan times come sooner)",
    )
    faults = serve.add_argument_group("faults (device seconds; override --fault-plan)")
    faults.add_argument("--fault-plan", metavar="FILE", help="a TOML file of FaultPlan fields")
    faults.add_argument("--no-watchdog", action="store_true", help="firmware without a watchdog")
    faults.add_argument(
        "--disconnect-at", type=_seconds("--disconnect-at"), metavar="S", help="drop the link at S"
    )
    faults.add_argument(
        "--reboot-at", type=_seconds("--reboot-at"), metavar="S", help="reboot at S"
    )
    faults.add_argument(
        "--mute-at", type=_seconds("--mute-at"), metavar="S", help="notify nothing from S on"
    )
    faults.add_argument(
        "--drop-notify",
        type=_number(0, 1, "--drop-notify"),
        metavar="P",
        help="lose each notification with probability P",
    )
    faults.add_argument(
        "--delay-notify",
        type=_seconds("--delay-notify"),
        metavar="S",
        help="delay every notification by S",
    )
    serve.set_defaults(handler=serve_command)


def _sim_without_subcommand(parser: argparse.ArgumentParser) -> Any:
    show_help = group_help(parser)

    def handler(args: argparse.Namespace) -> int:
        if args.hci is None:
            return show_help(args)
        return serve_command(args)  # `massager sim --hci MONIKER`, as before `sim serve`

    return handler


def fault_plan(args: argparse.Namespace) -> Any:
    """The `sim.firmware.FaultPlan` of --fault-plan with the flags given on top (raises
    `sim.faultplan.FaultPlanError` if the file is bad). `Any`: the CLI imports sim lazily."""
    from sim.faultplan import load_fault_plan
    from sim.firmware import FaultPlan

    plan = load_fault_plan(args.fault_plan) if args.fault_plan else FaultPlan()
    flags = {
        "disconnect_at_s": args.disconnect_at,
        "reboot_at_s": args.reboot_at,
        "mute_at_s": args.mute_at,
        "drop_notify": args.drop_notify,
        "delay_notify_s": args.delay_notify,
    }
    for field, value in flags.items():
        if value is not None:
            setattr(plan, field, value)
    if args.no_watchdog:
        plan.no_watchdog = True
    return plan


def serve_command(args: argparse.Namespace) -> int:
    from firmware_bridge.devices import DescriptionError
    from firmware_bridge.protocol import ScaledClock
    from sim.faultplan import FaultPlanError
    from sim.hosts.runtime import SimulatedMassager
    from sim.record import LevelRecorder

    if args.hci is not None and args.port is not None:
        return _error(
            "--port is for the built-in link; with --hci the moniker says where", EXIT_BAD_INPUT
        )
    try:
        plan = fault_plan(args)
    except FaultPlanError as exc:
        return _error(str(exc), EXIT_BAD_INPUT)
    try:
        description = _description(getattr(args, "impersonate", None))
    except DescriptionError as exc:
        return _error(f"--as {exc}", EXIT_BAD_INPUT)
    massager = SimulatedMassager(
        name=args.name, plan=plan, clock=ScaledClock(args.speed), description=description
    )
    recorder = None
    if args.record:
        try:
            recorder = LevelRecorder(args.record, massager.firmware, massager.clock)
        except OSError as exc:
            return _error(
                f"--record {args.record}: cannot write it: {exc.strerror}", EXIT_BAD_INPUT
            )
    try:
        return _serve(args, massager)
    finally:
        if recorder is not None:
            recorder.close()


def _description(wanted: str | None) -> Any:
    """The description `--as` names: a file (ends in .toml or has a /), else an id."""
    if wanted is None:
        return None
    from firmware_bridge.devices import by_id, load_description_file

    if wanted.endswith(".toml") or "/" in wanted:
        return load_description_file(wanted)
    return by_id(wanted)


def _serve(args: argparse.Namespace, massager: Any) -> int:
    from sim.hosts.bumble_host import serve
    from sim.hosts.linked import LOOPBACK, serve_linked

    def listening(port: int) -> None:
        # The one line a person needs: the other half of the setup (≤ 80 columns).
        # A described device is only used when chosen: name it (ours is found on its own).
        chosen = f" --name {massager.name}" if massager.description is not None else ""
        print(
            f"controller side: massager run heel-spur --hci tcp-client:{LOOPBACK}:{port}{chosen}",
            file=sys.stderr,
            flush=True,
        )

    where = args.hci or f"{LOOPBACK}:{args.port or 0}"
    try:
        if args.hci is None:
            asyncio.run(serve_linked(massager, port=args.port or 0, on_listening=listening))
        else:
            print(
                f"simulated massager {args.name!r} on {args.hci}; Ctrl-C ends it",
                file=sys.stderr,
                flush=True,
            )
            asyncio.run(serve(args.hci, massager))
    except KeyboardInterrupt:
        return EXIT_OK
    except OSError as exc:  # the port is taken, or the transport's device is not there
        return _error(f"cannot run on {where}: {exc.strerror or exc}", EXIT_FAULT)
    except Exception as exc:  # noqa: BLE001 - any transport failure is reported in one line
        return _error(f"cannot run on {where}: {exc}", EXIT_FAULT)
    return EXIT_OK


def _error(message: str, code: int) -> int:
    print(f"massager: error: {message}", file=sys.stderr)
    return code


__all__ = ["add_sim_command", "fault_plan", "serve_command"]
