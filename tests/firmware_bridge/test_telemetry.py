"""Telemetry over a real broker (mosquitto on loopback): the topic contract (docs/mqtt.md), S8, S10.

Sessions run the real runner, link and simulator (tier 1, sped up); commands come from a
separate MQTT client, exactly as `massager stop` or Home Assistant would send them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from firmware_bridge import durable
from firmware_bridge.device import StopReason, StopResult
from firmware_bridge.journal import Journal, history
from firmware_bridge.runner import Session
from firmware_bridge.safety import SafetySettings
from firmware_bridge.telemetry.bridge import SessionTelemetry
from firmware_bridge.telemetry.mqtt import BrokerSettings
from firmware_bridge.telemetry.outbox import Outbox
from firmware_bridge.telemetry.publisher import CommandHandlers, Publisher
from firmware_bridge.telemetry.topics import Topics
from tests.brokers import Mosquitto
from tests.mqtt_sessions import listening, profile, published_session, send
from tests.rigs import open_rig, until

pytestmark = pytest.mark.sim_only


async def test_state_availability_telemetry_and_events_follow_the_contract(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    topics = Topics("contract")
    async with open_rig("memory", speed=10) as rig, listening(mosquitto.settings, topics) as seen:
        async with published_session(rig, mosquitto.settings, topics, tmp_path) as (
            _,
            _,
            running,
            _,
        ):
            await until(lambda: "running" in [s["state"] for s in seen.on("state")])
            await until(lambda: len(seen.on("telemetry")) >= 3)
            assert "online" in seen.on("availability")
            sample = seen.on("telemetry")[-1]
            for key in (
                "ts",
                "intensity",
                "applied",
                "cap",
                "nrs",
                "battery",
                "temperature_c",
                "rssi",
                "elapsed_s",
                "remaining_s",
                "segment",
            ):
                assert key in sample
            assert 0 <= sample["intensity"] <= 0.6
            record = await running
        await until(lambda: "offline" in seen.on("availability"))
    assert record.stop_reason == StopReason.COMPLETED
    types = [e["type"] for e in seen.events()]
    assert types[0] == "session_started"
    assert "segment" in types
    assert types[-1] == "stop"
    assert all("ts" in e and "id" in e for e in seen.events())
    # A late subscriber sees the retained state and availability.
    async with listening(mosquitto.settings, topics) as late:
        await until(lambda: late.on("state") and late.on("availability"))
        assert late.on("state")[-1]["state"] == "stopped"
        assert late.on("state")[-1]["stop_reason"] == "completed"
        assert late.on("availability") == ["offline"]
        assert all(retain for topic, _, retain in late.messages)


async def test_remote_stop_during_a_ramp_reaches_zero(mosquitto: Mosquitto, tmp_path: Path) -> None:
    topics = Topics("remote-stop")
    async with open_rig("memory", speed=10) as rig:
        async with published_session(rig, mosquitto.settings, topics, tmp_path) as (
            _,
            _,
            running,
            publisher,
        ):
            await publisher.connected.wait()
            await until(lambda: max(rig.firmware.levels) >= 3)
            requested = rig.clock.now()
            # Any payload stops, even one no other command would accept (binary, oversized).
            await send(mosquitto.settings, topics.command("stop"), b"\xff\xfe stop " * 40)
            record = await asyncio.wait_for(running, 10)
    assert record.stop_reason == StopReason.REMOTE_STOP
    assert rig.firmware.levels == (0, 0, 0)
    zeroed = next(r for r in rig.firmware.applied if r.t >= requested and not any(r.levels))
    assert zeroed.cause == "stop"
    assert (zeroed.t - requested) / rig.clock.speed < 0.2  # real seconds, through the broker


async def test_discomfort_7_over_mqtt_stops_the_session(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    topics = Topics("nrs")
    async with open_rig("memory", speed=10) as rig, listening(mosquitto.settings, topics) as seen:
        async with published_session(rig, mosquitto.settings, topics, tmp_path) as (
            _,
            _,
            running,
            publisher,
        ):
            await publisher.connected.wait()
            await until(lambda: max(rig.firmware.levels) >= 2)
            await send(mosquitto.settings, topics.command("discomfort"), b"3")
            await until(lambda: seen.events("discomfort"))
            await send(mosquitto.settings, topics.command("discomfort"), b'{"value": 7}')
            record = await asyncio.wait_for(running, 10)
        assert record.stop_reason == StopReason.DISCOMFORT
        assert [n for _, n in record.ratings] == [3, 7]
        assert rig.firmware.levels == (0, 0, 0)


BAD_COMMANDS = [
    ("discomfort", b"abc", "whole number 0-10"),
    ("discomfort", b"11", "whole number 0-10"),
    ("discomfort", b"-1", "whole number 0-10"),
    ("discomfort", b"5.5", "whole number 0-10"),
    ("discomfort", b"9" * 1000, "at most 64"),
    ("discomfort", b"\xff\xfe\x00", "not ASCII text"),
    ("discomfort", b"{not json", "not valid JSON"),
    ("discomfort", b"--3", "whole number 0-10"),  # "--3".lstrip("-").isdigit() was True
    ("discomfort", "\u00b2".encode(), "not ASCII text"),  # superscript two: isdigit() is True
    ("discomfort", b'{"value": "\\u0663"}', "whole number 0-10"),  # Arabic-Indic three
    ("discomfort", b'{"value": true}', "whole number 0-10"),
    ("intensity", b"1.0", "remote control is not enabled"),
    ("start", b"heel-spur", "remote control is not enabled"),
    ("cap", b"9", "raising the cap remotely is not enabled"),
]


async def test_bad_and_forbidden_commands_are_rejected_and_change_nothing(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    topics = Topics("bad")
    async with open_rig("memory", speed=10) as rig, listening(mosquitto.settings, topics) as seen:
        async with published_session(rig, mosquitto.settings, topics, tmp_path, seconds=20) as (
            session,
            _,
            running,
            publisher,
        ):
            await publisher.connected.wait()
            for name, payload, _ in BAD_COMMANDS:
                await send(mosquitto.settings, topics.command(name), payload)
            await until(lambda: len(seen.events("rejected")) >= len(BAD_COMMANDS))
            record = await asyncio.wait_for(running, 20)
    assert record.stop_reason == StopReason.COMPLETED
    assert record.ratings == []
    assert session.governor is not None
    assert session.governor.cap == 6
    reasons = [e["reason"] for e in seen.events("rejected")]
    for (_, _, expected), reason in zip(BAD_COMMANDS, reasons, strict=True):
        assert expected in reason


async def test_lowering_the_cap_over_mqtt_is_allowed(mosquitto: Mosquitto, tmp_path: Path) -> None:
    topics = Topics("cap")
    async with open_rig("memory", speed=20) as rig:
        async with published_session(rig, mosquitto.settings, topics, tmp_path, seconds=60) as (
            session,
            _,
            running,
            publisher,
        ):
            await publisher.connected.wait()
            await until(lambda: max(rig.firmware.levels) >= 6)
            lowered = rig.clock.now()
            await send(mosquitto.settings, topics.command("cap"), b"2")
            await until(lambda: session.governor is not None and session.governor.cap == 2)
            await running
    assert max(max(r.levels) for r in rig.applied_after(lowered + 0.5)) <= 4  # 20 % of 20


async def test_retained_commands_are_ignored(mosquitto: Mosquitto, tmp_path: Path) -> None:
    topics = Topics("retained")
    # Left on the broker before the session: a stale stop and a stale raise.
    await send(mosquitto.settings, topics.command("stop"), b"stop", retain=True)
    await send(mosquitto.settings, topics.command("cap"), b"10", retain=True)
    async with open_rig("memory", speed=20) as rig, listening(mosquitto.settings, topics) as seen:
        async with published_session(rig, mosquitto.settings, topics, tmp_path, seconds=20) as (
            _,
            _,
            running,
            _,
        ):
            record = await running
    assert record.stop_reason == StopReason.COMPLETED
    rejected = seen.events("rejected")
    assert {e["command"] for e in rejected} == {"stop", "cap"}
    assert all(e["reason"] == "retained commands are ignored" for e in rejected)
    await send(mosquitto.settings, topics.command("stop"), b"", retain=True)  # clear them
    await send(mosquitto.settings, topics.command("cap"), b"", retain=True)


async def test_broker_killed_and_restarted_mid_session(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    topics = Topics("restart")
    async with (
        open_rig("memory", speed=10) as rig,
        listening(mosquitto.settings, topics, reconnect=True) as seen,
    ):
        async with published_session(rig, mosquitto.settings, topics, tmp_path, seconds=60) as (
            _,
            telemetry,
            running,
            publisher,
        ):
            await publisher.connected.wait()
            await until(lambda: len(seen.events("segment")) >= 1)
            mosquitto.kill()
            await asyncio.sleep(1.0)  # 10 session-seconds with no broker: events pile up
            assert not running.done()
            mosquitto.start()
            record = await asyncio.wait_for(running, 20)
        await until(lambda: seen.events("stop"))
    assert record.stop_reason == StopReason.COMPLETED
    assert publisher.stats.outages >= 1
    assert publisher.stats.connects >= 2
    delivered = [e for e in seen.events() if e.get("session_id") == telemetry.session_id]
    unique = list(dict.fromkeys(e["id"] for e in delivered))  # QoS 1 may deliver twice
    sent = [(e.type, e.t) for e in record.events]
    got = [(e["type"], e["t"]) for e in {e["id"]: e for e in delivered}.values()]
    assert len(unique) == len(sent)
    assert got == sent  # every event, in order


async def test_auth_failure_is_reported_and_the_session_is_unaffected(
    mosquitto_factory: Callable[..., Mosquitto], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broker = mosquitto_factory(users={"massager": "right"})
    wrong = BrokerSettings.from_url(f"mqtt://massager:wrong@127.0.0.1:{broker.port}")
    topics = Topics("auth")
    async with open_rig("memory", speed=20) as rig:
        async with published_session(rig, wrong, topics, tmp_path, seconds=20) as (
            _,
            _,
            running,
            publisher,
        ):
            record = await running
    assert record.stop_reason == StopReason.COMPLETED
    assert publisher.stats.connects == 0
    assert publisher.stats.outages >= 1
    assert any("unavailable" in r.message for r in caplog.records if r.levelno == logging.WARNING)
    assert "wrong" not in caplog.text  # the password is never logged
    assert len(publisher.outbox) > 0  # the events wait on disk for a broker


async def test_no_broker_at_all_changes_nothing(tmp_path: Path) -> None:
    nowhere = BrokerSettings.from_url("mqtt://127.0.0.1:9")  # discard port: refused at once
    async with open_rig("memory", speed=20) as rig:
        async with published_session(rig, nowhere, Topics("none"), tmp_path, seconds=20) as (
            session,
            _,
            running,
            _,
        ):
            await until(lambda: max(rig.firmware.levels) >= 2)
            await session.stop()
            record = await running
    assert record.stop_reason == StopReason.USER_STOP
    assert record.stop_latency_s is not None
    assert record.stop_latency_s < 0.05


@pytest.mark.timeout(60)
def test_last_will_when_the_controller_process_is_killed(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    topics = Topics("lastwill")

    async def watch() -> list[Any]:
        async with listening(mosquitto.settings, topics) as seen:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "firmware_bridge",
                "run",
                "relax",
                "--sim",
                "--sim-tier",
                "memory",
                "--mqtt",
                mosquitto.url,
                "--device-id",
                "lastwill",
                "--no-journal",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
            try:
                await until(lambda: "online" in seen.on("availability"), within=20)
                await until(lambda: any(s["state"] == "running" for s in seen.on("state")))
                proc.send_signal(signal.SIGKILL)
                await asyncio.wait_for(proc.wait(), 10)
                await until(lambda: seen.on("availability")[-1] == "offline", within=5)
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
            return seen.on("availability")

    assert asyncio.run(watch())[-2:] == ["online", "offline"]


def test_outbox_keeps_order_bounds_and_counts(tmp_path: Path) -> None:
    box = Outbox(tmp_path, max_events=3)
    for i in range(5):
        box.append({"type": "e", "n": i})
    assert [box.peek()] == [{"type": "e", "n": 0}]
    assert box.dropped == 2
    box.pop()
    box.append({"type": "e", "n": 5, "ts": 1.0})  # room again: the drop count is reported first
    box.flush()
    again = Outbox(tmp_path, max_events=3)  # a new process finds what was not delivered
    items = []
    while (item := again.peek()) is not None:
        items.append(item)
        again.pop()
    assert items == [
        {"type": "e", "n": 1},
        {"type": "e", "n": 2},
        {"type": "events_dropped", "count": 2, "ts": 1.0},
        {"type": "e", "n": 5, "ts": 1.0},
    ]
    again.flush()
    assert Outbox(tmp_path).peek() is None


async def test_journal_records_the_session_and_history_lists_it(tmp_path: Path) -> None:
    async with open_rig("memory", speed=40) as rig, rig.link() as link:
        journal = Journal("test", directory=tmp_path, header={"device_id": "x"})
        telemetry = SessionTelemetry(profile="test", cap=4, journal=journal)
        session = Session(
            link,
            profile(20),
            SafetySettings(cap=4),
            on_sample=telemetry.sample,
            on_event=telemetry.event,
        )
        record = await session.run()
        telemetry.finish(record)
        await telemetry.flushed()
    assert telemetry.journal_note() == {"journal": "ok"}
    lines = [json.loads(line) for line in journal.path.read_text().splitlines()]
    assert lines[0]["kind"] == "header"
    assert lines[-1]["kind"] == "summary"
    assert [entry["type"] for entry in lines if entry["kind"] == "event"] == [
        e.type for e in record.events
    ]
    (past,) = history(tmp_path)
    assert past["profile"] == "test"
    assert past["stop_reason"] == "completed"
    assert past["samples"] >= 45


async def test_fsync_never_runs_on_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        threads.append(threading.current_thread().name)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)  # the module durable.py calls
    nowhere = BrokerSettings.from_url("mqtt://127.0.0.1:9")  # events pile up in the outbox
    async with open_rig("memory", speed=40) as rig:
        async with published_session(rig, nowhere, Topics("fsync"), tmp_path, seconds=10) as (
            _,
            _,
            running,
            _,
        ):
            await running
    durable.writer().flush()
    assert threads  # the journal and the outbox were made durable ...
    assert set(threads) == {"durable-writer"}  # ... never from the loop's thread (S10)


async def test_a_failing_command_handler_does_not_end_command_handling(
    mosquitto: Mosquitto,
) -> None:
    calls: list[bytes] = []

    def stop() -> asyncio.Future[StopResult]:
        calls.append(b"stop")
        if len(calls) == 1:
            raise RuntimeError("handler bug")
        done: asyncio.Future[StopResult] = asyncio.get_running_loop().create_future()
        done.set_result(StopResult(StopReason.REMOTE_STOP, confirmed=True, latency_s=0.001))
        return done

    topics = Topics("handler")
    publisher = Publisher(mosquitto.settings, topics)
    publisher.handlers = CommandHandlers(stop=stop, discomfort=lambda _n: None)
    serving = asyncio.create_task(publisher.run())
    await asyncio.wait_for(publisher.connected.wait(), 5)
    await asyncio.wait_for(publisher.stop_lane_ready.wait(), 5)
    await send(mosquitto.settings, topics.command("stop"), b"1")
    await until(lambda: len(calls) >= 2)  # heard on both lanes; the first call raised
    before = len(calls)
    await send(mosquitto.settings, topics.command("stop"), b"2")
    await until(lambda: len(calls) > before)  # the next stop still arrives
    await publisher.close()
    await asyncio.wait_for(serving, 5)


async def test_a_publisher_error_of_any_kind_is_an_outage_not_a_crash(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A library user can build settings the CLI would refuse: paho then raises ValueError or
    UnicodeError, not OSError. Telemetry says so once and the session is unaffected."""
    bad = BrokerSettings(host="a" * 300, port=1883)  # past the CLI's validation
    topics = Topics("odd")
    async with open_rig("memory", speed=20) as rig:
        async with published_session(rig, bad, topics, tmp_path, seconds=10) as (
            _,
            _,
            running,
            publisher,
        ):
            record = await running
    assert record.stop_reason == StopReason.COMPLETED
    assert publisher.stats.outages >= 1
    assert publisher.stats.last_error
    outage_warnings = [r for r in caplog.records if "unavailable" in r.getMessage()]
    assert len(outage_warnings) == 1


