"""Remote stop latency through a broker, beside the floors it could reach, in one run.

A separate MQTT client publishes each stop (QoS 1, as `massager stop` does) to Debian's
mosquitto on loopback (`set_tcp_nodelay true`); the controller's Publisher hands it to the
link, which writes zero ahead of everything. The simulator's record says when zero reached the
motors, on the clock the sender used. In the same run and on the same machine:

- `bare_broker`: the same publish to a plain aiomqtt subscriber (the broker's own floor);
- `bare_link`: `link.stop()` called directly (the BLE stack's floor, no broker);
- `remote_stop`: publish → motors at zero through the controller;
- `remote_stop_after_flood`: the same, right after a hostile client has written `--flood`
  QoS 0 `cmd/discomfort` messages in one burst (the stop must not wait behind them).

Run: `python -m bench.remote_stop -n 1000 --flood 20000 --flood-runs 20`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import platform
import time
from collections.abc import Callable

from bench.stats import summary
from firmware_bridge.device import MassagerLink, StopReason, StopResult
from firmware_bridge.telemetry.mqtt import make_client
from firmware_bridge.telemetry.publisher import CommandHandlers, Publisher
from firmware_bridge.telemetry.topics import Topics
from sim.firmware import Firmware
from tests.brokers import Mosquitto
from tests.firmware_bridge.test_remote_stop import blast
from tests.rigs import Rig, open_rig


async def _until(predicate: Callable[[], bool]) -> None:
    while not predicate():  # noqa: ASYNC110 - polling the simulator's record is the measurement
        await asyncio.sleep(0)


async def _running(rig: Rig, link: MassagerLink, level: int) -> int:
    """Start and reach `level`; the index of the next applied-levels record."""
    await link.start()
    link.set_levels((level,) * link.zones)
    await _until(lambda: rig.firmware.levels[0] == level)
    return len(rig.firmware.applied)


def _zeroed_at(firmware: Firmware, seen: int) -> float | None:
    return next((r.t for r in firmware.applied[seen:] if r.cause == "stop"), None)


async def bare_broker(broker: Mosquitto, n: int) -> list[float]:
    topic = Topics("floor").command("stop")
    latencies: list[float] = []
    async with (
        make_client(broker.settings, identifier="bench-floor-rx") as receiver,
        make_client(broker.settings, identifier="bench-floor-tx") as sender,
    ):
        await receiver.subscribe(topic, qos=1)
        messages = aiter(receiver.messages)
        for _ in range(n):
            sent = time.monotonic()
            await sender.publish(topic, b"stop", qos=1)
            await anext(messages)
            latencies.append(time.monotonic() - sent)
    return latencies


async def measure(n: int, tier: str, flood: int, flood_runs: int) -> dict[str, object]:
    broker = Mosquitto()
    broker.start()
    results: dict[str, object] = {"tier": tier, "n": n, "flood": flood, "flood_runs": flood_runs}
    try:
        results["bare_broker"] = summary(await bare_broker(broker, n))
        async with open_rig(tier) as rig, rig.link() as link:
            direct: list[float] = []
            for i in range(n):
                seen = await _running(rig, link, 5 + i % 10)
                requested = rig.clock.now()
                await link.stop(StopReason.USER_STOP)
                zeroed = _zeroed_at(rig.firmware, seen)
                assert zeroed is not None
                direct.append(zeroed - requested)
            results["bare_link"] = summary(direct)

            topics = Topics("bench")
            publisher = Publisher(broker.settings, topics)
            stops: list[asyncio.Task[StopResult]] = []

            def stop() -> asyncio.Task[StopResult]:
                stops.append(asyncio.create_task(link.stop(StopReason.REMOTE_STOP)))
                return stops[-1]

            publisher.handlers = CommandHandlers(stop=stop, discomfort=lambda _n: None)
            serving = asyncio.create_task(publisher.run())
            await asyncio.wait_for(publisher.connected.wait(), 5)
            await asyncio.wait_for(publisher.stop_lane_ready.wait(), 5)
            async with make_client(broker.settings, identifier="bench-sender") as sender:
                for name, runs, burst in (
                    ("remote_stop", n, 0),
                    ("remote_stop_after_flood", flood_runs, flood),
                ):
                    latencies: list[float] = []
                    for i in range(runs):
                        seen = await _running(rig, link, 5 + i % 10)
                        if burst:
                            flood_topic = topics.command("discomfort")
                            await asyncio.to_thread(
                                blast, broker.settings, flood_topic, b"3", burst
                            )
                        sent = rig.clock.now()
                        await sender.publish(topics.command("stop"), b"stop", qos=1)
                        while (zeroed := _zeroed_at(rig.firmware, seen)) is None:  # noqa: ASYNC110
                            await asyncio.sleep(0)
                        latencies.append(zeroed - sent)
                        await asyncio.gather(*stops)  # heard on both lanes: idempotent
                        stops.clear()
                        if burst:
                            await asyncio.sleep(1.0)  # let the flood drain before the next run
                    results[name] = summary(latencies)
            results["commands_dropped"] = publisher.stats.commands_dropped
            await publisher.close()
            await serving
    finally:
        broker.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=1000, help="stops per plain measurement")
    parser.add_argument("--tier", choices=("memory", "bumble"), default="bumble")
    parser.add_argument("--flood", type=int, default=20_000, help="messages before each stop")
    parser.add_argument("--flood-runs", type=int, default=20, help="flooded stops measured")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # each remote stop is logged at WARNING by design
    started = time.monotonic()
    result = asyncio.run(measure(args.n, args.tier, args.flood, args.flood_runs))
    result["python"] = platform.python_version()
    result["wall_s"] = round(time.monotonic() - started, 1)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
