"""Remote stop over a real broker (mosquitto on loopback): its own lane, confirmed, one owner.

The scenarios that once failed: a flood of discomfort messages pushed a stop out of the client's
queue; two controllers on one device id evicted each other and a stop "sent" reached neither;
`massager stop` said "sent" for devices that never confirmed, did not exist or were offline.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import time
from pathlib import Path

import pytest

from firmware_bridge.device import DeviceLimits, StopReason, StopResult
from firmware_bridge.durable import writer
from firmware_bridge.errors import DeviceIdInUseError
from firmware_bridge.journal import data_dir
from firmware_bridge.runner import Session
from firmware_bridge.safety import SafetySettings
from firmware_bridge.telemetry.bridge import SessionTelemetry
from firmware_bridge.telemetry.mqtt import BrokerSettings, make_client
from firmware_bridge.telemetry.outbox import Outbox
from firmware_bridge.telemetry.publisher import CommandHandlers, Publisher
from firmware_bridge.telemetry.topics import Topics
from tests.brokers import Mosquitto
from tests.mqtt_sessions import listening, profile, published_session, send
from tests.rigs import open_rig, until

pytestmark = pytest.mark.sim_only

FLOOD = 20_000  # what the issue reproduced with: 20 times aiomqtt's incoming queue


def _packet(kind: int, body: bytes) -> bytes:
    """An MQTT 3.1.1 control packet: fixed header with a variable-length remaining length."""
    length, encoded = len(body), b""
    while True:
        byte, length = length % 128, length // 128
        encoded += bytes([byte | (0x80 if length else 0)])
        if not length:
            return bytes([kind]) + encoded + body


def _string(text: str) -> bytes:
    raw = text.encode()
    return len(raw).to_bytes(2, "big") + raw


def blast(settings: BrokerSettings, topic: str, payload: bytes, count: int) -> None:
    """Publish `count` QoS 0 messages in one write, as fast as a hostile client can."""
    connect = _packet(0x10, _string("MQTT") + bytes([4, 0x02, 0, 60]) + _string("flooder"))
    publish = _packet(0x30, _string(topic) + payload)
    with socket.create_connection((settings.host, settings.port), timeout=5) as sock:
        sock.sendall(connect)
        assert sock.recv(4)[:2] == b"\x20\x02"  # CONNACK
        sock.sendall(publish * count + _packet(0xE0, b""))


async def remote_stop(settings: BrokerSettings, topics: Topics, request_id: str) -> None:
    """What `massager stop` sends: QoS 1, never retained, with a request id to answer."""
    body = json.dumps({"request_id": request_id, "ts": round(time.time(), 3)})
    await send(settings, topics.command("stop"), body)


async def test_a_flood_of_ratings_cannot_push_a_stop_out(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    topics = Topics("flooded")
    async with open_rig("memory", speed=10) as rig, listening(mosquitto.settings, topics) as seen:
        async with published_session(rig, mosquitto.settings, topics, tmp_path, seconds=60) as (
            session,
            _,
            running,
            publisher,
        ):
            await asyncio.wait_for(publisher.connected.wait(), 5)
            await asyncio.wait_for(publisher.stop_lane_ready.wait(), 5)
            await until(lambda: any(rig.firmware.levels))
            await asyncio.to_thread(
                blast, mosquitto.settings, topics.command("discomfort"), b"3", FLOOD
            )
            sent = time.monotonic()
            await remote_stop(mosquitto.settings, topics, "flood-1")
            await until(lambda: rig.firmware.levels == (0, 0, 0), within=5)
            took = time.monotonic() - sent
            record = await running
            await until(lambda: seen.events("stop_result"), within=5)
            await until(lambda: publisher.stats.commands_dropped > FLOOD / 2, within=10)
    # The count is reported: delivered, or still in the outbox for the next run (under load the
    # flood can outlast the session, and closing gives the broker two seconds).
    kept = []
    writer().flush()  # the publisher's last pops are on the disk before we read it back
    outbox = Outbox(tmp_path / "outbox")
    while (event := outbox.peek()) is not None:
        kept.append(event)
        outbox.pop()
    # One report may be both delivered and still on disk: events carry an id to drop repeats.
    by_id = {e["id"]: e for e in [*seen.events("rejected"), *kept] if e.get("type") == "rejected"}
    reported = list(by_id.values())
    assert any(e.get("reason") == "rate limited" for e in reported)
    assert record.stop_reason == StopReason.REMOTE_STOP
    assert took < 2.0  # the stop did not wait behind the flood (it once took 20 s, or never)
    answer = seen.events("stop_result")[0]
    assert answer["request_id"] == "flood-1"
    assert answer["stop_confirmed"] is True
    assert rig.firmware.applied[-1].cause == "stop"
    # The flood was counted, not queued: the session took a handful of ratings at most.
    assert len(record.ratings) <= 40
    dropped = sum(e["count"] for e in reported if e.get("count"))
    assert dropped + len(record.ratings) <= FLOOD
    assert dropped > FLOOD / 2
    assert session.governor is not None


async def test_a_second_controller_on_the_same_device_id_refuses_and_evicts_nobody(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    topics = Topics("shared")
    async with open_rig("memory", speed=10) as rig, listening(mosquitto.settings, topics) as seen:
        async with published_session(rig, mosquitto.settings, topics, tmp_path, seconds=60) as (
            _,
            _,
            running,
            first,
        ):
            await asyncio.wait_for(first.connected.wait(), 5)
            second = Publisher(mosquitto.settings, topics, outbox=Outbox(None))
            serving = asyncio.create_task(second.run())
            with pytest.raises(DeviceIdInUseError, match="'shared' is already online"):
                await second.wait_claimed(5)
            await second.close()
            await asyncio.wait_for(serving, 5)
            assert first.client_id != second.client_id
            await asyncio.sleep(0.5)
            assert first.stats.connects == 1  # never evicted ...
            assert first.stats.outages == 0
            assert "offline" not in seen.on("availability")  # ... no Last Will fired
            await remote_stop(mosquitto.settings, topics, "owner")
            await until(lambda: seen.events("stop_result"))
            record = await running
    assert seen.events("stop_result")[0]["stop_confirmed"] is True
    assert record.stop_reason == StopReason.REMOTE_STOP


async def test_home_assistants_stop_button_is_confirmed_in_the_retained_state(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    topics = Topics("ha-button")
    async with open_rig("memory", speed=10) as rig, listening(mosquitto.settings, topics) as seen:
        async with published_session(rig, mosquitto.settings, topics, tmp_path) as (
            _,
            _,
            running,
            publisher,
        ):
            await asyncio.wait_for(publisher.stop_lane_ready.wait(), 5)
            await until(lambda: any(rig.firmware.levels))
            await send(mosquitto.settings, topics.command("stop"), b"stop")  # payload_press
            await until(lambda: any(s.get("stop_confirmed") for s in seen.on("state")))
            await running
    assert rig.firmware.levels == (0, 0, 0)
    assert len(seen.events("stop_result")) == 1  # heard on both lanes, answered once


async def _cli(*argv: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "firmware_bridge",
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_massager_stop_exits_0_only_for_devices_that_confirmed(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    url = mosquitto.url
    confirmed, mute = Topics("confirms"), Topics("mute")
    async with (
        open_rig("memory", speed=10) as good,
        open_rig("memory") as silent,  # real time: it goes mute only just before its stop
        published_session(good, mosquitto.settings, confirmed, tmp_path / "a", seconds=60) as (
            _,
            _,
            good_run,
            good_pub,
        ),
        published_session(
            silent,
            mosquitto.settings,
            mute,
            tmp_path / "b",
            seconds=60,
            limits=DeviceLimits(silent_periods=30),  # the stop, not the silence, ends it
        ) as (
            _,
            _,
            mute_run,
            mute_pub,
        ),
    ):
        for publisher in (good_pub, mute_pub):
            await asyncio.wait_for(publisher.connected.wait(), 5)
            await asyncio.wait_for(publisher.stop_lane_ready.wait(), 5)
        await until(lambda: any(silent.firmware.levels))

        code, out, err = await _cli("stop", "--mqtt", url, "--device-id", "confirms")
        assert (code, err) == (0, "")
        assert out.startswith("confirms: stopped; the device confirmed zero in ")
        assert (await good_run).stop_reason == StopReason.REMOTE_STOP

        silent.firmware.plan.mute_at_s = silent.clock.now()  # obeys, but never acknowledges
        code, out, _ = await _cli("stop", "--mqtt", url, "--device-id", "mute", "--timeout", "8")
        assert code == 1
        assert out.startswith("mute: stop sent but NOT confirmed")
        assert (await mute_run).stop_reason == StopReason.REMOTE_STOP
        assert silent.firmware.levels == (0, 0, 0)  # the stop itself got through

    code, out, _ = await _cli("stop", "--mqtt", url, "--device-id", "nosuch", "--timeout", "1")
    assert code == 1
    assert out == "nosuch: unknown on this broker (no controller has announced it)\n"

    code, out, _ = await _cli(
        "stop", "--mqtt", url, "--device-id", "confirms", "--timeout", "1"
    )  # session over
    assert code == 1
    assert out.startswith("confirms: offline")

    code, out, err = await _cli("stop", "--mqtt", url, "--all")
    assert (code, out) == (0, "")
    assert err == "no massager is online; nothing to stop\n"


async def test_events_wait_on_disk_while_the_broker_is_down_and_arrive_later(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    topics = Topics("offline-session")
    outbox = data_dir() / "outbox" / "offline-session"
    mosquitto.stop()  # the port stays reserved for the restart below
    async with open_rig("memory", speed=20) as rig:
        async with published_session(
            rig, mosquitto.settings, topics, tmp_path, seconds=10, outbox=outbox
        ) as (_, _, running, publisher):
            record = await running
        assert publisher.stats.connects == 0
    Outbox(outbox).flush()
    kept = [json.loads(line) for line in (outbox / "outbox.jsonl").read_text().splitlines()]
    types = [event["type"] for event in kept]
    assert types[0] == "session_started"
    assert types[-1] == "stop"
    assert record.stop_reason == StopReason.COMPLETED

    mosquitto.start()
    async with listening(mosquitto.settings, topics) as seen:
        later = Publisher(mosquitto.settings, topics, outbox=Outbox(outbox))
        serving = asyncio.create_task(later.run())
        await until(lambda: len(seen.events()) >= len(kept))
        await later.close()
        await asyncio.wait_for(serving, 5)
    assert [e["id"] for e in seen.events()][: len(kept)] == [e["id"] for e in kept]


async def test_two_simulated_sessions_get_distinct_device_ids(mosquitto: Mosquitto) -> None:
    argv = ("run", "relax", "--sim", "--sim-tier", "memory", "--speed", "50", "--json")
    runs = [
        asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "firmware_bridge",
            *argv,
            "--mqtt",
            mosquitto.url,
            "--max-minutes",
            "1",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(2)
    ]
    processes = await asyncio.gather(*runs)
    outputs = await asyncio.gather(*(p.communicate() for p in processes))
    ids = []
    for process, (out, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err.decode()
        ids.append(json.loads(out)["device"]["id"])
    assert ids[0] != ids[1]
    async with make_client(mosquitto.settings, identifier="test-ids") as client:
        await client.subscribe("massager/+/state", qos=1)
        seen: set[str] = set()
        async with asyncio.timeout(5):
            async for message in client.messages:
                seen.add(str(message.topic).split("/")[1])
                if seen >= set(ids):
                    break
    assert set(ids) <= seen  # both published under their own id


async def test_a_second_run_on_a_taken_device_id_is_one_line_exit_2(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    topics = Topics("taken")
    async with open_rig("memory", speed=10) as rig:
        async with published_session(rig, mosquitto.settings, topics, tmp_path, seconds=60) as (
            _,
            _,
            running,
            first,
        ):
            await asyncio.wait_for(first.connected.wait(), 5)
            code, out, err = await _cli(
                "run", "relax", "--sim", "--sim-tier", "memory", "--mqtt", mosquitto.url,
                "--device-id", "taken", "--json",
            )  # fmt: skip
            assert code == 2
            assert out == ""
            assert err.count("massager: error:") == 1
            assert "device id 'taken' is already online on this broker" in err
            assert "Traceback" not in err
            assert not running.done()  # the first session never noticed
            assert first.stats.outages == 0
            await running


async def test_a_stop_before_the_session_is_attached_keeps_it_from_starting(
    mosquitto: Mosquitto,
) -> None:
    """During the claim check (or any time before attach) a stop is remembered, not dropped."""
    topics = Topics("early")
    publisher = Publisher(mosquitto.settings, topics, outbox=Outbox(None))
    serving = asyncio.create_task(publisher.run())
    try:
        await asyncio.wait_for(publisher.stop_lane_ready.wait(), 5)
        async with open_rig("memory", speed=10) as rig, rig.link() as link:
            async with listening(mosquitto.settings, topics) as seen:
                await remote_stop(mosquitto.settings, topics, "too-early")
                await until(lambda: publisher.stops.stats.received >= 1)
                telemetry = SessionTelemetry(profile="test", cap=4, publisher=publisher)
                session = Session(link, profile(30), SafetySettings(cap=4))
                telemetry.attach(session)  # the early stop is carried out now
                record = await session.run()
                await until(lambda: seen.events("stop_result"))
    finally:
        await publisher.close()
        await asyncio.wait_for(serving, 5)
    assert record.stop_reason == StopReason.REMOTE_STOP
    assert all(not any(r.levels) for r in rig.firmware.applied)  # never any output
    assert seen.events("stop_result")[0]["request_id"] == "too-early"


async def test_an_answer_that_gives_up_never_cancels_the_stop_itself(
    mosquitto: Mosquitto,
) -> None:
    topics = Topics("slow-stop")
    finished: list[bool] = []

    async def slow_stop() -> StopResult:
        await asyncio.sleep(3.0)  # longer than the publisher waits for answers when closing
        finished.append(True)
        return StopResult(StopReason.REMOTE_STOP, confirmed=True, latency_s=3.0)

    stopping: list[asyncio.Task[StopResult]] = []

    def stop() -> asyncio.Task[StopResult]:
        stopping.append(asyncio.create_task(slow_stop()))
        return stopping[-1]

    publisher = Publisher(mosquitto.settings, topics, outbox=Outbox(None))
    publisher.handlers = CommandHandlers(stop=stop, discomfort=lambda _n: None)
    serving = asyncio.create_task(publisher.run())
    await asyncio.wait_for(publisher.stop_lane_ready.wait(), 5)
    await remote_stop(mosquitto.settings, topics, "slow")
    await until(lambda: stopping)
    await publisher.close()  # closing gives up on answers still waiting ...
    await asyncio.wait_for(serving, 5)
    await asyncio.gather(*stopping)
    assert finished == [True] * len(stopping)  # ... never on the stops they waited for
    assert not any(task.cancelled() for task in stopping)


async def test_massager_stop_needs_every_controller_on_the_id_to_confirm(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """A second controller on one id (claim missed) answering "not confirmed" is not hidden by
    the first one's confirmation."""
    topics = Topics("twice")

    async def impostor() -> None:
        async with make_client(mosquitto.settings, identifier="test-impostor") as client:
            await client.subscribe(topics.command("stop"), qos=1)
            async for message in client.messages:
                request = json.loads(message.payload)
                answer = {
                    "type": "stop_result",
                    "request_id": request["request_id"],
                    "stop_confirmed": False,
                    "problem": "no ack from its device",
                }
                await client.publish(topics.events, json.dumps(answer), qos=1)

    async with open_rig("memory", speed=10) as rig:
        async with published_session(rig, mosquitto.settings, topics, tmp_path, seconds=60) as (
            _,
            _,
            running,
            publisher,
        ):
            await asyncio.wait_for(publisher.stop_lane_ready.wait(), 5)
            other = asyncio.create_task(impostor())
            await asyncio.sleep(0.3)
            code, out, _ = await _cli("stop", "--mqtt", mosquitto.url, "--device-id", "twice")
            other.cancel()
            await running
    assert code == 1
    assert out.startswith("twice: stop sent but NOT confirmed (no ack from its device)")


