"""`massager monitor` and `massager stop` against a real mosquitto on loopback (no mocks)."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import time
import uuid
from typing import Any

import pytest

from firmware_bridge.cli.monitor import (
    BAD,
    CLEAR,
    DeviceView,
    _monitor,
    add_monitor_commands,
    apply_message,
    render_table,
)
from firmware_bridge.cli.stop import add_stop_command
from firmware_bridge.telemetry.mqtt import BrokerSettings, make_client
from firmware_bridge.telemetry.payloads import StatePayload, TelemetryPayload
from firmware_bridge.telemetry.topics import Topics
from tests.brokers import Mosquitto, free_port, mosquitto, mosquitto_factory

__all__ = ["mosquitto", "mosquitto_factory"]  # the shared broker fixtures, used by name

QUIET_S = 0.3  # long enough on loopback to conclude that a message is not coming


@pytest.fixture
def prefix() -> str:
    """A topic prefix other than the default, so that --prefix is exercised everywhere."""
    return f"test-{uuid.uuid4().hex[:8]}"


def cli(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="massager")
    commands = parser.add_subparsers(dest="command", required=True)
    add_monitor_commands(commands)
    add_stop_command(commands)
    return parser.parse_args(argv)


def run_cli(*argv: str) -> int:
    args = cli(*argv)
    code: int = args.handler(args)
    return code


RUNNING = StatePayload(state="running", profile="heel-spur", ts=1.0)
STOPPED = StatePayload(state="stopped", profile="plantar", stop_reason="user_stop", ts=1.0)
SAMPLE = TelemetryPayload(
    ts=1.0,
    intensity=0.35,
    applied=0.33,
    cap=4,
    nrs=2,
    battery=80,
    temperature_c=31.5,
    rssi=-60,
    elapsed_s=30.0,
    remaining_s=95.0,
    segment="warm-up",
)


def retained_devices(prefix: str) -> list[tuple[str, bytes]]:
    """Two devices: `dev-a` running with telemetry, `dev-b` stopped and offline."""
    a, b = Topics("dev-a", prefix), Topics("dev-b", prefix)
    return [
        (a.availability, b"online"),
        (a.state, RUNNING.model_dump_json().encode()),
        (a.telemetry, SAMPLE.model_dump_json().encode()),
        (b.availability, b"offline"),
        (b.state, STOPPED.model_dump_json().encode()),
    ]


async def publish_retained(settings: BrokerSettings, messages: list[tuple[str, bytes]]) -> None:
    async with make_client(settings, identifier=f"test-pub-{uuid.uuid4().hex[:6]}") as client:
        for topic, payload in messages:
            await client.publish(topic, payload, qos=1, retain=True)


async def received(client: Any, within: float) -> list[Any]:
    """Every message the subscribed client gets within `within` seconds."""
    out: list[Any] = []
    try:
        async with asyncio.timeout(within):
            async for message in client.messages:
                out.append(message)  # noqa: PERF401 - a comprehension loses all on the timeout
    except TimeoutError:
        pass
    return out


# ---- pure parts: no broker


def views_of(messages: list[tuple[str, bytes]], prefix: str) -> dict[str, DeviceView]:
    views: dict[str, DeviceView] = {}
    for topic, payload in messages:
        apply_message(views, topic, payload, prefix)
    return views


def test_render_table_two_devices() -> None:
    views = views_of(retained_devices("massager"), "massager")
    header, row_a, row_b = render_table(views.values())
    assert header.split()[:5] == ["DEVICE", "LINK", "STATE", "PROFILE", "SEGMENT"]
    for expected in (
        "dev-a",
        "online",
        "running",
        "heel-spur",
        "warm-up",
        "35%",
        "33%",
        "01:35",
        "80%",
        " 2 ",
    ):
        assert expected in row_a
    assert "█" in row_a  # the bar for the commanded intensity
    for expected in ("dev-b", "offline", "stopped", "plantar", "user_stop"):
        assert expected in row_b
    assert "%" not in row_b  # a stopped device shows no stale intensity
    # columns line up: every row starts the STATE column at the same offset
    assert row_a.index("running") == row_b.index("stopped") == header.index("STATE")


def test_render_table_empty() -> None:
    assert render_table([]) == ["no massagers seen yet"]


@pytest.mark.parametrize(
    ("kind", "payload"),
    [
        ("availability", b"maybe"),
        ("state", b"{not json"),
        ("state", b'{"state": "exploded"}'),
        ("telemetry", b'{"intensity": "lots"}'),
        ("telemetry", b"\xff\xfe"),
        ("events", b"[]"),
    ],
)
def test_malformed_payloads_show_bad_payload(kind: str, payload: bytes) -> None:
    views = views_of(retained_devices("massager"), "massager")
    change = apply_message(views, f"massager/dev-a/{kind}", payload, "massager")
    assert change is not None
    assert change.summary == BAD
    lines = render_table(views.values())
    if kind != "events":  # a bad event only shows in the change log
        assert BAD in lines[1]
    # the next good payload clears the mark
    good = dict(retained_devices("massager"))
    if kind in {"availability", "state", "telemetry"}:
        apply_message(views, f"massager/dev-a/{kind}", good[f"massager/dev-a/{kind}"], "massager")
        assert BAD not in render_table(views.values())[1]


def test_events_update_stop_reason_and_rating() -> None:
    views = views_of(retained_devices("p"), "p")
    change = apply_message(views, "p/dev-a/events", b'{"type": "discomfort", "nrs": 5}', "p")
    assert change is not None
    assert change.summary.startswith("discomfort")
    apply_message(views, "p/dev-a/events", b'{"type": "stop", "reason": "discomfort"}', "p")
    assert views["dev-a"].last_rating == 5
    assert views["dev-a"].stop_reason == "discomfort"
    assert views["dev-a"].last_event == "stop"


def test_foreign_topics_are_ignored() -> None:
    views: dict[str, DeviceView] = {}
    assert apply_message(views, "other/dev-a/state", b"{}", "massager") is None
    assert apply_message(views, "massager/dev-a/cmd/stop", b"stop", "massager") is None
    assert views == {}


# ---- against mosquitto


def test_monitor_once_prints_both_devices(
    mosquitto: Mosquitto, prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(publish_retained(mosquitto.settings, retained_devices(prefix)))
    started = time.monotonic()
    assert run_cli("monitor", "--mqtt", mosquitto.url, "--prefix", prefix, "--once") == 0
    assert time.monotonic() - started < 2.0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 3
    assert out[1].split()[:3] == ["dev-a", "online", "running"]
    assert "35%" in out[1]
    assert out[2].split()[:3] == ["dev-b", "offline", "stopped"]
    assert "user_stop" in out[2]
    assert CLEAR not in "".join(out)


def test_monitor_once_one_device(
    mosquitto: Mosquitto, prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(publish_retained(mosquitto.settings, retained_devices(prefix)))
    argv = ("monitor", "--mqtt", mosquitto.url, "--prefix", prefix, "--device-id", "dev-b")
    assert run_cli(*argv, "--once") == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2
    assert out[1].startswith("dev-b")


async def test_monitor_lines_when_not_a_terminal(
    mosquitto: Mosquitto, prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await publish_retained(mosquitto.settings, retained_devices(prefix))
    args = cli("monitor", "--mqtt", mosquitto.url, "--prefix", prefix, "--duration", "0.8")
    task = asyncio.create_task(asyncio.to_thread(args.handler, args))
    await asyncio.sleep(0.4)
    async with make_client(mosquitto.settings, identifier="test-live") as client:
        await client.publish(f"{prefix}/dev-a/events", b'{"type": "stop", "reason": "timeout"}')
        await client.publish(f"{prefix}/dev-a/telemetry", b"garbage")
    assert await task == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(" dev-a availability online" in line for line in lines)
    assert any(
        " dev-b state stopped profile=plantar stop_reason=user_stop" in line for line in lines
    )
    assert any(" dev-a events stop reason=timeout" in line for line in lines)
    assert any(line.endswith(f"dev-a telemetry {BAD}") for line in lines)


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


async def test_monitor_redraws_a_table_on_a_terminal(
    mosquitto: Mosquitto, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "150")  # lines are cut to the terminal's width
    await publish_retained(mosquitto.settings, retained_devices(prefix))
    args = cli("monitor", "--mqtt", mosquitto.url, "--prefix", prefix, "--duration", "0.8")
    terminal = FakeTerminal()
    assert await _monitor(args, mosquitto.settings, terminal) == 0
    screens = terminal.getvalue().split(CLEAR)[1:]
    assert 1 <= len(screens) <= 5  # at most ~4 redraws per second
    assert "dev-a" in screens[-1]
    assert "dev-b" in screens[-1]
    assert f"connected to {mosquitto.settings.display}" in screens[-1]
    assert max(len(line) for line in screens[-1].splitlines()) <= 150


async def test_monitor_reconnects_after_broker_restart(
    mosquitto: Mosquitto, prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = cli("monitor", "--mqtt", mosquitto.url, "--prefix", prefix, "--duration", "1.8")
    task = asyncio.create_task(asyncio.to_thread(args.handler, args))
    await asyncio.sleep(0.3)
    mosquitto.stop()
    mosquitto.start()  # same port
    await asyncio.sleep(0.5)  # the first retry comes 0.5 s after the loss
    await publish_retained(mosquitto.settings, [(f"{prefix}/dev-z/availability", b"online")])
    assert await task == 0
    captured = capsys.readouterr()
    assert "reconnecting in 0.5 s" in captured.err
    assert "dev-z availability online" in captured.out


async def test_stop_device_id_is_qos1_and_not_retained(
    mosquitto: Mosquitto, prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    topic = Topics("dev-x", prefix).command("stop")
    async with make_client(mosquitto.settings, identifier="test-sub") as subscriber:
        await subscriber.subscribe(topic, qos=1)
        args = cli(
            "stop", "--mqtt", mosquitto.url, "--prefix", prefix, "--device-id", "dev-x",
            "--timeout", "0.5",
        )  # fmt: skip
        assert await asyncio.to_thread(args.handler, args) == 1  # nobody confirmed it
        got = await received(subscriber, QUIET_S)
    assert [(m.topic.value, m.qos, m.retain) for m in got] == [(topic, 1, False)]
    body = json.loads(got[0].payload)
    assert set(body) == {"request_id", "ts"}  # so the controller's answer can be matched
    assert capsys.readouterr().out == (
        "dev-x: unknown on this broker (no controller has announced it)\n"
    )
    async with make_client(mosquitto.settings, identifier="test-late") as late:
        await late.subscribe(topic, qos=1)
        assert await received(late, QUIET_S) == []  # not retained: a stale stop never replays


async def test_stop_all_sends_to_online_devices_only(
    mosquitto: Mosquitto, prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await publish_retained(
        mosquitto.settings,
        [
            (f"{prefix}/a/availability", b"online"),
            (f"{prefix}/b/availability", b"online"),
            (f"{prefix}/c/availability", b"offline"),
            (f"{prefix}/b/availability", b"online"),
        ],
    )
    async with make_client(mosquitto.settings, identifier="test-sub-all") as subscriber:
        await subscriber.subscribe(f"{prefix}/+/cmd/stop", qos=1)
        args = cli("stop", "--mqtt", mosquitto.url, "--prefix", prefix, "--all", "--timeout", "0.5")
        assert await asyncio.to_thread(args.handler, args) == 1  # retained "online", nobody home
        got = await received(subscriber, QUIET_S)
    assert sorted(m.topic.value for m in got) == [f"{prefix}/a/cmd/stop", f"{prefix}/b/cmd/stop"]
    assert capsys.readouterr().out.splitlines() == [
        "a: no confirmation within 0.5 s",
        "b: no confirmation within 0.5 s",
    ]


def test_stop_without_id_needs_exactly_one_online(
    mosquitto: Mosquitto, prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    two = [(f"{prefix}/a/availability", b"online"), (f"{prefix}/b/availability", b"online")]
    asyncio.run(publish_retained(mosquitto.settings, two))
    assert run_cli("stop", "--mqtt", mosquitto.url, "--prefix", prefix) == 2
    err = capsys.readouterr().err
    assert err == "massager: error: which massager? 2 online (a, b): use --device-id ID or --all\n"
    asyncio.run(publish_retained(mosquitto.settings, [(f"{prefix}/b/availability", b"offline")]))
    assert run_cli("stop", "--mqtt", mosquitto.url, "--prefix", prefix, "--timeout", "0.3") == 1
    assert capsys.readouterr().out == "a: no confirmation within 0.3 s\n"


@pytest.mark.parametrize(
    "command", [("monitor", "--once"), ("stop", "--device-id", "x"), ("monitor", "--duration", "5")]
)
def test_unreachable_broker_is_one_line_exit_1(
    command: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()  # nothing listens here
    argv = (*command, "--mqtt", f"mqtt://watcher:s3cret@127.0.0.1:{port}")
    assert run_cli(*argv) == 1
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1
    assert captured.err.startswith(
        f"massager: error: cannot reach the MQTT broker at mqtt://watcher@127.0.0.1:{port}"
    )
    assert "s3cret" not in captured.err + captured.out
    assert "Traceback" not in captured.err


@pytest.mark.parametrize(
    "argv",
    [
        ("monitor", "--mqtt", "ftp://host", "--once"),
        ("monitor", "--mqtt", "mqtt://host:99999", "--once"),
        ("stop", "--mqtt", "mqtt://u:pw@:1883", "--all"),
        ("stop", "--device-id", "a/b"),
        ("monitor", "--prefix", "bad/#", "--once"),
    ],
)
def test_bad_input_is_one_line_exit_2(
    argv: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(*argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("massager: error: ")
    assert err.count("\n") == 1
    assert ":pw@" not in err
