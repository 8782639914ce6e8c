"""Remote stop latency: publish on `cmd/stop` → the simulator applies zero, through a broker.

A separate MQTT client publishes each stop (QoS 1, as `massager stop` does) to Debian's
mosquitto on loopback (`set_tcp_nodelay true`); the controller's Publisher hands it to the
link, which writes zero ahead of everything. The simulator's record says when zero reached the
motors, on the clock the sender used. Run: `python -m bench.remote_stop -n 1000`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import platform
import time

from bench.stats import summary
from firmware_bridge.device import StopReason, StopResult
from firmware_bridge.telemetry.mqtt import make_client
from firmware_bridge.telemetry.publisher import CommandHandlers, Publisher
from firmware_bridge.telemetry.topics import Topics
from tests.brokers import Mosquitto
from tests.rigs import open_rig


async def measure(n: int, tier: str, qos: int) -> dict[str, object]:
    broker = Mosquitto()
    broker.start()
    latencies: list[float] = []
    try:
        async with open_rig(tier) as rig, rig.link() as link:
            topics = Topics("bench")
            publisher = Publisher(broker.settings, topics)
            stops: list[asyncio.Task[StopResult]] = []

            def stop() -> asyncio.Task[StopResult]:
                stops.append(asyncio.create_task(link.stop(StopReason.REMOTE_STOP)))
                return stops[-1]

            publisher.handlers = CommandHandlers(stop=stop, discomfort=lambda _n: None)
            serving = asyncio.create_task(publisher.run())
            await asyncio.wait_for(publisher.connected.wait(), 5)
            async with make_client(broker.settings, identifier="bench-sender") as sender:
                for i in range(n):
                    await link.start()
                    level = 5 + i % 10
                    link.set_levels((level,) * link.zones)
                    while rig.firmware.levels[0] != level:  # noqa: ASYNC110 - the record is the truth
                        await asyncio.sleep(0)
                    seen = len(rig.firmware.applied)
                    sent = rig.clock.now()
                    await sender.publish(topics.command("stop"), b"stop", qos=qos)
                    while not any(r.cause == "stop" for r in rig.firmware.applied[seen:]):  # noqa: ASYNC110
                        await asyncio.sleep(0)
                    zeroed = next(r for r in rig.firmware.applied[seen:] if r.cause == "stop")
                    latencies.append(zeroed.t - sent)
                    await asyncio.gather(*stops)  # heard on both lanes: two idempotent stops
                    stops.clear()
            await publisher.close()
            await serving
    finally:
        broker.close()
    return {"tier": tier, "qos": qos, "publish_to_motors_zero": summary(latencies)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=1000)
    parser.add_argument("--tier", choices=("memory", "bumble"), default="bumble")
    parser.add_argument("--qos", type=int, choices=(0, 1), default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # each remote stop is logged at WARNING by design
    started = time.monotonic()
    result = asyncio.run(measure(args.n, args.tier, args.qos))
    result["python"] = platform.python_version()
    result["wall_s"] = round(time.monotonic() - started, 1)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
