"""The `massager` command: the documented contract, bad input, and signals to a real process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from firmware_bridge.cli import main
from firmware_bridge.telemetry.mqtt import BrokerSettings
from tests.brokers import Mosquitto

GOOD_PROFILE = """
name = "mine"
title = "Mine"
[[segments]]
kind = "steady"
duration_s = 60
level = 0.5
[[segments]]
kind = "ramp"
duration_s = 30
start = 0.2
end = 0.0
cool_down = true
"""


def massager(*args: str) -> subprocess.Popen[str]:
    """`python -m firmware_bridge ...` as a real process, no stdin (like CI)."""
    return subprocess.Popen(
        [sys.executable, "-m", "firmware_bridge", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def broken(tmp_path: Path, name: str, text: str | bytes) -> str:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return str(path)


@pytest.fixture
def huge_file(tmp_path: Path) -> str:
    path = tmp_path / "huge.toml"
    with path.open("wb") as handle:
        handle.truncate(100 * 1024 * 1024)
    return str(path)


BAD_FLAGS = [
    (["run"], "the following arguments are required: profile"),
    (["run", "heel-spur", "--cap", "11"], "--cap must be 0-10, got 11"),
    (["run", "heel-spur", "--cap", "lots"], "--cap must be a number, got 'lots'"),
    (["run", "heel-spur", "--sim", "--speed", "0"], "--speed must be 0.1-1000"),
    (["run", "heel-spur", "--speed", "10"], "--speed needs --sim"),
    (["run", "heel-spur", "--sim", "--max-minutes", "31"], "--max-minutes must be 0.1-30"),
    (["run", "heel-spur", "--sim", "--address", "AA:BB"], "--sim cannot be combined"),
    (["run", "heel-spur", "--bogus"], "unrecognized arguments: --bogus"),
    (
        ["run", "heel-spur", "--mqtt-pasword", "secret-pw"],
        "unrecognized arguments: --mqtt-pasword …",
    ),
    (["run", "heel-spur", "--mqtt-pasword=secret-pw"], "unrecognized arguments: --mqtt-pasword"),
    (["run", "heel-spur", "--mqtt-pasword", "-secret-pw"], "unrecognized arguments: --mqtt-p"),
    (["run", "heel-spur", "--mqtt-=secret-pw"], "ambiguous option: --mqtt-=…"),
    (["run", "no-such-profile", "--sim"], "no built-in profile of that name"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["run", "relax", "--sim", "--mqtt", "ftp://host"], "scheme must be mqtt:// or mqtts://"),
    (["run", "relax", "--sim", "--mqtt", "mqtt://u:secret@host:99999"], "bad port"),
    (["run", "relax", "--sim", "--mqtt-ca", "/nonexistent.pem", "--mqtt", "mqtts://h"], "no such"),
    (["run", "relax", "--sim", "--telemetry-hz", "0"], "--telemetry-hz must be 1-50"),
    (["run", "relax", "--sim", "--device-id", "a/b"], "--device-id 'a/b'"),
    (["run", "relax", "--sim", "--mqtt-config", "/nonexistent.toml"], "cannot read MQTT settings"),
    (["run", "relax", "--sim", "--sim-as", "nope"], "--sim-as nope: no device description"),
    (["run", "relax", "--sim-as", "uart-text"], "--sim-as needs --sim"),
]


@pytest.mark.parametrize(("argv", "message"), BAD_FLAGS, ids=[" ".join(a) for a, _ in BAD_FLAGS])
def test_bad_flags_exit_2_with_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    err = capsys.readouterr().err
    assert code == 2
    errors = [line for line in err.splitlines() if "error" in line]
    assert len(errors) == 1, err
    assert message in errors[0]
    assert "Traceback" not in err
    assert "secret" not in err  # a password in a URL is never echoed back


PROFILE_CASES = [
    ("wrong-type.toml", GOOD_PROFILE.replace("level = 0.5", 'level = "loud"'), "segments[0].level"),
    ("range.toml", GOOD_PROFILE.replace("level = 0.5", "level = 2"), "must be between 0 and 1"),
    ("kind.toml", GOOD_PROFILE.replace('"steady"', '"wiggle"'), "unknown segment kind 'wiggle'"),
    ("zone.toml", GOOD_PROFILE.replace("level = 0.5", 'level = 0.5\nzones = ["toes"]'), "zones[0]"),
    ("empty.toml", "", "name: field required"),
    ("not.toml", "this is { not toml", "not valid TOML"),
    ("binary.toml", b"\x00\xff\xfe\x01", "not UTF-8"),
]


@pytest.mark.parametrize(
    ("name", "text", "message"), PROFILE_CASES, ids=[c[0] for c in PROFILE_CASES]
)
@pytest.mark.parametrize("command", ["validate", "run"])
def test_bad_profiles_exit_2_naming_file_and_field(
    tmp_path: Path,
    name: str,
    text: str | bytes,
    message: str,
    command: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = broken(tmp_path, name, text)
    argv = ["profiles", "validate", path] if command == "validate" else ["run", path, "--sim"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"massager: error: {name}: " in err
    assert message in err
    assert "Traceback" not in err


def test_a_100_mb_profile_is_refused_quickly(
    huge_file: str, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.monotonic()
    assert main(["profiles", "validate", huge_file]) == 2
    assert time.monotonic() - started < 1.0
    assert "a profile is at most" in capsys.readouterr().err


def test_profiles_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profiles", "list"]) == 0
    listing = capsys.readouterr().out
    for name in ("heel-spur", "relax", "lymphatic", "zone-walk", "maintenance"):
        assert name in listing
    assert main(["profiles", "show", "heel-spur"]) == 0
    assert "rib strikes" in capsys.readouterr().out
    assert main(["profiles", "validate", broken(tmp_path, "mine.toml", GOOD_PROFILE)]) == 0
    assert "ok (mine, 1.5 min)" in capsys.readouterr().out


@pytest.mark.timeout(90)
def test_readme_first_command_completes_at_speed_with_a_json_summary() -> None:
    proc = massager("run", "heel-spur", "--sim", "--speed", "60", "--json")
    out, err = proc.communicate(timeout=80)
    assert proc.returncode == 0, err
    summary = json.loads(out)
    assert summary["profile"] == "heel-spur"
    assert summary["stop_reason"] == "completed"
    assert summary["duration_s"] == pytest.approx(870, abs=2)
    assert summary["cap"] == 4  # the default cap: "moderate, never severe"
    assert 0 < summary["max_intensity"] <= 0.4
    assert {"events", "cap", "duration_s"} <= summary.keys()
    assert summary["sim"]["final_levels"] == [0, 0, 0]
    assert "not a medical device" in err  # the notice is always shown


def test_without_a_terminal_progress_is_one_plain_line_per_segment() -> None:
    proc = massager("run", "maintenance", "--sim", "--sim-tier", "memory", "--speed", "200")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "00:00 segment warm-up" in err
    assert "01:00 segment small pinches" in err
    assert "\x1b" not in out + err  # no terminal control codes in a log
    assert "Session completed" in out


@pytest.mark.parametrize(
    "sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=["SIGINT", "SIGTERM", "SIGHUP"]
)
@pytest.mark.parametrize("tier", ["bumble", "memory"])
def test_signal_is_a_clean_user_stop_that_zeroes_the_device(sig: signal.Signals, tier: str) -> None:
    proc = massager("run", "heel-spur", "--sim", "--sim-tier", tier, "--speed", "20", "--json")
    assert proc.stderr is not None
    deadline = time.monotonic() + 20
    for line in proc.stderr:
        if line.startswith("Playing heel-spur"):
            break
        assert time.monotonic() < deadline
    time.sleep(2.5)  # ~50 session-seconds into the warm-up ramp: output is clearly non-zero
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    summary = json.loads(out)
    assert summary["stop_reason"] == "user_stop"
    assert summary["max_intensity"] > 0  # it was running
    assert summary["sim"]["final_levels"] == [0, 0, 0]
    assert summary["sim"]["last_change"] == "stop"  # zero written by the stop, not by the profile
    assert summary["stop_confirmed"] is True
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "argv", [["run", "relax", "--scan-timeout", "0.5"], ["scan", "--timeout", "0.5"]]
)
def test_no_device_or_no_bluetooth_is_one_line(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    # Here there is no Bluetooth stack at all; on a machine with one, nothing answers the scan.
    # Either way: one line, no traceback, exit 1 for run (scan reports an empty result or error).
    if argv[0] == "run":  # past the screening gate (the user's own, in a private data dir)
        assert main(["setup", "--none-apply"]) == 0
        capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err
    assert code in (0, 1) if argv[0] == "scan" else code == 1
    assert "Traceback" not in err
    if code:
        assert len([line for line in err.splitlines() if "massager: error:" in line]) == 1


DEEP = "[" * 3000 + "]" * 3000  # 6 KB; tomllib recurses once per level
HOSTILE_CONFIGS = [
    ("binary", b"\x00\xff\xfe\x01" * 64, "not UTF-8"),
    ("not-a-table", "mqtt = 5\n", "needs an [mqtt] table"),
    ("list-ca", '[mqtt]\nurl = "mqtt://h"\nca_file = ["a"]\n', "ca_file must be a"),
    ("number-password", '[mqtt]\nurl = "mqtt://h"\npassword = 12345\n', "password must be a"),
    ("typo", '[mqtt]\nurl = "mqtt://h"\npasword = "x"\n', "unknown key 'pasword'"),
    ("deep", f'[mqtt]\nurl = "mqtt://h"\nx = {DEEP}\n', "nested too deeply"),
    ("bad-url", '[mqtt]\nurl = "mqtt://[::1"\n', "not a valid URL"),
]


def _one_line_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    started = time.monotonic()
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    err = capsys.readouterr().err
    assert code == 2, err
    assert time.monotonic() - started < 5.0  # refused at once: no device, no broker touched
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("massager: error:")]
    assert len(errors) == 1, err
    assert "Playing" not in err  # before any session started
    return errors[0]


@pytest.mark.parametrize(
    ("name", "text", "message"), HOSTILE_CONFIGS, ids=[c[0] for c in HOSTILE_CONFIGS]
)
@pytest.mark.parametrize("command", ["run", "monitor", "stop"])
def test_hostile_mqtt_config_files_are_one_line(
    tmp_path: Path,
    name: str,
    text: str | bytes,
    message: str,
    command: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = broken(tmp_path, f"{name}.toml", text)
    argv = {
        "run": ["run", "relax", "--sim", "--mqtt-config", path],
        "monitor": ["monitor", "--once", "--mqtt-config", path],
        "stop": ["stop", "--all", "--mqtt-config", path],
    }[command]
    assert message in _one_line_exit_2(argv, capsys)


@pytest.mark.timeout(10)
@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "directory"])
def test_a_config_that_is_not_a_regular_file_never_hangs(
    tmp_path: Path, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "config.toml"
    if kind == "fifo":
        os.mkfifo(path)  # opening it for reading would wait for a writer forever
    elif kind == "directory":
        path.mkdir()
    else:
        path = Path("/dev/zero")  # read whole, it would fill memory
    line = _one_line_exit_2(["run", "relax", "--sim", "--mqtt-config", str(path)], capsys)
    assert "not a regular file" in line


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--mqtt", "mqtt://[::1"], "not a valid URL"),
        (["--mqtt", "mqtt://" + "a" * 300 + ":1883"], "host name is too long"),
        (["--mqtt", "mqtt://exa mple"], "is not valid"),
        (["--topic-prefix", "#"], "topic prefix '#'"),
        (["--topic-prefix", "a/+/b"], "topic prefix"),
    ],
)
def test_hostile_broker_flags_are_refused_before_the_device_connects(
    flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert message in _one_line_exit_2(["run", "relax", "--sim", *flags], capsys)


def test_a_deeply_nested_profile_is_one_line_in_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = broken(tmp_path, "deep.toml", f'name = "x"\nsegments = {DEEP}\n')
    assert "nested too deeply" in _one_line_exit_2(["run", path, "--sim"], capsys)


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "relax", "--hci", "usb:0"],
        ["run", "relax", "--hci", "serial:/dev/nonexistent"],
        ["run", "relax", "--hci", "tcp-client:127.0.0.1:1"],
        ["scan", "--hci", "tcp-client:127.0.0.1:1", "--timeout", "0.5"],
        ["scan", "--hci", "usb:0", "--timeout", "0.5"],
    ],
)
def test_an_hci_transport_that_will_not_open_is_one_line(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    if argv[0] == "run":  # past the screening gate (the user's own, in a private data dir)
        assert main(["setup", "--none-apply"]) == 0
        capsys.readouterr()
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("massager: error:")]
    assert len(errors) == 1, err
    assert f"--hci {argv[argv.index('--hci') + 1]}: " in errors[0]


def test_an_unusable_data_dir_with_mqtt_on_still_runs_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mosquitto: Mosquitto
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the data directory should be\n")
    monkeypatch.setenv("MASSAGER_DATA_DIR", str(blocker / "data"))
    proc = massager(
        "run", "relax", "--sim", "--sim-tier", "memory", "--speed", "200", "--json",
        "--max-minutes", "0.5", "--mqtt", mosquitto.url,
    )  # fmt: skip
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    summary = json.loads(out)
    assert summary["stop_reason"] == "timeout"
    assert summary["journal"] == "off"
    assert summary["sim"]["final_levels"] == [0, 0, 0]
    about_disk = [line for line in err.splitlines() if str(blocker) in line]
    assert len(about_disk) == 2, err  # the journal and the outbox: once each, not per line


def test_the_default_session_limit_is_15_minutes(tmp_path: Path) -> None:
    long = GOOD_PROFILE.replace("duration_s = 60", "duration_s = 1200")  # 20 minutes
    proc = massager(
        "run", broken(tmp_path, "long.toml", long), "--sim", "--sim-tier", "memory",
        "--speed", "600", "--json", "--mqtt", "off",
    )  # fmt: skip
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    summary = json.loads(out)
    assert summary["stop_reason"] == "timeout"
    assert summary["duration_s"] == pytest.approx(900, abs=3)


def test_a_config_file_with_a_password_others_can_read_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "mqtt.toml"
    path.write_text('[mqtt]\nurl = "mqtt://127.0.0.1:1883"\nusername = "u"\npassword = "pw"\n')
    path.chmod(0o644)
    BrokerSettings.from_config(path)
    assert "other users may read it; chmod 600 it" in caplog.text
    assert "pw" not in caplog.text.replace(str(tmp_path), "")
    caplog.clear()
    path.chmod(0o600)
    BrokerSettings.from_config(path)
    assert caplog.text == ""
    path.write_text('[mqtt]\nurl = "mqtt://u:pw@127.0.0.1:1883"\n')  # a password in the URL
    path.chmod(0o640)
    BrokerSettings.from_config(path)
    assert "other users may read it" in caplog.text
