"""config.toml and MASSAGER_* variables: precedence, `config show`, and hostile or bad files."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from firmware_bridge.cli import build_parser, main
from firmware_bridge.cli.settings import (
    apply,
    command_parsers,
    configured_commands,
    load,
    resolve,
)
from tests.brokers import Mosquitto, MosquittoFactory, free_port


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where MASSAGER_CONFIG points (not created); no MASSAGER_* setting leaks in from outside."""
    for name in list(os.environ):
        if name.startswith("MASSAGER_") and name != "MASSAGER_DATA_DIR":
            monkeypatch.delenv(name)
    path = tmp_path / "config.toml"
    monkeypatch.setenv("MASSAGER_CONFIG", str(path))
    return path


def write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def exit_code(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)


def one_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run `argv`, expect exit 2 quickly with exactly one line on stderr; return that line."""
    started = time.monotonic()
    code = exit_code(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert time.monotonic() - started < 5.0
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    assert "Playing" not in err  # refused before any session
    return err.strip()


def session(*args: str) -> dict[str, object]:
    """`massager run relax --sim ... --json` in a real process (env as set); its summary."""
    done = subprocess.run(
        [sys.executable, "-m", "firmware_bridge", "run", "relax", "--sim", "--sim-tier",
         "memory", "--speed", "600", "--json", "--no-journal", *args],
        capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary: dict[str, object] = json.loads(done.stdout)
    return summary


def show(capsys: pytest.CaptureFixture[str], *flags: str) -> dict[str, dict[str, object]]:
    assert main(["config", "show", "--json", *flags]) == 0
    shown: dict[str, dict[str, object]] = json.loads(capsys.readouterr().out)["settings"]
    return shown


# ---- precedence


@pytest.mark.timeout(120)
def test_file_then_variable_then_flag_set_what_a_session_uses(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The configured address gives way to --sim instead of making the command invalid.
    write(config, 'cap = 3\nmax_minutes = 0.1\naddress = "AA:BB:CC:DD:EE:FF"\nmqtt = "off"\n')
    summary = session()
    assert summary["cap"] == 3
    assert summary["stop_reason"] == "timeout"
    assert summary["duration_s"] == pytest.approx(6, abs=1.5)  # 0.1 min from the file
    monkeypatch.setenv("MASSAGER_CAP", "2")
    assert session()["cap"] == 2
    assert session("--cap", "1")["cap"] == 1


@pytest.mark.timeout(90)
def test_the_default_cap_stays_4_with_a_config_that_does_not_set_it(config: Path) -> None:
    write(config, 'person = "ana"\nmax_minutes = 0.1\n')
    assert session("--mqtt", "off")["cap"] == 4


def test_config_show_names_the_source_of_each_setting(
    config: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write(config, 'cap = 3\nmax_minutes = 20\nperson = "ana"\ntopic_prefix = "home"\n')
    monkeypatch.setenv("MASSAGER_MAX_MINUTES", "12.5")
    shown = show(capsys, "--topic-prefix", "flat")
    assert shown["cap"] == {"value": 3, "source": "file", "from": str(config)}
    assert shown["max_minutes"] == {
        "value": 12.5,
        "source": "env",
        "from": "MASSAGER_MAX_MINUTES",
    }
    assert shown["topic_prefix"] == {"value": "flat", "source": "flag", "from": "--topic-prefix"}
    assert shown["person"]["value"] == "ana"
    assert shown["telemetry_hz"] == {"value": 2.0, "source": "default", "from": None}


def test_config_show_without_a_file_is_the_built_in_defaults(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["config", "show"]) == 0
    out = capsys.readouterr().out
    assert f"{config} (not found: built-in defaults)" in out
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()[1:]}
    assert rows["cap"] == ["4", "default"]
    assert rows["max_minutes"] == ["15", "default"]
    assert rows["topic_prefix"] == ["massager", "default"]
    assert rows["person"][1] == "default"


def test_config_path_prints_the_file_even_when_missing(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["config", "path"]) == 0
    assert capsys.readouterr().out == f"{config}\n"


def test_passwords_are_never_shown(
    config: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write(config, 'mqtt_password = "hunter2-file"\nmqtt_username = "ana"\n')
    assert main(["config", "show"]) == 0
    out = capsys.readouterr().out
    assert "hunter2" not in out
    assert "***" in out
    monkeypatch.setenv("MASSAGER_MQTT_PASSWORD", "hunter2-env")
    shown = show(capsys)
    assert shown["mqtt_password"] == {
        "value": "***",
        "source": "env",
        "from": "MASSAGER_MQTT_PASSWORD",
    }
    assert shown["mqtt_username"]["value"] == "ana"
    write(config, 'mqtt = "mqtt://ana:hunter2:@x@127.0.0.1:1883"\n')
    assert show(capsys)["mqtt"]["value"] == "mqtt://ana:***@127.0.0.1:1883"
    assert main(["config", "show", "--mqtt", "mqtt://bo:hunter2@h"]) == 0
    out = capsys.readouterr().out
    assert "mqtt://bo:***@h" in out
    assert "hunter2" not in out


def test_a_configured_device_gives_way_to_one_named_on_the_command_line(config: Path) -> None:
    write(config, 'address = "AA:BB:CC:DD:EE:FF"\ndevice_id = "kitchen"\n')
    parser = build_parser()
    apply(command_parsers(parser), load())
    args = parser.parse_args(["run", "relax", "--name", "FootMassager-2"])
    assert resolve(args) == {"device_id": str(config)}
    assert (args.address, args.name, args.device_id) == (None, "FootMassager-2", "kitchen")
    args = parser.parse_args(["run", "relax", "--address", "11:22:33:44:55:66"])
    resolve(args)
    assert (args.address, args.name) == (
        ["11:22:33:44:55:66"],
        None,
    )  # --address may be given per massager
    args = parser.parse_args(["run", "relax"])
    resolve(args)
    assert args.address == "AA:BB:CC:DD:EE:FF"


def test_monitor_and_stop_keep_their_own_broker_when_the_config_says_embedded(
    config: Path,
) -> None:
    write(config, 'mqtt = "embedded"\n')
    parser = build_parser()
    apply(command_parsers(parser), load())
    for argv in (["monitor"], ["stop"], ["run", "relax"], ["doctor"]):
        args = parser.parse_args(argv)
        resolve(args)
        assert args.mqtt == (None if argv[0] in {"monitor", "stop"} else "embedded"), argv


def test_person_is_the_default_of_every_person_flag(config: Path) -> None:
    write(config, 'person = "ana"\n')
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("checkin").add_argument("--person")
    commands.add_parser("other")
    parsers = command_parsers(parser)
    apply(parsers, load())
    args = parser.parse_args(["checkin"])
    resolve(args)
    assert args.person == "ana"
    args = parser.parse_args(["checkin", "--person", "bo"])
    resolve(args)
    assert args.person == "bo"
    assert configured_commands(parsers) == {"checkin"}
    assert configured_commands(command_parsers(build_parser())) >= {"run", "monitor", "stop"}


# ---- the broker from the config


def test_monitor_uses_the_configured_broker(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()  # nothing listens there: the error names it, so it came from the file
    write(config, f'mqtt = "mqtt://127.0.0.1:{port}"\n')
    assert main(["monitor", "--once"]) == 1
    assert f"127.0.0.1:{port}" in capsys.readouterr().err


def test_a_variable_beats_the_file_for_the_broker(
    config: Path,
    mosquitto: Mosquitto,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    write(config, f'mqtt = "mqtt://127.0.0.1:{free_port()}"\n')
    monkeypatch.setenv("MASSAGER_MQTT", mosquitto.url)
    assert main(["monitor", "--once"]) == 0, capsys.readouterr().err


def test_credentials_from_the_file_log_in(
    config: Path, mosquitto_factory: MosquittoFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    broker = mosquitto_factory(users={"ana": "file-pw"})
    write(config, f'mqtt = "{broker.url}"\nmqtt_username = "ana"\n')
    assert main(["monitor", "--once"]) == 1  # no password: refused
    capsys.readouterr()
    write(config, f'mqtt = "{broker.url}"\nmqtt_username = "ana"\nmqtt_password = "file-pw"\n')
    assert main(["monitor", "--once"]) == 0, capsys.readouterr().err
    assert main(["monitor", "--once", "--mqtt-password", "wrong"]) == 1  # the flag wins


def test_a_config_password_others_can_read_is_warned_about(
    config: Path, mosquitto: Mosquitto, capsys: pytest.CaptureFixture[str]
) -> None:
    write(config, f'mqtt = "{mosquitto.url}"\nmqtt_password = "pw"\n', mode=0o644)
    assert main(["monitor", "--once"]) == 0
    err = capsys.readouterr().err
    assert f"{config} holds an MQTT password and other users may read it; chmod 600 it" in err
    assert "pw\n" not in err


def test_an_explicit_mqtt_config_file_beats_the_configured_broker(
    config: Path, tmp_path: Path, mosquitto: Mosquitto, capsys: pytest.CaptureFixture[str]
) -> None:
    write(config, f'mqtt = "mqtt://127.0.0.1:{free_port()}"\n')
    broker_file = write(tmp_path / "broker.toml", f'[mqtt]\nurl = "{mosquitto.url}"\n')
    assert main(["monitor", "--once", "--mqtt-config", str(broker_file)]) == 0


# ---- bad values: one line naming the file (or variable) and the key, exit 2

BAD_VALUES = [
    ("cap = 12\n", "cap: must be an integer 0-10 (got 12)"),
    ("cap = 11\n", "cap: must be an integer 0-10 (got 11)"),
    ('cap = "3"\n', "cap: must be an integer 0-10 (got '3')"),
    ("cap = true\n", "cap: must be an integer 0-10 (got a boolean)"),
    ("cap = 4.5\n", "cap: must be an integer 0-10 (got 4.5)"),
    ("max_minutes = 31\n", "max_minutes: must be a number 0.1-30 (got 31)"),
    ("max_minutes = 0\n", "max_minutes: must be a number 0.1-30 (got 0)"),
    ("max_minutes = nan\n", "max_minutes: must be a number 0.1-30 (got nan)"),
    ("telemetry_hz = 100\n", "telemetry_hz: must be a number 1-50"),
    ('device_id = "a/b"\n', "device_id: 'a/b': use 1-64 letters"),
    ('mqtt = "ftp://u:secret@host"\n', "mqtt: ftp://u:***@host: scheme must be mqtt://"),
    ('topic_prefix = "a/#"\n', "topic_prefix: topic prefix 'a/#'"),
    ('mqtt_ca = "missing.pem"\n', "mqtt_ca: no such file"),
    ('address = "AA"\nname = "B"\n', "address and name: set one of them, not both"),
    ("cpa = 3\n", "cpa: unknown key (known: person, cap,"),
    ('[mqtt]\nurl = "mqtt://h"\n', 'mqtt: must be a "string" (got a table); the file is one'),
    ("person = 7\n", 'person: must be a "string" (got an integer)'),
]


@pytest.mark.parametrize(("text", "message"), BAD_VALUES, ids=[m for _, m in BAD_VALUES])
@pytest.mark.parametrize("command", ["run", "monitor", "stop", "config"])
def test_a_bad_value_is_one_line_naming_file_and_key(
    config: Path, text: str, message: str, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    write(config, text)
    argv = {
        "run": ["run", "relax", "--sim"],
        "monitor": ["monitor", "--once"],
        "stop": ["stop", "--all"],
        "config": ["config", "show"],
    }[command]
    line = one_error(argv, capsys)
    assert line.startswith(f"massager: error: {config}: ")
    assert message in line
    assert "secret" not in line


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("MASSAGER_CAP", "11", "MASSAGER_CAP: must be an integer 0-10 (got 11)"),
        ("MASSAGER_CAP", "lots", "MASSAGER_CAP: must be an integer 0-10 (got lots)"),
        ("MASSAGER_MAX_MINUTES", "45", "MASSAGER_MAX_MINUTES: must be a number 0.1-30"),
        ("MASSAGER_MQTT", "ftp://h", "MASSAGER_MQTT: ftp://h: scheme must be"),
    ],
)
def test_a_bad_variable_is_one_line_naming_it(
    config: Path,
    name: str,
    value: str,
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(name, value)
    assert one_error(["run", "relax", "--sim"], capsys).startswith(f"massager: error: {message}")
    assert message in one_error(["config", "show"], capsys)


def test_an_empty_variable_counts_as_unset(
    config: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MASSAGER_CAP", "")
    assert show(capsys)["cap"]["source"] == "default"


def test_a_broken_config_does_not_stop_commands_that_do_not_use_it(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(config, "cap = 12\n")
    assert main(["profiles", "list"]) == 0
    assert main(["config", "path"]) == 0
    assert main(["version"]) == 0
    assert "error" not in capsys.readouterr().err


# ---- files that are not config files


@pytest.mark.timeout(10)
@pytest.mark.parametrize("kind", ["fifo", "directory", "binary", "huge", "deep", "long-number"])
def test_a_hostile_config_file_is_one_line_and_never_hangs(
    config: Path, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    if kind == "fifo":
        os.mkfifo(config)  # opening it for reading would wait for a writer forever
    elif kind == "directory":
        config.mkdir()
    elif kind == "binary":
        config.write_bytes(b"\x00\xff\xfe\x01cap = 3\n")
    elif kind == "huge":
        with config.open("wb") as handle:
            handle.truncate(100 * 1024 * 1024)
    elif kind == "deep":
        config.write_text("person = " + "[" * 5000 + "]" * 5000 + "\n")
    else:
        config.write_text("cap = " + "1" * 5000 + "\n")
    line = one_error(["run", "relax", "--sim"], capsys)
    assert line.startswith(f"massager: error: {config}: ")
    assert {
        "fifo": "not a regular file (it is a named pipe)",
        "directory": "not a regular file (it is a directory)",
        "binary": "not UTF-8 text",
        "huge": "a config file is at most 65,536",
        "deep": "nested too deeply",
        "long-number": "a number too long to read",
    }[kind] in line
