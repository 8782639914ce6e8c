"""Two real processes on one machine: `massager sim serve` (the device) and `massager run` (the
controller) over bumble's TCP HCI on loopback. No mocks: SIGKILL one, read what the other did.

Used by tests/sim/test_two_process.py and bench/two_process.py.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

# Timing constants, all in seconds of wall-clock time.
PORT_WAIT_S = 20.0  # `sim serve` start → port printed: imports bumble (~1 s idle, more loaded)
RUNNING_WAIT_S = 40.0  # `run` start → non-zero levels at the motors: imports (~2 s), scan,
# connect and handshake (~1 s idle); generous for a loaded two-core machine
EXIT_WAIT_S = 20.0  # any process asked to end (SIGINT) is given this long before SIGKILL
POLL_S = 0.005  # how often a file is re-read while waiting: well under the figures measured
SETUP_TIMEOUT_S = 30.0  # `massager setup --none-apply` (no device: imports and one file)
WATCHDOG_S = 1.5  # the device's watchdog as the controller sets it (firmware_bridge.device.link)
HEARTBEAT_S = 0.5  # the controller's longest gap between frames while output is on (link.py)
SETTLE_S = 1.0  # non-zero levels → kill: heartbeats flowing at a steady level, not just the set

# A profile at a steady level from its first second (heel-spur ramps from zero: its first
# non-zero level comes about 15 s in at a first session's 25 % ceiling), then the cool-down
# every profile must end with.
HOLD_PROFILE = """\
name = "hold"
title = "Steady hold (two-process tests)"

[[segments]]
kind = "steady"
duration_s = 120
level = 0.8

[[segments]]
kind = "ramp"
duration_s = 30
start = 0.3
end = 0.0
cool_down = true
"""
PERSON = "two-process"
SIM_NAME = "FootMassager-SIM"  # what `sim serve` advertises by default
_PORT = re.compile(r"--hci tcp-client:127\.0\.0\.1:(\d+)")


@dataclass
class Process:
    popen: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path

    def kill(self) -> float:
        """SIGKILL it; returns the wall-clock time just before the signal was sent."""
        killed_at = time.time()
        self.popen.send_signal(signal.SIGKILL)
        return killed_at

    def end(self) -> int:
        """Ctrl-C, then SIGKILL if it does not go; returns its exit code."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGINT)
            try:
                self.popen.wait(EXIT_WAIT_S)
            except subprocess.TimeoutExpired:
                self.popen.kill()
        return self.popen.wait(EXIT_WAIT_S)


@dataclass
class Sim(Process):
    port: int
    record: Path


def environment(workdir: Path) -> dict[str, str]:
    """The caller's environment with a private data directory and no config file."""
    return os.environ | {
        "MASSAGER_DATA_DIR": str(workdir / "data"),
        "MASSAGER_CONFIG": str(workdir / "no-config.toml"),
        "PYTHONUNBUFFERED": "1",
    }


def massager(workdir: Path, name: str, *args: str) -> Process:
    """Start `massager ARGS` with stdout and stderr going to files in `workdir`."""
    out, err = workdir / f"{name}.out", workdir / f"{name}.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        popen = subprocess.Popen(
            [sys.executable, "-m", "firmware_bridge", *args],
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            env=environment(workdir),
            cwd=workdir,
        )
    return Process(popen, out, err)


def wait_until(check: Callable[[], T | None], timeout_s: float, what: str) -> T:
    """Poll `check` until it returns something; AssertionError naming `what` after timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = check()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout_s:g} s for {what}")
        time.sleep(POLL_S)


def records(path: Path) -> list[dict[str, Any]]:
    """The record's complete lines (a line still being written is left out)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines(keepends=True) if line.endswith("\n")]


def start_sim(workdir: Path, *extra: str, verbose: bool = False) -> Sim:
    """`massager sim serve --record FILE`; returns once it has printed its port."""
    record = workdir / "record.jsonl"
    args = ("-v",) * verbose + ("sim", "serve", "--record", str(record), *extra)
    process = massager(workdir, "sim", *args)

    def port() -> int | None:
        if process.popen.poll() is not None:
            raise AssertionError(f"sim serve ended: {process.stderr.read_text()}")
        match = _PORT.search(process.stderr.read_text(encoding="utf-8"))
        return int(match.group(1)) if match else None

    return Sim(
        process.popen, process.stdout, process.stderr, wait_until(port, PORT_WAIT_S, "port"), record
    )


