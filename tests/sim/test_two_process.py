"""`massager sim serve` as a separate device: real processes, real bumble HCI over loopback TCP.

Kill the controller: the device's own watchdog zeroes the motors. Kill the device: the controller
ends with `link_lost`, one clear line, exit 1. Plus the record file and fault-plan errors.
"""

from __future__ import annotations

import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from firmware_bridge.cli import build_parser
from firmware_bridge.cli.sim_cmd import fault_plan
from firmware_bridge.protocol import FrameType, ScaledClock, SetIntensity, Stop, encode
from sim.faultplan import FaultPlanError, load_fault_plan
from sim.firmware import FaultPlan, Firmware
from sim.record import LevelRecorder
from tests.sim.two_process import (
    HEARTBEAT_S,
    WATCHDOG_S,
    environment,
    kill_controller,
    kill_simulator,
    records,
    running,
    start_controller,
    start_sim,
    wait_until,
)

# The device zeroes at (last valid frame + watchdog). The last frame came at most one heartbeat
# before the kill, so kill → zero lies in [WATCHDOG_S - HEARTBEAT_S, WATCHDOG_S] on paper.
# Margins: a frame written just before the kill may reach the device's loop a little later
# (and so restarts the watchdog later): 0.25 s covers a stalled loop on a loaded two-core
# machine (runtime.MIN_REAL_WATCHDOG_S's comment: stalls of more than 250 ms were seen in CI,
# hence the generous side); 0.05 s below for timestamp rounding and clock reads.
ZERO_AFTER_KILL_MAX_S = WATCHDOG_S + 0.25
ZERO_AFTER_KILL_MIN_S = WATCHDOG_S - HEARTBEAT_S - 0.05
SEEN_AFTER_KILL_MAX_S = WATCHDOG_S + 1.0  # a reader tailing the file: + loop stall + polling
# Kill the device → controller exited: measured 0.3-0.5 s (bench/README.md). Bound: the link
# loss is seen at once (the TCP transport closes); the disconnect that follows is bounded by
# DISCONNECT_TIMEOUT_S (2 s); the journal, summary and interpreter exit ~1 s on a loaded machine.
CONTROLLER_EXIT_MAX_S = 5.0
CLI_TIMEOUT_S = 30.0  # a one-line error needs imports only
SCAN_S = 3.0  # --scan-timeout of the controller that never finds its device (s)
SCANNING_S = 0.5  # client connected → powered on and scanning: HCI reset and setup take ms


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "firmware_bridge", *args],
        env=environment(tmp_path),
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )


@pytest.mark.timeout(120)
def test_killed_controller_the_device_watchdog_zeroes_the_motors(tmp_path: Path) -> None:
    sim = start_sim(tmp_path)
    try:
        killed = kill_controller(sim, tmp_path)
        assert killed.zero["cause"] == "watchdog", killed.after
        assert ZERO_AFTER_KILL_MIN_S <= killed.kill_to_zero_s <= ZERO_AFTER_KILL_MAX_S, killed
        assert killed.kill_to_seen_s <= SEEN_AFTER_KILL_MAX_S, killed
        # Nothing else moved the motors after the kill: the zero is the first change, and last.
        assert killed.after == [killed.zero]
        # The killed client's link ended at the device (supervision timeout): it advertises
        # again, and a new controller can run a session on the same simulator.
        second = tmp_path / "second"
        second.mkdir()
        again = kill_controller(sim, second)
        assert again.zero["cause"] == "watchdog"
    finally:
        assert sim.end() == 0  # Ctrl-C ends the simulator cleanly
    assert "Traceback" not in sim.stderr.read_text()


@pytest.mark.timeout(120)
def test_killed_simulator_the_controller_ends_link_lost_in_one_line(tmp_path: Path) -> None:
    killed = kill_simulator(tmp_path)
    assert killed.summary.get("stop_reason") == "link_lost", killed.stderr
    assert killed.returncode == 1
    assert killed.kill_to_exit_s <= CONTROLLER_EXIT_MAX_S, killed
    assert "Traceback" not in killed.stderr
    said = [line for line in killed.stderr.splitlines() if "went away" in line]
    assert len(said) == 1, killed.stderr
    assert "--hci tcp-client:127.0.0.1:" in said[0]


