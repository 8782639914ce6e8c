"""`massager doctor` against a real mosquitto, a dead port, a silent server and bad directories."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from firmware_bridge.cli import main
from firmware_bridge.cli.doctor import CHECKS
from firmware_bridge.telemetry.broker import LOOPBACK
from tests.brokers import Mosquitto, MosquittoFactory, free_port, mosquitto_bin

STATUSES = {"ok", "info", "warn", "fail"}


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A private data dir (0700) and no config unless a test writes one."""
    for name in list(os.environ):
        if name.startswith("MASSAGER_"):
            monkeypatch.delenv(name)
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    monkeypatch.setenv("MASSAGER_DATA_DIR", str(data))
    monkeypatch.setenv("MASSAGER_CONFIG", str(tmp_path / "config.toml"))


def doctor(capsys: pytest.CaptureFixture[str], *flags: str) -> tuple[int, dict[str, Any]]:
    """`massager doctor --json` (Bluetooth skipped unless asked for): exit code, checks by name."""
    skip = [] if "bluetooth" in flags or "--hci" in flags else ["--skip", "bluetooth"]
    argv = ["doctor", "--json", *skip, *(f for f in flags if f != "bluetooth")]
    code = main(argv)
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] == (code == 0)
    return code, {check["name"]: check for check in report["checks"]}


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that accepts TCP connections and never says a word (not an MQTT broker)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        sock.listen(8)  # the kernel completes handshakes for the backlog; nobody answers
        yield int(sock.getsockname()[1])


def test_a_running_broker_is_ok(mosquitto: Mosquitto, capsys: pytest.CaptureFixture[str]) -> None:
    code, checks = doctor(capsys, "--mqtt", mosquitto.url)
    assert checks["broker"]["status"] == "ok"
    assert f"127.0.0.1:{mosquitto.port}" in checks["broker"]["message"]
    assert code == 0


def test_the_configured_broker_is_the_one_checked(
    tmp_path: Path, mosquitto: Mosquitto, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "config.toml").write_text(f'mqtt = "{mosquitto.url}"\n')
    code, checks = doctor(capsys)
    assert checks["broker"]["status"] == "ok"
    assert f":{mosquitto.port}" in checks["broker"]["message"]
    assert checks["config"]["status"] == "ok"
    assert code == 0