async def test_stop_all_reaches_a_running_session_whose_main_connection_looks_offline(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    topics = Topics("half-online")
    async with open_rig("memory", speed=10) as rig:
        async with published_session(rig, mosquitto.settings, topics, tmp_path, seconds=60) as (
            _,
            _,
            running,
            publisher,
        ):
            await asyncio.wait_for(publisher.connected.wait(), 5)
            await until(lambda: any(rig.firmware.levels))
            # What a Last Will (or a finished controller's clean exit) says about this id.
            await send(mosquitto.settings, topics.availability, b"offline", retain=True)
            code, out, _ = await _cli("stop", "--mqtt", mosquitto.url, "--all")
            record = await running
    assert code == 0, out
    assert out.startswith("half-online: stopped; the device confirmed zero")
    assert record.stop_reason == StopReason.REMOTE_STOP


async def test_a_controller_says_online_again_after_someone_elses_offline(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    topics = Topics("reassert")
    async with open_rig("memory", speed=10) as rig, listening(mosquitto.settings, topics) as seen:
        async with published_session(rig, mosquitto.settings, topics, tmp_path, seconds=60) as (
            session,
            _,
            running,
            publisher,
        ):
            await asyncio.wait_for(publisher.connected.wait(), 5)
            await send(mosquitto.settings, topics.availability, b"offline", retain=True)
            await until(lambda: seen.on("availability")[-1:] == ["online"], within=3)
            await session.stop()
            await running


@pytest.mark.parametrize(("state", "refused"), [("running", True), ("stopped", False)])
async def test_an_id_left_online_by_a_finished_session_can_be_taken_over(
    mosquitto: Mosquitto, state: str, refused: bool
) -> None:
    topics = Topics(f"left-{state}")
    left = json.dumps({"state": state, "session_id": "killed-one"})
    await send(mosquitto.settings, topics.availability, b"online", retain=True)
    await send(mosquitto.settings, topics.state, left, retain=True)
    publisher = Publisher(mosquitto.settings, topics, outbox=Outbox(None))
    serving = asyncio.create_task(publisher.run())
    try:
        if refused:
            with pytest.raises(DeviceIdInUseError):
                await publisher.wait_claimed(5)
        else:
            assert await publisher.wait_claimed(5)
    finally:
        await publisher.close()
        await asyncio.wait_for(serving, 5)


async def test_stop_all_targets_a_running_state_even_when_availability_says_offline(
    mosquitto: Mosquitto,
) -> None:
    """Whose stop lane may still listen: a retained running state counts, and is reported."""
    ghost = Topics("ghost")
    running = json.dumps({"state": "running", "session_id": "s1"})
    await send(mosquitto.settings, ghost.availability, b"offline", retain=True)
    await send(mosquitto.settings, ghost.state, running, retain=True)
    async with make_client(mosquitto.settings, identifier="test-ghost-sub") as listener:
        await listener.subscribe(ghost.command("stop"), qos=1)
        code, out, err = await _cli("stop", "--mqtt", mosquitto.url, "--all", "--timeout", "0.5")
        async with asyncio.timeout(2):
            got = await anext(aiter(listener.messages))
    assert str(got.topic) == ghost.command("stop")  # it was sent the stop ...
    assert code == 1  # ... and nobody pretends it was confirmed
    assert out == "ghost: offline (its controller is not connected); nothing confirmed\n"
    assert err == ""
