"""`massager monitor` at fleet size: how many messages a second it folds into its view.

A publisher sends N devices' telemetry (as fast as mosquitto takes it, QoS 0) for `seconds`;
the monitor's own subscription and parsing (`_watch` → `apply_message`) fold them into its
views, and the fleet summary is rendered as the live screen would. The floor, in the same run:
a bare aiomqtt subscriber receiving the same stream without parsing. Run:
`python -m bench.monitor_scale --devices 1000 --seconds 5`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
import time
from typing import Any

from bench.capacity import rss_mib
from firmware_bridge.cli.monitor import Change, DeviceView, _watch
from firmware_bridge.cli.monitor_summary import render_summary
from firmware_bridge.telemetry.mqtt import BrokerSettings, make_client
from firmware_bridge.telemetry.payloads import TelemetryPayload
from firmware_bridge.telemetry.topics import Topics
from tests.brokers import Mosquitto

PREFIX = "bench-monitor"


def _payload(n: int) -> bytes:
    return TelemetryPayload(
        ts=time.time(), intensity=0.3, applied=0.3, cap=4, nrs=1, battery=80,
        temperature_c=31.0, rssi=-60, elapsed_s=n, remaining_s=100.0, segment="warm-up",
    ).model_dump_json().encode()  # fmt: skip


async def _publish_elsewhere(settings: BrokerSettings, devices: int, seconds: float) -> int:
    """`_publish` in another process, so the monitor has this one to itself; the count sent."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.monitor_scale", "--publish", str(settings.port),
        "--devices", str(devices), "--seconds", str(seconds),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await process.communicate()
    return int(out)


async def _publish(settings: BrokerSettings, devices: int, seconds: float) -> int:
    """Telemetry for `devices` devices round-robin for `seconds`; the count sent."""
    topics = [Topics(f"dev-{n:04d}", PREFIX).telemetry for n in range(devices)]
    sent = 0
    end = time.monotonic() + seconds
    async with make_client(settings, identifier="bench-monitor-pub") as client:
        while time.monotonic() < end:
            for topic in topics[:200]:
                await client.publish(topic, _payload(sent), qos=0)
                sent += 1
            topics = topics[200:] + topics[:200]
    return sent


class _Counting:
    def __init__(self) -> None:
        self.count = 0

    def changed(self, change: Change) -> None:
        self.count += 1

    def status(self, text: str) -> None:
        pass


async def measure_monitor(settings: BrokerSettings, devices: int, seconds: float) -> dict[str, Any]:
    views: dict[str, DeviceView] = {}
    sink = _Counting()
    rss0 = rss_mib()
    watching = asyncio.create_task(
        _watch(settings, [f"{PREFIX}/+/telemetry"], PREFIX, views, sink)  # type: ignore[arg-type]
    )
    await asyncio.sleep(0.5)
    cpu0 = time.process_time()
    sent = await _publish_elsewhere(settings, devices, seconds)
    await asyncio.sleep(0.5)  # what is in flight arrives
    cpu = time.process_time() - cpu0
    render0 = time.perf_counter()
    lines = render_summary(views.values(), rows=24)
    render_ms = (time.perf_counter() - render0) * 1000
    watching.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watching
    return {
        "devices_seen": len(views),
        "sent": sent,
        "folded": sink.count,
        "offered_per_s": round(sent / seconds),  # the publisher's rate while it ran
        "lost": sent - sink.count,
        "cpu_ms_per_message": round(1000 * cpu / max(sink.count, 1), 3),
        "summary_render_ms": round(render_ms, 2),
        "summary_lines": len(lines),
        "rss_growth_mib": round(rss_mib() - rss0, 1),
    }


async def measure_bare(settings: BrokerSettings, devices: int, seconds: float) -> dict[str, Any]:
    received = 0
    async with make_client(settings, identifier="bench-bare-sub", max_queued_incoming=50_000) as c:
        await c.subscribe(f"{PREFIX}/+/telemetry")

        async def count() -> None:
            nonlocal received
            async for _ in c.messages:
                received += 1

        counting = asyncio.create_task(count())
        cpu0 = time.process_time()
        sent = await _publish_elsewhere(settings, devices, seconds)
        await asyncio.sleep(0.5)
        cpu = time.process_time() - cpu0
        counting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await counting
    return {
        "sent": sent,
        "received": received,
        "offered_per_s": round(sent / seconds),
        "cpu_ms_per_message": round(1000 * cpu / max(received, 1), 3),
    }


async def measure(devices: int, seconds: float) -> dict[str, Any]:
    broker = Mosquitto()
    broker.start()
    try:
        return {
            "devices": devices,
            "monitor": await measure_monitor(broker.settings, devices, seconds),
            "floor_bare_subscriber": await measure_bare(broker.settings, devices, seconds),
        }
    finally:
        broker.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--publish", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    if args.publish:  # the publishing side, run by _publish_elsewhere
        settings = BrokerSettings(host="127.0.0.1", port=args.publish)
        print(asyncio.run(_publish(settings, args.devices, args.seconds)))
        return
    print(json.dumps(asyncio.run(measure(args.devices, args.seconds)), indent=2))


if __name__ == "__main__":
    main()