async def test_remote_commands_never_undo_a_local_limit(tmp_path: Path) -> None:
    """S8 through the real wiring (handlers as the Publisher calls them, no broker needed):
    a remote low rating does not release a local hold, a lowered cap is not raised again."""
    publisher = Publisher(BrokerSettings(host="127.0.0.1"), Topics("wiring"))
    async with open_rig("memory", speed=20) as rig, rig.link() as link:
        telemetry = SessionTelemetry(profile="test", cap=6, publisher=publisher)
        session = Session(link, profile(60), SafetySettings(cap=6))
        telemetry.attach(session)
        handlers = publisher.handlers
        assert handlers is not None
        assert handlers.cap is not None
        running = asyncio.create_task(session.run())
        await until(lambda: session.governor is not None and session.governor.envelope > 0.1)
        governor = session.governor
        assert governor is not None
        session.report_discomfort(5)  # the person, locally: hold
        assert governor.holding
        assert handlers.discomfort(0) is None  # accepted as a rating ...
        assert governor.holding  # ... but it does not release the person's hold
        assert handlers.cap(2) is None
        assert handlers.cap(5) == "raising the cap remotely is not enabled"
        assert governor.cap == 2
        stopping = session.request_stop(StopReason.USER_STOP)
        assert governor.stopped  # latched before the stop task even ran (S3)
        assert (await stopping).confirmed
        await running
