"""`massager monitor` at fleet size: the summary view, pure and over a real broker."""

from __future__ import annotations

import time

import pytest

from firmware_bridge.cli.monitor import CLEAR, DeviceView, _monitor, apply_message
from firmware_bridge.cli.monitor_summary import needs_attention, render_summary
from firmware_bridge.telemetry.mqtt import make_client
from firmware_bridge.telemetry.payloads import StatePayload, TelemetryPayload
from firmware_bridge.telemetry.topics import Topics
from tests.brokers import Mosquitto, mosquitto
from tests.firmware_bridge.test_monitor import FakeTerminal, cli

__all__ = ["mosquitto"]

PREFIX = "fleet-test"


def fleet_messages(count: int) -> list[tuple[str, bytes]]:
    """`count` devices running at 30 %, except: dev-0007 lost its link, dev-0042 has a flat
    battery, dev-0100 faulted, dev-0500 completed."""
    messages = []
    for n in range(count):
        topics = Topics(f"dev-{n:04d}", PREFIX)
        state = StatePayload(state="running", profile="relax", ts=1.0)
        battery = 9 if n == 42 else 80
        if n == 7:
            state = StatePayload(
                state="link_lost", profile="relax", stop_reason="link_lost", ts=1.0
            )
        if n == 100:
            state = StatePayload(state="fault", profile="relax", stop_reason="fault", ts=1.0)
        if n == 500:
            state = StatePayload(state="stopped", profile="relax", stop_reason="completed", ts=1.0)
        sample = TelemetryPayload(
            ts=1.0, intensity=0.3, applied=0.3, cap=4, nrs=1, battery=battery,
            temperature_c=31.0, rssi=-60, elapsed_s=10.0, remaining_s=100.0, segment="warm-up",
        )  # fmt: skip
        messages += [
            (topics.availability, b"online"),
            (topics.state, state.model_dump_json().encode()),
            (topics.telemetry, sample.model_dump_json().encode()),
        ]
    return messages


def views_of(messages: list[tuple[str, bytes]]) -> dict[str, DeviceView]:
    views: dict[str, DeviceView] = {}
    for topic, payload in messages:
        apply_message(views, topic, payload, PREFIX)
    return views


def test_a_thousand_devices_fit_24_lines_with_the_three_in_trouble_named() -> None:
    views = views_of(fleet_messages(1000))
    lines = render_summary(views.values(), rows=22, rate=2000.0)
    assert len(lines) <= 22
    assert lines[0] == "1000 devices, 1000 online: 997 running, 1 link_lost, 1 fault, 1 stopped"
    assert lines[1] == "stop reasons: 1 link_lost, 1 fault, 1 completed"
    assert "intensity of the 997 playing: median 30%, highest 30%; 2,000 messages/s" in lines[2]
    assert lines[3] == "needs attention (3):"
    assert lines[4].split() == ["DEVICE", "LINK", "STATE", "WHY", "CMD"]
    assert [line.split() for line in lines[5:]] == [
        ["dev-0007", "online", "link_lost", "link_lost", "30%"],
        ["dev-0042", "online", "running", "battery", "9%", "30%"],
        ["dev-0100", "online", "fault", "fault", "30%"],
    ]


def test_more_trouble_than_fits_says_how_many_more() -> None:
    views = views_of(fleet_messages(50))
    for view in views.values():
        view.bad.add("telemetry")  # every device sends garbage
    lines = render_summary(views.values(), rows=12)
    assert len(lines) == 12
    assert lines[-1] == "… and 44 more (--device-id ID shows one)"


def test_a_calm_fleet_needs_no_attention() -> None:
    views = views_of(fleet_messages(3))
    assert [needs_attention(v) for v in views.values()] == [None, None, None]
    assert render_summary(views.values())[-1] == "nothing needs attention"


async def publish(settings: object, messages: list[tuple[str, bytes]]) -> None:
    async with make_client(settings, identifier="test-fleet-pub") as client:  # type: ignore[arg-type]
        for topic, payload in messages:
            await client.publish(topic, payload, qos=0, retain=True)


async def test_the_live_monitor_shows_a_summary_of_a_thousand_devices(
    mosquitto: Mosquitto, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setenv("LINES", "24")
    await publish(mosquitto.settings, fleet_messages(1000))
    args = cli("monitor", "--mqtt", mosquitto.url, "--prefix", PREFIX, "--duration", "2.5")
    terminal = FakeTerminal()
    started = time.monotonic()
    assert await _monitor(args, mosquitto.settings, terminal) == 0
    assert time.monotonic() - started < 5
    screen = terminal.getvalue().split(CLEAR)[-1].splitlines()
    assert len(screen) <= 24
    assert all(len(line) <= 80 for line in screen)
    assert screen[0].startswith("1000 devices, 1000 online: 997 running")
    assert any(line.startswith("dev-0042") and "battery 9%" in line for line in screen)
