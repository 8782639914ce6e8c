"""Two mosquitto brokers joined by a mosquitto bridge: a controller on one, `massager stop` on
the other (real brokers on 127.0.0.1, no mocks).

Broker A is the controller host's own broker; broker B is the one the rest of the network uses
(dashboards, `massager stop`). The bridge is configured on A and dials out to B: adding a
controller host then changes nothing on B, A can sit behind NAT, and A alone decides what
leaves the host. Its state, availability, telemetry and events go out; `cmd/#` comes in. No
topic goes both ways, so nothing can loop between the two brokers.

In these tests the bridge goes through `Relay`, a TCP relay in the test's event loop, so a
test can cut the link between the brokers while both keep running (a network partition);
`bench/broker_network.py` measures the bridge without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from firmware_bridge.device import StopReason
from firmware_bridge.telemetry.broker import LOOPBACK
from firmware_bridge.telemetry.mqtt import BrokerSettings, make_client
from firmware_bridge.telemetry.topics import DEFAULT_PREFIX, Topics
from tests.brokers import Mosquitto, MosquittoFactory
from tests.mqtt_sessions import listening, published_session
from tests.rigs import open_rig, until

pytestmark = pytest.mark.sim_only

BRIDGE_NAME = "controller-host-a"  # the connection's name; also its client id on broker B
BRIDGE_UP_S = 10.0  # the bridge connects within ~10 ms here; a loaded CI runner takes longer
CONNECT_S = (
    5.0  # a client or controller is connected (and retained state read) in ms here; CI is slower
)
BRIDGE_RETRY_S = 1  # `restart_timeout`: a constant 1 s between reconnect attempts (no backoff)
BRIDGE_KEEPALIVE_S = 15  # as the controller's own connections: a silent partition is seen in ~23 s
CLI_TIMEOUT_S = 30.0  # a `massager stop` subprocess takes ~1-2 s (interpreter start + its waits)
STOP_WAIT_S = "1"  # `massager stop --timeout` (seconds) where nobody can answer: no use waiting
TELEMETRY_S = 10.0  # two 2 Hz telemetry messages take ~1 s; 10 s for a loaded CI runner
DOCS = Path(__file__).resolve().parents[2] / "docs" / "scale.md"


def bridge_topics(prefix: str = DEFAULT_PREFIX, *, on: str = "controller") -> list[str]:
    """What the bridge carries: state, telemetry and events away from the controller's broker,
    `cmd/#` to it; QoS per topic as the controller publishes (telemetry QoS 0, the rest QoS 1).

    `on` says which broker holds the bridge: "controller" (A, the tested layout) or "network"
    (B, dialling the controller's broker; `bench/broker_network.py --bridge-on b` compares)."""
    away, toward = ("out", "in") if on == "controller" else ("in", "out")
    return [
        f"topic {prefix}/+/availability {away} 1",
        f"topic {prefix}/+/state {away} 1",
        f"topic {prefix}/+/telemetry {away} 0",
        f"topic {prefix}/+/events {away} 1",
        f"topic {prefix}/+/cmd/# {toward} 1",
    ]


def bridge_config(
    address: str, *, prefix: str = DEFAULT_PREFIX, on: str = "controller"
) -> list[str]:
    """The bridge section of broker A's mosquitto.conf (the one docs/scale.md shows)."""
    return [
        f"connection {BRIDGE_NAME}",
        f"address {address}",
        f"remote_clientid {BRIDGE_NAME}",  # unique per controller host, or bridges evict each other
        "cleansession false",  # both brokers keep QoS 1 messages for the bridge across an outage
        "try_private true",  # mosquitto ↔ mosquitto: each knows the other is a bridge (loops)
        "start_type automatic",
        f"restart_timeout {BRIDGE_RETRY_S}",
        f"keepalive_interval {BRIDGE_KEEPALIVE_S}",
        "notifications true",  # $SYS/broker/connection/<remote_clientid>/state: 1 up, 0 down
        *bridge_topics(prefix, on=on),
    ]


def notification_topic() -> str:
    return f"$SYS/broker/connection/{BRIDGE_NAME}/state"


class Relay:
    """A TCP relay on 127.0.0.1 in front of `target_port`; `cut()` closes every connection and
    refuses new ones (accepts and closes at once) until `mend()`."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.up = True
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._pumps: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> Relay:
        self._server = await asyncio.start_server(self._accept, LOOPBACK, 0)
        return self

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.up:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(LOOPBACK, self.target_port)
        except OSError:
            writer.close()
            return
        for pump in (self._pump(reader, up_writer), self._pump(up_reader, writer)):
            task = asyncio.create_task(pump)
            self._pumps.add(task)
            task.add_done_callback(self._pumps.discard)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    def cut(self) -> None:
        self.up = False
        for writer in list(self._writers):
            writer.transport.abort()  # no FIN handshake to wait for: the link is simply gone

    def mend(self) -> None:
        self.up = True

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._pumps):
            task.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)


async def bridge_state(settings: BrokerSettings, *, wanted: str, within_s: float) -> None:
    """Wait until the retained bridge notification on a broker says `wanted` ("1" or "0")."""
    async with make_client(settings, identifier=f"test-bridge-state-{wanted}") as client:
        await client.subscribe(notification_topic(), qos=1)
        async with asyncio.timeout(within_s):
            async for message in client.messages:
                if bytes(message.payload) == wanted.encode():
                    return


@dataclass
class Network:
    a: Mosquitto  # the controller host's broker; the bridge is configured here
    b: Mosquitto  # the rest of the network's broker
    relay: Relay  # between A's bridge and B


@contextlib.asynccontextmanager
async def broker_network(
    factory: MosquittoFactory, *, topics: Sequence[str] | None = None
) -> AsyncIterator[Network]:
    b = factory()
    relay = await Relay(b.port).start()
    lines = bridge_config(f"{LOOPBACK}:{relay.port}")
    if topics is not None:
        lines = [line for line in lines if not line.startswith("topic ")] + list(topics)
    a = factory(extra_config=lines)
    try:
        await bridge_state(b.settings, wanted="1", within_s=BRIDGE_UP_S)
        yield Network(a, b, relay)
    finally:
        await relay.close()


@pytest.fixture
async def network(mosquitto_factory: MosquittoFactory) -> AsyncIterator[Network]:
    async with broker_network(mosquitto_factory) as joined:
        yield joined


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
    out, err = await asyncio.wait_for(process.communicate(), CLI_TIMEOUT_S)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def _retained(settings: BrokerSettings, topics: Topics) -> dict[str, bytes]:
    """What a newcomer on `settings` is told first: the retained availability and state."""
    found: dict[str, bytes] = {}
    async with make_client(settings, identifier="test-newcomer") as client:
        for topic in (topics.availability, topics.state):
            await client.subscribe(topic, qos=1)
        async with asyncio.timeout(CONNECT_S):
            async for message in client.messages:
                if message.retain:
                    found[str(message.topic)] = bytes(message.payload)
                if len(found) == 2:
                    break
    return found


async def online_on(settings: BrokerSettings, topics: Topics, within_s: float = CONNECT_S) -> None:
    """Wait until a broker has told a subscriber that the device is `online` (retained or live):
    then a `massager stop` on it sees the device as announced."""
    async with make_client(settings, identifier=f"test-online-{topics.device_id}") as client:
        await client.subscribe(topics.availability, qos=1)
        async with asyncio.timeout(within_s):
            async for message in client.messages:
                if bytes(message.payload) == b"online":
                    return


async def test_a_controller_on_broker_a_is_seen_from_broker_b(
    network: Network, tmp_path: Path
) -> None:
    topics = Topics("host-a-seen")
    async with (
        open_rig("memory", speed=10) as rig,
        listening(network.b.settings, topics) as on_b,
        published_session(rig, network.a.settings, topics, tmp_path, seconds=60) as (
            session,
            _,
            running,
            publisher,
        ),
    ):
        await asyncio.wait_for(publisher.connected.wait(), CONNECT_S)
        await until(lambda: len(on_b.on("telemetry")) >= 2, within=TELEMETRY_S)  # bridged
        await until(lambda: on_b.events("session_started"), within=CONNECT_S)
        retained = await _retained(network.b.settings, topics)  # a client arriving later
        await session.stop()
        await running
    assert retained[topics.availability] == b"online"
    assert json.loads(retained[topics.state])["state"] == "running"
    assert on_b.on("telemetry")[-1]["intensity"] > 0


async def test_massager_stop_on_broker_b_stops_the_controller_on_broker_a(
    network: Network, tmp_path: Path
) -> None:
    topics = Topics("host-a-stop")
    async with (
        open_rig("memory", speed=10) as rig,
        published_session(rig, network.a.settings, topics, tmp_path, seconds=60) as (
            _,
            _,
            running,
            publisher,
        ),
    ):
        await asyncio.wait_for(publisher.stop_lane_ready.wait(), CONNECT_S)
        await until(lambda: any(rig.firmware.levels))
        await online_on(network.b.settings, topics)
        code, out, err = await _cli(
            "stop", "--mqtt", network.b.url, "--device-id", topics.device_id
        )
        record = await running
    assert (code, err) == (0, ""), out
    assert out.startswith(f"{topics.device_id}: stopped; the device confirmed zero in ")
    assert record.stop_reason == StopReason.REMOTE_STOP
    assert rig.firmware.levels == (0, 0, 0)


async def test_a_stop_on_b_while_the_bridge_is_down_is_not_reported_as_done(
    network: Network, tmp_path: Path
) -> None:
    """B still holds the retained `online` from before the partition, so `massager stop` sends
    the stop; nobody answers, and it says so. B keeps the stop for the bridge (QoS 1, persistent
    bridge session) and delivers it when the link returns."""
    topics = Topics("host-a-cut")
    async with (
        open_rig("memory", speed=10) as rig,
        # 300 s at 10x: 30 s of real time, far longer than the test needs (it must not end
        # on its own before the held stop arrives).
        published_session(rig, network.a.settings, topics, tmp_path, seconds=300) as (
            _,
            _,
            running,
            publisher,
        ),
    ):
        await asyncio.wait_for(publisher.stop_lane_ready.wait(), CONNECT_S)
        await until(lambda: any(rig.firmware.levels))
        await online_on(network.b.settings, topics)
        network.relay.cut()
        await bridge_state(network.b.settings, wanted="0", within_s=BRIDGE_UP_S)
        code, out, err = await _cli(
            "stop", "--mqtt", network.b.url, "--device-id", topics.device_id,
            "--timeout", STOP_WAIT_S,
        )  # fmt: skip
        assert (code, out, err) == (
            1,
            f"{topics.device_id}: no confirmation within {STOP_WAIT_S} s\n",
            "",
        )
        assert not running.done()  # the stop did not reach the controller ...
        assert any(rig.firmware.levels)

        code, out, _ = await _cli(
            "stop",
            "--mqtt",
            network.b.url,
            "--device-id",
            "never-bridged",
            "--timeout",
            STOP_WAIT_S,
        )
        assert (code, out) == (1, "never-bridged: unknown on this broker (no controller has "
                                  "announced it)\n")  # fmt: skip

        network.relay.mend()  # ... until the link returns: B then delivers the stop it held
        record = await asyncio.wait_for(asyncio.shield(running), BRIDGE_UP_S)
    assert record.stop_reason == StopReason.REMOTE_STOP
    assert rig.firmware.levels == (0, 0, 0)


async def test_without_the_cmd_direction_massager_stop_on_b_reaches_nothing(
    mosquitto_factory: MosquittoFactory, tmp_path: Path
) -> None:
    """The `cmd/#` line is what carries stops: without it B still sees the controller online
    (state flows out), and `massager stop` must say it got no confirmation."""
    out_only = [line for line in bridge_topics() if " in " not in line]
    topics = Topics("host-a-deaf")
    async with (
        broker_network(mosquitto_factory, topics=out_only) as joined,
        open_rig("memory", speed=10) as rig,
        published_session(rig, joined.a.settings, topics, tmp_path, seconds=60) as (
            session,
            _,
            running,
            publisher,
        ),
    ):
        await asyncio.wait_for(publisher.stop_lane_ready.wait(), CONNECT_S)
        await online_on(joined.b.settings, topics)
        code, out, _ = await _cli(
            "stop",
            "--mqtt",
            joined.b.url,
            "--device-id",
            topics.device_id,
            "--timeout",
            STOP_WAIT_S,
        )
        assert not running.done()
        await session.stop()
        await running
    assert (code, out) == (1, f"{topics.device_id}: no confirmation within {STOP_WAIT_S} s\n")


def test_docs_show_the_tested_bridge_config() -> None:
    """docs/scale.md shows broker A's bridge section exactly as these tests write it."""
    text = DOCS.read_text(encoding="utf-8")
    blocks = re.findall(r"```(?:conf|text)\n(.*?)```", text, flags=re.DOTALL)
    shown = [b for b in blocks if b.startswith(f"connection {BRIDGE_NAME}\n")]
    assert len(shown) == 1, "docs/scale.md must show the bridge section once"
    # The docs name the listener of broker B as it would be on another host.
    body = shown[0].splitlines()
    address = next(line for line in body if line.startswith("address "))
    assert body == bridge_config(address.removeprefix("address "))