@pytest.mark.timeout(60)
def test_killed_simulator_while_the_controller_scans_is_one_line_not_a_traceback(
    tmp_path: Path,
) -> None:
    """The device dies before a session: no HCI command waits out bumble's 10 s, no traceback."""
    sim = start_sim(tmp_path, verbose=True)  # -v: the simulator says when a client connects
    # A name nobody advertises: the controller keeps scanning for SCAN_S.
    controller = start_controller(
        tmp_path, sim.port, "--name", "NoSuchMassager", "--scan-timeout", str(SCAN_S)
    )
    try:
        wait_until(lambda: "HCI client" in sim.stderr.read_text() or None, 30.0, "a client")
        time.sleep(SCANNING_S)
        killed_at = sim.kill()
        sim.popen.wait(10)
        code = controller.popen.wait(30)
        took = time.time() - killed_at
    finally:
        for process in (controller, sim):
            if process.popen.poll() is None:
                process.popen.kill()
                process.popen.wait(10)
    stderr = controller.stderr.read_text()
    assert code == 1
    assert "Traceback" not in stderr, stderr
    assert [line for line in stderr.splitlines() if "went away" in line], stderr
    # The scan runs out (SCAN_S at most), then exit: no 10 s wait on an HCI command.
    assert took <= SCAN_S + 3.0, stderr


def test_record_lines_are_json_user_only_and_written_at_once(tmp_path: Path) -> None:
    path = tmp_path / "levels.jsonl"
    path.write_text("old\n")
    path.chmod(0o644)  # an existing file is truncated and made user-only
    firmware = Firmware()
    clock = ScaledClock()
    with LevelRecorder(path, firmware, clock):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        first = records(path)
        assert [(r["levels"], r["cause"]) for r in first] == [([0, 0, 0], "power_on")]
        firmware.receive(encode(SetIntensity((3, 2, 1)), 1), clock.now())
        # Read by another file handle before the recorder is closed: no buffer in between.
        assert records(path)[-1]["levels"] == [3, 2, 1]
        firmware.press_button(clock.now())
        firmware.receive(encode(Stop(), 2), clock.now())  # no change: no line
    lines = records(path)
    assert [(r["levels"], r["cause"]) for r in lines] == [
        ([0, 0, 0], "power_on"),
        ([3, 2, 1], "set"),
        ([0, 0, 0], "button"),
    ]
    for line in lines:
        assert set(line) >= {"ts", "levels", "cause"}
        assert isinstance(line["ts"], float)
        assert abs(line["ts"] - first[0]["ts"]) < 5.0  # Unix time, all within this test
    assert firmware.on_applied is None  # closed: the hook is gone


@pytest.mark.timeout(60)
def test_sim_serve_record_file_from_the_command(tmp_path: Path) -> None:
    sim = start_sim(tmp_path)
    try:
        assert stat.S_IMODE(sim.record.stat().st_mode) == 0o600
        (line,) = records(sim.record)
        assert line["levels"] == [0, 0, 0]
        assert line["cause"] == "power_on"
        assert isinstance(line["ts"], float)
    finally:
        assert sim.end() == 0
    stderr = sim.stderr.read_text().splitlines()
    assert len(stderr) == 1
    assert stderr[0].startswith("controller side: massager run heel-spur --hci tcp-client:")
    assert len(stderr[0]) <= 80


@pytest.mark.parametrize(
    ("content", "field"),
    [
        ("drop_notifications = 0.1\n", "drop_notifications"),  # unknown key
        ('drop_notify = "often"\n', "drop_notify"),  # wrong type
        ("drop_notify = 1.5\n", "drop_notify"),  # out of range
        ("mute_at_s = -1\n", "mute_at_s"),
        ("no_watchdog = 1\n", "no_watchdog"),
        ('nack_types = ["SET_NOTHING"]\n', "nack_types"),
        ("seed = 1.5\n", "seed"),
    ],
)
def test_bad_fault_plan_is_one_line_naming_file_and_field(
    tmp_path: Path, content: str, field: str
) -> None:
    plan = tmp_path / "faults.toml"
    plan.write_text(content)
    result = _cli(tmp_path, "sim", "serve", "--fault-plan", str(plan), "--port", "1")
    assert result.returncode == 2
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"massager: error: {plan}: {field}: ")