def start_controller(workdir: Path, port: int, *extra: str) -> Process:
    """A screened person, then `massager run hold.toml --hci tcp-client:...:PORT --json`."""
    profile = workdir / "hold.toml"
    profile.write_text(HOLD_PROFILE, encoding="utf-8")
    subprocess.run(
        [sys.executable, "-m", "firmware_bridge", "setup", "--person", PERSON, "--none-apply"],
        env=environment(workdir),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=SETUP_TIMEOUT_S,
        check=True,
    )
    return massager(
        workdir,
        "controller",
        "run",
        str(profile),
        "--hci",
        f"tcp-client:127.0.0.1:{port}",
        "--json",
        "--mqtt",
        "off",
        "--person",
        PERSON,
        "--name",  # found as soon as it is seen (without: a scan that settles first)
        SIM_NAME,
        *extra,  # last wins: may name another device
    )


def running(sim: Sim, after: int = 0) -> dict[str, Any]:
    """Wait for non-zero levels in the record after its first `after` lines; returns that line."""
    return wait_until(
        lambda: next((r for r in records(sim.record)[after:] if any(r["levels"])), None),
        RUNNING_WAIT_S,
        "non-zero levels in the record",
    )


@dataclass
class KilledController:
    kill_to_zero_s: float  # SIGKILL → the device's own record of zero (its timestamp)
    kill_to_seen_s: float  # SIGKILL → this process read that line in the record file
    zero: dict[str, Any]  # the record line of the zero
    after: list[dict[str, Any]]  # every record line after the kill


def kill_controller(sim: Sim, workdir: Path) -> KilledController:
    """Scenario (a): start a controller on `sim`, let output run, SIGKILL the controller.

    The kill lands at a random point of the heartbeat cycle: a fixed wait after the first
    non-zero level would always kill just after a heartbeat (they are due every 0.5 s from
    that write), and kill → zero would always read 1.5 s.
    """
    settle_s = SETTLE_S + random.uniform(0.0, HEARTBEAT_S)
    start = len(records(sim.record))
    controller = start_controller(workdir, sim.port)
    try:
        try:
            running(sim, start)
        except AssertionError as exc:
            tail = controller.stderr.read_text(encoding="utf-8")[-2000:]
            raise AssertionError(f"{exc}; the controller said:\n{tail}") from None
        time.sleep(settle_s)
        before = len(records(sim.record))
        killed_at = controller.kill()
        controller.popen.wait(EXIT_WAIT_S)

        def zeroed() -> tuple[dict[str, Any], float] | None:
            for line in records(sim.record)[before:]:
                if not any(line["levels"]):
                    return line, time.time()
            return None

        zero, seen_at = wait_until(zeroed, WATCHDOG_S + 10.0, "zero in the record")
    finally:
        if controller.popen.poll() is None:
            controller.popen.kill()
            controller.popen.wait(EXIT_WAIT_S)
    return KilledController(
        zero["ts"] - killed_at, seen_at - killed_at, zero, records(sim.record)[before:]
    )


@dataclass
class KilledSimulator:
    kill_to_exit_s: float  # SIGKILL of the simulator → the controller process has exited
    returncode: int
    summary: dict[str, Any]  # the controller's --json summary
    stderr: str


def kill_simulator(workdir: Path) -> KilledSimulator:
    """Scenario (b): a session on a fresh simulator, then SIGKILL the simulator."""
    sim = start_sim(workdir)
    controller: Process | None = None
    try:
        controller = start_controller(workdir, sim.port)
        running(sim)
        time.sleep(1.0)  # mid-session: heartbeats and STATUS flowing
        killed_at = sim.kill()
        sim.popen.wait(EXIT_WAIT_S)
        code = wait_until(controller.popen.poll, EXIT_WAIT_S, "the controller to exit")
        exited_at = time.time()
        stdout = controller.stdout.read_text(encoding="utf-8")
        return KilledSimulator(
            exited_at - killed_at,
            code,
            json.loads(stdout) if stdout.strip() else {},
            controller.stderr.read_text(encoding="utf-8"),
        )
    finally:
        for process in (controller, sim):
            if process is not None and process.popen.poll() is None:
                process.popen.kill()
                process.popen.wait(EXIT_WAIT_S)
