"""Remote stop across a broker network (a mosquitto bridge), beside its floors, in one run.

Broker A (the controller host's) bridges to broker B with the configuration the tests use
(`tests/firmware_bridge/test_broker_network.py`: state, availability, telemetry and events
out, `cmd/#` in; no relay in between here). Both are Debian's mosquitto on loopback with
`set_tcp_nodelay true`; every client has TCP_NODELAY. In the same run, on the same machine:

- `bare_a`: QoS 1 publish on A → a plain subscriber on A (one broker's floor);
- `bridge_b_to_a`: QoS 1 publish on B → a plain subscriber on A (the bridge, one way);
- `bridge_round_trip`: publish on B → a subscriber on A republishes → received on B (the
  bridge both ways: the floor of "stop sent on B → answer seen on B");
- `stop_b_to_zero`: a stop published on B (what `massager stop` sends) → the simulator's
  record of zero at the motors, through the controller's Publisher on A;
- `stop_b_to_answer`: the same stop → its `stop_result` event received on B.

Bounded: `-n` stops at most, and no new measurement starts after `--max-seconds`.

Run: `python -m bench.broker_network -n 200 --tier bumble`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import platform
import time
from collections.abc import Callable
from typing import Any

from bench.stats import summary
from firmware_bridge.device import MassagerLink, StopReason, StopResult
from firmware_bridge.telemetry.broker import LOOPBACK
from firmware_bridge.telemetry.mqtt import BrokerSettings, make_client
from firmware_bridge.telemetry.publisher import CommandHandlers, Publisher
from firmware_bridge.telemetry.topics import Topics
from sim.firmware import Firmware
from tests.brokers import Mosquitto
from tests.firmware_bridge.test_broker_network import bridge_config, notification_topic
from tests.rigs import Rig, open_rig

BRIDGE_UP_S = 10.0  # the bridge connects within ~10 ms here; fail loudly past this
ONE_STOP_S = 5.0  # a stop across the bridge takes a few ms; past this the run is broken
SETTLE_S = 0.2  # after the bridge is up: let both brokers finish the bridge's subscriptions


async def _until(predicate: Callable[[], bool], within_s: float = ONE_STOP_S) -> None:
    deadline = time.monotonic() + within_s
    while not predicate():  # polling the simulator's record is the measurement
        if time.monotonic() > deadline:
            raise TimeoutError(f"not within {within_s} s")
        await asyncio.sleep(0)


async def _bridge_up(b: BrokerSettings) -> None:
    async with make_client(b, identifier="bench-bridge-state") as client:
        await client.subscribe(notification_topic(), qos=1)
        async with asyncio.timeout(BRIDGE_UP_S):
            async for message in client.messages:
                if bytes(message.payload) == b"1":
                    break
    await asyncio.sleep(SETTLE_S)


async def one_way(src: BrokerSettings, dst: BrokerSettings, n: int, deadline: float) -> list[float]:
    """Publish on `src`, receive on `dst` (the same broker for the bare floor)."""
    topic = Topics("floor").command("stop")  # a topic the bridge carries B → A
    latencies: list[float] = []
    async with (
        make_client(dst, identifier="bench-floor-rx") as receiver,
        make_client(src, identifier="bench-floor-tx") as sender,
    ):
        await receiver.subscribe(topic, qos=1)
        await asyncio.sleep(SETTLE_S)  # the subscription reaches B through the bridge too
        messages = aiter(receiver.messages)
        for _ in range(n):
            if time.monotonic() > deadline:
                break
            sent = time.monotonic()
            await sender.publish(topic, b"stop", qos=1)
            async with asyncio.timeout(ONE_STOP_S):
                await anext(messages)
            latencies.append(time.monotonic() - sent)
    return latencies


async def round_trip(a: BrokerSettings, b: BrokerSettings, n: int, deadline: float) -> list[float]:
    """Publish a command on B; an echo client on A answers on the events topic; seen on B."""
    topics = Topics("echo")
    latencies: list[float] = []
    async with (
        make_client(a, identifier="bench-echo") as echo,
        make_client(b, identifier="bench-rt-rx") as receiver,
        make_client(b, identifier="bench-rt-tx") as sender,
    ):
        await echo.subscribe(topics.command("stop"), qos=1)
        await receiver.subscribe(topics.events, qos=1)
        await asyncio.sleep(SETTLE_S)

        async def answer() -> None:
            async for message in echo.messages:
                await echo.publish(topics.events, bytes(message.payload), qos=1)

        answering = asyncio.create_task(answer())
        try:
            messages = aiter(receiver.messages)
            for _ in range(n):
                if time.monotonic() > deadline:
                    break
                sent = time.monotonic()
                await sender.publish(topics.command("stop"), b"stop", qos=1)
                async with asyncio.timeout(ONE_STOP_S):
                    await anext(messages)
                latencies.append(time.monotonic() - sent)
        finally:
            answering.cancel()
            await asyncio.gather(answering, return_exceptions=True)
    return latencies


async def _running(rig: Rig, link: MassagerLink, level: int) -> int:
    """Start and reach `level`; the index of the next applied-levels record."""
    await link.start()
    link.set_levels((level,) * link.zones)
    await _until(lambda: rig.firmware.levels[0] == level)
    return len(rig.firmware.applied)


def _zeroed_at(firmware: Firmware, seen: int) -> float | None:
    return next((r.t for r in firmware.applied[seen:] if r.cause == "stop"), None)


def _zero_recorded(firmware: Firmware, seen: int) -> Callable[[], bool]:
    return lambda: _zeroed_at(firmware, seen) is not None


def _answered(answers: dict[str, float], request_id: str) -> Callable[[], bool]:
    return lambda: request_id in answers


async def remote_stops(
    a: BrokerSettings, b: BrokerSettings, tier: str, n: int, deadline: float
) -> dict[str, list[float]]:
    """Stops published on B to a controller on A: → motors at zero, and → answer seen on B."""
    to_zero: list[float] = []
    to_answer: list[float] = []
    async with open_rig(tier) as rig, rig.link() as link:
        topics = Topics("bench-network")
        publisher = Publisher(a, topics)
        stops: list[asyncio.Task[StopResult]] = []

        def stop() -> asyncio.Task[StopResult]:
            stops.append(asyncio.create_task(link.stop(StopReason.REMOTE_STOP)))
            return stops[-1]

        publisher.handlers = CommandHandlers(stop=stop, discomfort=lambda _n: None)
        serving = asyncio.create_task(publisher.run())
        try:
            await asyncio.wait_for(publisher.stop_lane_ready.wait(), BRIDGE_UP_S)
            async with make_client(b, identifier="bench-network-sender") as sender:
                await sender.subscribe(topics.events, qos=1)
                await asyncio.sleep(SETTLE_S)
                answers: dict[str, float] = {}

                async def listen() -> None:
                    async for message in sender.messages:
                        event: Any = json.loads(bytes(message.payload))
                        if event.get("type") == "stop_result" and event.get("request_id"):
                            answers[str(event["request_id"])] = rig.clock.now()

                listening = asyncio.create_task(listen())
                try:
                    for i in range(n):
                        if time.monotonic() > deadline:
                            break
                        seen = await _running(rig, link, 5 + i % 10)
                        request_id = f"bench-{i}"
                        body = json.dumps({"request_id": request_id, "ts": round(time.time(), 3)})
                        sent = rig.clock.now()
                        await sender.publish(topics.command("stop"), body, qos=1)
                        await _until(_zero_recorded(rig.firmware, seen))
                        await _until(_answered(answers, request_id))
                        zeroed = _zeroed_at(rig.firmware, seen)
                        assert zeroed is not None
                        to_zero.append(zeroed - sent)
                        to_answer.append(answers[request_id] - sent)
                        await asyncio.gather(*stops)  # heard on both lanes: idempotent
                        stops.clear()
                finally:
                    listening.cancel()
                    await asyncio.gather(listening, return_exceptions=True)
        finally:
            await publisher.close()
            await serving
    return {"stop_b_to_zero": to_zero, "stop_b_to_answer": to_answer}


async def measure(n: int, tier: str, max_seconds: float, bridge_on: str) -> dict[str, object]:
    deadline = time.monotonic() + max_seconds
    results: dict[str, object] = {"tier": tier, "n": n, "bridge_on": bridge_on}
    if bridge_on == "a":  # the tested layout: the controller's broker dials out
        b = Mosquitto().start()
        a = Mosquitto(extra_config=bridge_config(f"{LOOPBACK}:{b.port}"))
    else:  # the network's broker dials the controller's
        a = Mosquitto().start()
        b = Mosquitto(extra_config=bridge_config(f"{LOOPBACK}:{a.port}", on="network"))
    try:
        (a if bridge_on == "a" else b).start()
        await _bridge_up(b.settings)
        results["bare_a"] = summary(await one_way(a.settings, a.settings, n, deadline))
        results["bridge_b_to_a"] = summary(await one_way(b.settings, a.settings, n, deadline))
        results["bridge_round_trip"] = summary(
            await round_trip(a.settings, b.settings, n, deadline)
        )
        for name, samples in (
            await remote_stops(a.settings, b.settings, tier, n, deadline)
        ).items():
            results[name] = summary(samples)
    finally:
        a.close()
        b.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=200, help="samples per measurement (at most)")
    parser.add_argument("--tier", choices=("memory", "bumble"), default="bumble")
    parser.add_argument(
        "--bridge-on",
        choices=("a", "b"),
        default="a",
        help="which broker holds the bridge: a, the controller's (tested), or b",
    )
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=300.0,
        help="no new sample starts after this many seconds (default 300)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # each remote stop is logged at WARNING by design
    started = time.monotonic()
    result = asyncio.run(measure(args.n, args.tier, args.max_seconds, args.bridge_on))
    result["python"] = platform.python_version()
    result["wall_s"] = round(time.monotonic() - started, 1)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