def test_fault_plan_file_that_is_not_toml_or_not_there(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("drop_notify = \n")
    for path in (broken, tmp_path / "missing.toml"):
        result = _cli(tmp_path, "sim", "serve", "--fault-plan", str(path))
        assert result.returncode == 2
        (line,) = result.stderr.splitlines()
        assert line.startswith(f"massager: error: {path}: ")


def test_fault_plan_file_fields_and_flags_on_top(tmp_path: Path) -> None:
    path = tmp_path / "faults.toml"
    path.write_text(
        "drop_notify = 0.25\nmute_at_s = 30\nno_watchdog = true\n"
        'nack_types = ["set_timer"]\nseed = 7\n'
    )
    assert load_fault_plan(path) == FaultPlan(
        drop_notify=0.25,
        mute_at_s=30.0,
        no_watchdog=True,
        nack_types=frozenset({FrameType.SET_TIMER}),
        seed=7,
    )
    path.write_text("[drop_notify]\n")
    with pytest.raises(FaultPlanError, match="drop_notify: a number"):
        load_fault_plan(path)

    path.write_text("drop_notify = 0.25\nmute_at_s = 30\n")
    args = build_parser().parse_args(
        ["sim", "serve", "--fault-plan", str(path), "--mute-at", "5", "--disconnect-at", "9"]
    )
    assert fault_plan(args) == FaultPlan(drop_notify=0.25, mute_at_s=5.0, disconnect_at_s=9.0)


def test_record_to_an_unwritable_place_is_one_line(tmp_path: Path) -> None:
    result = _cli(tmp_path, "sim", "serve", "--record", str(tmp_path / "no" / "such" / "f"))
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith("massager: error: --record ")


def test_sim_without_subcommand_is_help_and_the_old_spelling_still_parses(
    tmp_path: Path,
) -> None:
    result = _cli(tmp_path, "sim")
    assert result.returncode == 0
    assert "serve" in result.stdout
    old = build_parser().parse_args(["sim", "--hci", "usb:0", "--no-watchdog"])
    assert (old.hci, old.no_watchdog, old.port, old.record) == ("usb:0", True, None, None)
    new = build_parser().parse_args(["sim", "serve", "--port", "9000", "--speed", "2"])
    assert (new.hci, new.port, new.speed) == (None, 9000, 2.0)
    for bad in (["--port", "70000"], ["--speed", "0"], ["--drop-notify", "2"]):
        result = _cli(tmp_path, "sim", "serve", *bad)
        assert result.returncode == 2
        assert len(result.stderr.splitlines()) == 1
    result = _cli(tmp_path, "sim", "serve", "--hci", "usb:0", "--port", "9000")
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1


@pytest.mark.timeout(120)
def test_a_killed_controller_leaves_an_impersonated_model_with_a_timeout_at_zero(
    tmp_path: Path,
) -> None:
    """`sim serve --as serial-bytes`: a model that stops itself 2 s after the last write, kept
    alive by the controller's keep-alive; SIGKILL the controller and its own timeout acts."""
    sim = start_sim(tmp_path, "--as", "serial-bytes")
    try:
        said = sim.stderr.read_text(encoding="utf-8")
        assert "--name FM3-SIM" in said  # a described device is only used when named
        controller = start_controller(tmp_path, sim.port, "--name", "FM3-SIM")
        on = running(sim)
        assert len(on["levels"]) == 3  # the model's three motors, not protocol v1's zones
        time.sleep(2.5)  # longer than the model's own 2 s timeout: the keep-alive holds it
        assert all(any(r["levels"]) for r in records(sim.record) if r["t"] >= on["t"])
        killed_at = controller.kill()
        controller.popen.wait(5)
        zero = wait_until(
            lambda: next((r for r in records(sim.record) if r["ts"] > killed_at), None),
            10.0,
            "the model's own timeout",
        )
        assert zero["cause"] == "watchdog"
        assert not any(zero["levels"])
        assert zero["ts"] - killed_at <= 2.0 + 0.25  # its timeout, + a stalled loop's margin
    finally:
        assert sim.end() == 0