def test_no_broker_is_a_warning_with_advice(capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    code, checks = doctor(capsys, "--mqtt", f"mqtt://127.0.0.1:{port}")
    broker = checks["broker"]
    assert broker["status"] == "warn"
    assert "connection refused" in broker["message"]
    assert "apt install mosquitto" in broker["message"]
    assert "--mqtt embedded" in broker["message"]
    assert code == 0  # a warning is not a failure


def test_a_broker_that_refuses_the_login_fails(
    mosquitto_factory: MosquittoFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    broker = mosquitto_factory(users={"ana": "s3cret-pw"})
    code, checks = doctor(capsys, "--mqtt", broker.url)
    assert checks["broker"]["status"] == "fail"
    assert "refused the MQTT connection" in checks["broker"]["message"]
    assert code == 1
    flags = ("--mqtt", broker.url, "--mqtt-username", "ana", "--mqtt-password", "s3cret-pw")
    code, checks = doctor(capsys, *flags)
    assert checks["broker"]["status"] == "ok"
    assert "s3cret" not in json.dumps(checks)
    assert code == 0


@pytest.mark.timeout(20)
def test_a_server_that_never_answers_mqtt_fails_within_the_timeout(
    silent_server: int, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.monotonic()
    code, checks = doctor(capsys, "--mqtt", f"mqtt://127.0.0.1:{silent_server}")
    assert time.monotonic() - started < 8.0
    assert checks["broker"]["status"] == "fail"
    assert "no MQTT answer within" in checks["broker"]["message"]
    assert code == 1


def test_mqtt_off_or_embedded_is_reported_not_checked(capsys: pytest.CaptureFixture[str]) -> None:
    _, checks = doctor(capsys, "--mqtt", "off")
    assert checks["broker"] == {
        "name": "broker",
        "status": "info",
        "message": "MQTT is off: run publishes no telemetry",
    }
    _, checks = doctor(capsys, "--mqtt", "embedded")
    assert checks["broker"]["status"] == "info"
    assert "embedded broker (amqtt" in checks["broker"]["message"]


def test_a_data_dir_others_can_read_is_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "data").chmod(0o755)
    code, checks = doctor(capsys, "--skip", "broker")
    assert checks["data-dir"]["status"] == "warn"
    assert "mode 0755" in checks["data-dir"]["message"]
    assert f"chmod 700 {tmp_path / 'data'}" in checks["data-dir"]["message"]
    assert code == 0


def test_a_private_data_dir_is_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, checks = doctor(capsys, "--skip", "broker")
    assert checks["data-dir"] == {
        "name": "data-dir",
        "status": "ok",
        "message": f"{tmp_path / 'data'} (0700, writable)",
    }


def test_a_data_dir_that_is_a_file_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the data directory should be\n")
    monkeypatch.setenv("MASSAGER_DATA_DIR", str(blocker))
    code, checks = doctor(capsys, "--skip", "broker")
    assert checks["data-dir"]["status"] == "fail"
    assert "is not a directory" in checks["data-dir"]["message"]
    assert code == 1
    monkeypatch.setenv("MASSAGER_DATA_DIR", str(blocker / "data"))  # cannot be created either
    code, checks = doctor(capsys, "--skip", "broker")
    assert checks["data-dir"]["status"] == "fail"
    assert code == 1


def test_a_data_dir_still_to_be_made_is_ok(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MASSAGER_DATA_DIR", str(tmp_path / "later" / "data"))
    _, checks = doctor(capsys, "--skip", "broker")
    assert checks["data-dir"]["status"] == "ok"
    assert "will be created (0700)" in checks["data-dir"]["message"]
    assert not (tmp_path / "later").exists()  # doctor looks, it does not make


def test_a_bad_config_fails_naming_file_and_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.toml"
    config.write_text("cap = 12\n")
    code, checks = doctor(capsys, "--skip", "broker")
    assert checks["config"]["status"] == "fail"
    assert checks["config"]["message"].startswith(f"{config}: cap: must be an integer 0-10")
    assert code == 1


def test_a_config_password_others_can_read_is_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.toml"
    config.write_text('mqtt_password = "pw"\n')
    config.chmod(0o644)
    _, checks = doctor(capsys, "--skip", "broker")
    assert checks["config"]["status"] == "warn"
    assert f"chmod 600 {config}" in checks["config"]["message"]
    config.chmod(0o600)
    _, checks = doctor(capsys, "--skip", "broker")
    assert checks["config"]["status"] == "ok"


def test_the_extras_and_mosquitto_are_reported(capsys: pytest.CaptureFixture[str]) -> None:
    _, checks = doctor(capsys, "--skip", "broker")
    if importlib.util.find_spec("matplotlib") is None:
        assert checks["report"]["status"] == "info"
        assert "pip install 'firmware-bridge[report]'" in checks["report"]["message"]
    else:
        assert checks["report"]["status"] == "ok"
    binary = mosquitto_bin()
    if binary is None:
        assert checks["mosquitto"]["status"] == "info"
        assert "apt install mosquitto" in checks["mosquitto"]["message"]
    else:
        assert checks["mosquitto"] == {"name": "mosquitto", "status": "ok", "message": binary}
    assert checks["python"]["status"] == "ok"
    assert checks["python"]["message"].startswith(f"Python {sys.version.split()[0]}")


@pytest.mark.timeout(30)
def test_an_hci_transport_that_will_not_open_fails_quickly(
    capsys: pytest.CaptureFixture[str],
) -> None:
    moniker = f"tcp-client:127.0.0.1:{free_port()}"
    started = time.monotonic()
    code, checks = doctor(capsys, "--hci", moniker, "--skip", "broker")
    assert time.monotonic() - started < 10.0
    assert checks["bluetooth"]["status"] == "fail"
    assert checks["bluetooth"]["message"].startswith(f"--hci {moniker}: ")
    assert code == 1


@pytest.mark.timeout(30)
def test_the_whole_report_is_one_line_per_check_and_bounded_in_time(
    mosquitto: Mosquitto,
) -> None:
    """The real program, Bluetooth included: whatever this machine has, an answer in seconds."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "firmware_bridge", "doctor", "--mqtt", mosquitto.url],
        capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=25, check=False,
    )  # fmt: skip
    assert time.monotonic() - started < 15.0
    assert "Traceback" not in done.stderr
    lines = done.stdout.splitlines()
    assert [line.split()[1] for line in lines] == list(CHECKS)
    statuses = {line.split()[1]: line.split()[0] for line in lines}
    assert set(statuses.values()) <= STATUSES
    assert done.returncode == (1 if "fail" in statuses.values() else 0)
    bluetooth = next(line for line in lines if line.split()[1] == "bluetooth")
    if statuses["bluetooth"] == "fail":  # say what to do instead
        assert "--hci usb:0" in bluetooth
        assert "--sim" in bluetooth


def test_skip_leaves_checks_out(capsys: pytest.CaptureFixture[str]) -> None:
    _, checks = doctor(capsys, "--skip", "broker", "--skip", "report")
    assert set(checks) == set(CHECKS) - {"bluetooth", "broker", "report"}
