"""`massager doctor`: check what sessions need and say what to fix, one line per check."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import platform
import secrets
import shutil
import socket
import stat
import sys
import tempfile
import textwrap
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from firmware_bridge.cli.helptext import BAD_INPUT, INTERRUPTED, epilog
from firmware_bridge.cli.mqtt_options import add_broker_arguments, settings_from_args

EXIT_OK, EXIT_FAULT = 0, 1
CHECKS = ("python", "bluetooth", "broker", "data-dir", "config", "report", "mosquitto")
DEFAULT_MQTT = "mqtt://127.0.0.1:1883"
BLUETOOTH_TIMEOUT_S = 5.0  # BlueZ or a USB controller answers in well under a second
TCP_TIMEOUT_S = 2.0  # a LAN broker accepts in milliseconds; a host dropping SYNs takes minutes
MQTT_TIMEOUT_S = 3.0  # CONNECT to CONNACK, a TLS handshake included
MIN_PYTHON = (3, 11)
_SBIN = "/usr/sbin:/usr/local/sbin"  # Debian installs mosquitto here, often not on a user's PATH
NO_BLUETOOTH = (
    "with a USB Bluetooth dongle use --hci usb:0, or try it all without hardware: "
    "massager run heel-spur --sim"
)
NO_BROKER = (
    "install one (apt install mosquitto) or let run start its own: "
    "massager run heel-spur --sim --mqtt embedded"
)


@dataclass(frozen=True)
class Check:
    """One line of the report: status is ok, info, warn or fail."""

    name: str
    status: str
    message: str


WIDTH = 79  # on a terminal, a check's line is folded to fit 80 columns


def check_python() -> Check:
    version = f"Python {platform.python_version()} ({platform.python_implementation()})"
    if sys.version_info < MIN_PYTHON:
        return Check("python", "fail", f"{version}: firmware-bridge needs 3.11 or later")
    return Check("python", "ok", version)


async def check_bluetooth(hci: str | None) -> Check:
    """Whether bleak reaches an adapter (or bumble the --hci controller), within a timeout."""
    if hci:
        from firmware_bridge.errors import MassagerError
        from firmware_bridge.transport.bumble_backend import open_central

        try:
            async with asyncio.timeout(BLUETOOTH_TIMEOUT_S), open_central(hci):
                pass
        except TimeoutError:
            problem = f"--hci {hci}: no answer within {BLUETOOTH_TIMEOUT_S:g} s"
            return Check("bluetooth", "fail", problem)
        except MassagerError as exc:  # one line with advice already
            return Check("bluetooth", "fail", str(exc))
        return Check("bluetooth", "ok", f"--hci {hci}: a Bluetooth controller answered")
    from bleak import BleakScanner
    from bleak.exc import BleakError

    try:
        async with asyncio.timeout(BLUETOOTH_TIMEOUT_S), BleakScanner():
            pass
    except TimeoutError:
        why = f"no answer from the Bluetooth stack within {BLUETOOTH_TIMEOUT_S:g} s"
    except FileNotFoundError:  # bleak found no D-Bus socket to connect to
        why = "no system D-Bus here, so BlueZ cannot be reached"
    except BleakError as exc:
        why = f"not available ({exc})"
        if "ServiceUnknown" in str(exc):
            why = "BlueZ is not running (systemctl start bluetooth)"
    except OSError as exc:
        why = f"not available ({exc.strerror or exc})"
    else:
        return Check("bluetooth", "ok", "an adapter answered (bleak can scan)")
    return Check("bluetooth", "fail", f"{why}; {NO_BLUETOOTH}")


async def check_broker(args: argparse.Namespace) -> Check:
    """TCP connect, then MQTT CONNECT: "nothing listens" is a warning, a refusal a failure."""
    spec = (args.mqtt or "").strip()
    if not args.mqtt_config and spec.lower() == "off":
        return Check("broker", "info", "MQTT is off: run publishes no telemetry")
    if not args.mqtt_config and spec.lower() == "embedded":
        from firmware_bridge.cli.version import NOT_INSTALLED, installed

        amqtt = installed("amqtt")
        if amqtt == NOT_INSTALLED:
            return Check("broker", "fail", "embedded broker chosen, but amqtt is not installed")
        return Check("broker", "info", f"run starts its own embedded broker (amqtt {amqtt})")
    try:
        settings = settings_from_args(args, spec or DEFAULT_MQTT)
    except ValueError as exc:  # BrokerURLError, a bad prefix: one line already
        return Check("broker", "fail", str(exc))
    where = settings.display
    try:
        async with asyncio.timeout(TCP_TIMEOUT_S):
            _, writer = await asyncio.open_connection(settings.host, settings.port)
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    except socket.gaierror as exc:
        return Check("broker", "fail", f"{where}: cannot resolve {settings.host} ({exc.strerror})")
    except (TimeoutError, OSError) as exc:
        why = (
            "connection refused"
            if isinstance(exc, ConnectionRefusedError)
            else (
                f"no answer within {TCP_TIMEOUT_S:g} s"
                if isinstance(exc, TimeoutError)
                else exc.strerror or str(exc)
            )
        )
        return Check("broker", "warn", f"no broker at {where} ({why}): {NO_BROKER}")
    from firmware_bridge.telemetry.mqtt import MqttError, make_client

    try:
        async with asyncio.timeout(MQTT_TIMEOUT_S):
            async with make_client(settings, identifier=f"massager-doctor-{secrets.token_hex(4)}"):
                pass
    except TimeoutError:
        problem = f"no MQTT answer within {MQTT_TIMEOUT_S:g} s (not a broker? TLS expected?)"
        return Check("broker", "fail", f"{where}: {problem}")
    except (MqttError, OSError) as exc:
        advice = "check mqtt_username/mqtt_password, the CA file and the URL's scheme"
        return Check("broker", "fail", f"{where} refused the MQTT connection ({exc}); {advice}")
    return Check("broker", "ok", f"{where}: MQTT connect accepted")


def _writable(path: Path) -> str | None:
    """None if a file can be created in `path`, else why not (a real try, not os.access)."""
    try:
        handle, name = tempfile.mkstemp(dir=path, prefix=".massager-doctor-")
    except OSError as exc:
        return exc.strerror or str(exc)
    os.close(handle)
    os.unlink(name)
    return None


def check_data_dir() -> Check:
    from firmware_bridge.journal import ENV_DATA_DIR, data_dir

    path = data_dir()
    elsewhere = f"fix it or set {ENV_DATA_DIR}"
    if not path.exists():
        parent = next(p for p in path.parents if p.exists())
        if parent.is_dir() and _writable(parent) is None:
            return Check("data-dir", "ok", f"{path} will be created (0700) by the first session")
        return Check("data-dir", "fail", f"{path} cannot be created under {parent}: {elsewhere}")
    if not path.is_dir():
        return Check("data-dir", "fail", f"{path} is not a directory: no journal; {elsewhere}")
    problem = _writable(path)
    if problem is not None:
        return Check(
            "data-dir", "fail", f"{path} is not writable ({problem}): no journal; {elsewhere}"
        )
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        return Check(
            "data-dir",
            "warn",
            f"{path} is mode {mode:04o}: others may read your sessions; chmod 700 {path}",
        )
    return Check("data-dir", "ok", f"{path} (0700, writable)")


def check_config() -> Check:
    from firmware_bridge.cli.settings import ConfigError, config_path, load, readable_secret

    try:
        config = load()
    except ConfigError as exc:
        return Check("config", "fail", f"{exc} (run, monitor and stop refuse to start)")
    if not config.found:
        return Check("config", "ok", f"no {config_path()}: built-in defaults")
    if readable_secret(config):
        return Check(
            "config",
            "warn",
            f"{config.path} holds an MQTT password and other users "
            f"may read it: chmod 600 {config.path}",
        )
    count = f"{len(config.file)} setting{'s' * (len(config.file) != 1)}"
    return Check("config", "ok", f"{config.path}: {count}, all valid")


def check_report() -> Check:
    from firmware_bridge.cli.version import installed

    if importlib.util.find_spec("matplotlib") is None:  # found without importing it (slow)
        advice = "reports need it: pip install 'firmware-bridge[report]'"
        return Check("report", "info", f"matplotlib is not installed; {advice}")
    return Check("report", "ok", f"matplotlib {installed('matplotlib')}")


def check_mosquitto() -> Check:
    found = shutil.which("mosquitto") or shutil.which("mosquitto", path=_SBIN)
    if found is None:
        return Check(
            "mosquitto",
            "info",
            "not installed (optional, a broker for monitor and stop): apt install mosquitto",
        )
    return Check("mosquitto", "ok", found)


async def run_checks(args: argparse.Namespace) -> list[Check]:
    """Every check not skipped, in CHECKS order; the two that wait run side by side."""
    skip = set(args.skip)
    found: dict[str, Check] = {}
    async with asyncio.TaskGroup() as tasks:
        waits = {}
        if "bluetooth" not in skip:
            waits["bluetooth"] = tasks.create_task(check_bluetooth(args.hci), name="bluetooth")
        if "broker" not in skip:
            waits["broker"] = tasks.create_task(check_broker(args), name="broker")
        plain = {
            "python": check_python,
            "data-dir": check_data_dir,
            "config": check_config,
            "report": check_report,
            "mosquitto": check_mosquitto,
        }
        found |= {name: check() for name, check in plain.items() if name not in skip}
    found |= {name: task.result() for name, task in waits.items()}
    return [found[name] for name in CHECKS if name in found]


def doctor_command(args: argparse.Namespace) -> int:
    checks = asyncio.run(run_checks(args))
    failed = any(check.status == "fail" for check in checks)
    if args.json:
        print(json.dumps({"ok": not failed, "checks": [asdict(check) for check in checks]}))
    else:
        for check in checks:
            line = f"{check.status:5} {check.name:10} {check.message}"
            if sys.stdout.isatty():  # a person reading: folded; a pipe or a log: one line each
                line = textwrap.fill(line, WIDTH, subsequent_indent=" " * 17)
            print(line, flush=True)
    return EXIT_FAULT if failed else EXIT_OK


def add_doctor_command(commands: Any) -> None:
    doctor = commands.add_parser(
        "doctor",
        help="check Bluetooth, broker, data dir and config; say what to fix",
        description="Check what sessions need, one line each: ok, info, warn or fail, with "
        "what to do. Checks: " + ", ".join(CHECKS) + ". Bluetooth and the broker are given "
        f"{BLUETOOTH_TIMEOUT_S:g} s at most.",
        epilog=epilog(
            [
                "massager doctor",
                "massager doctor --mqtt mqtts://broker.lan --mqtt-ca ca.pem",
                "massager doctor --hci usb:0",
                "massager doctor --skip bluetooth --json",
            ],
            [
                ("0", "no check failed (warnings and notes allowed)"),
                ("1", "a check failed"),
                BAD_INPUT,
                INTERRUPTED,
            ],
        ),
    )
    doctor.add_argument("--json", action="store_true", help="one JSON object")
    doctor.add_argument(
        "--hci", metavar="MONIKER", help="check this bumble HCI transport (e.g. usb:0) instead"
    )
    doctor.add_argument(
        "--skip", action="append", default=[], choices=CHECKS, metavar="CHECK",
        help="leave a check out (repeatable): " + ", ".join(CHECKS),
    )  # fmt: skip
    add_broker_arguments(
        doctor,
        url_help=f"broker to check (default: mqtt from the config, else {DEFAULT_MQTT}); "
        "embedded and off are reported, not checked",
    )
    doctor.set_defaults(handler=doctor_command)


__all__ = ["CHECKS", "Check", "add_doctor_command", "doctor_command", "run_checks"]
