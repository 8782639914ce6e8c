"""Capacity: how many simulated massagers one process runs at 20 Hz control and 2 Hz telemetry.

Each device is a full session (profile → governor → link → tier-1 simulator) publishing state,
telemetry and events to mosquitto on loopback. The simulators run in the same process, so the
per-device cost includes the simulated device too (a real deployment pays only the controller
side and the BLE stack). A control tick counts as missed when it runs more than one control
period (50 ms) late. Run: `python -m bench.capacity --devices 1 10 25 50 100 --seconds 20`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import platform
import resource
import statistics
import time
from pathlib import Path
from tempfile import TemporaryDirectory

from firmware_bridge.durable import writer
from firmware_bridge.runner import Session
from firmware_bridge.safety import SafetySettings
from firmware_bridge.telemetry.bridge import SessionTelemetry
from firmware_bridge.telemetry.outbox import Outbox
from firmware_bridge.telemetry.publisher import Publisher
from firmware_bridge.telemetry.topics import Topics
from profiles.model import Profile
from tests.brokers import Mosquitto
from tests.rigs import open_rig

MISS_S = 0.05  # one control period at 20 Hz


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def profile(seconds: float) -> Profile:
    return Profile.model_validate(
        {
            "name": "bench",
            "title": "Bench",
            "segments": [
                {"kind": "wave", "duration_s": seconds, "low": 0.2, "high": 0.8, "period_s": 4},
                {"kind": "rest", "duration_s": 30, "cool_down": True},
            ],
        }
    )


async def one_device(
    index: int, broker: Mosquitto, seconds: float, workdir: Path, ready: asyncio.Barrier
) -> Session:
    async with open_rig("memory") as rig, rig.link() as link:
        publisher = Publisher(
            broker.settings, Topics(f"bench-{index}"), outbox=Outbox(workdir / str(index))
        )
        serving = asyncio.create_task(publisher.run())
        telemetry = SessionTelemetry(profile="bench", cap=6, publisher=publisher)
        session = Session(
            link,
            profile(seconds),
            SafetySettings(cap=6),
            on_sample=telemetry.sample,
            on_event=telemetry.event,
        )
        telemetry.attach(session)
        await ready.wait()
        running = asyncio.create_task(session.run())
        await asyncio.sleep(seconds)
        await session.stop()
        await running
        await publisher.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(serving, 5)
        return session


async def measure(
    devices: int, seconds: float, broker: Mosquitto, rss_baseline: float
) -> dict[str, object]:
    with TemporaryDirectory() as tmp:
        ready = asyncio.Barrier(devices + 1)
        tasks = [
            asyncio.create_task(one_device(i, broker, seconds, Path(tmp), ready))
            for i in range(devices)
        ]
        await ready.wait()
        cpu0, wall0 = time.process_time(), time.monotonic()
        await asyncio.sleep(seconds / 2)
        rss_during = rss_mib()
        sessions = await asyncio.gather(*tasks)
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
        # The outboxes' files are written on the durable writer's thread: let it finish before
        # the directory is removed (else "Directory not empty" now and then).
        await asyncio.to_thread(writer().flush)
    lateness = sorted(late for s in sessions for late in s.control_lateness_s)
    pct = statistics.quantiles(lateness, n=100, method="inclusive")
    missed = sum(1 for late in lateness if late > MISS_S)
    return {
        "devices": devices,
        "ticks": len(lateness),
        "lateness_median_ms": round(statistics.median(lateness) * 1000, 2),
        "lateness_p90_ms": round(pct[89] * 1000, 2),
        "lateness_p99_ms": round(pct[98] * 1000, 2),
        "lateness_max_ms": round(lateness[-1] * 1000, 2),
        "missed_pct": round(100 * missed / len(lateness), 3),
        "cpu_pct_of_one_core": round(100 * cpu / wall, 1),
        "cpu_ms_per_device_s": round(1000 * cpu / wall / devices, 2),
        "rss_mib": round(rss_during, 1),
        # Upper bound when counts ascend: the heap only grows from the process's baseline.
        "rss_mib_per_device": round((rss_during - rss_baseline) / devices, 3),
    }


async def bare_ticks(seconds: float) -> list[float]:
    """The floor: how late a bare 20 Hz `asyncio.sleep` loop runs (s), with nothing else in the
    loop; the same tick arithmetic as the session's control loop."""
    lateness: list[float] = []
    next_tick = time.monotonic()
    end = next_tick + seconds
    while next_tick < end:
        next_tick += MISS_S
        await asyncio.sleep(max(0.0, next_tick - time.monotonic()))
        lateness.append(time.monotonic() - next_tick)
    return lateness


async def main_async(counts: list[int], seconds: float) -> list[dict[str, object]]:
    broker = Mosquitto()
    broker.start()
    baseline = rss_mib()
    try:
        return [await measure(n, seconds, broker, baseline) for n in sorted(counts)]
    finally:
        broker.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 10, 25, 50, 100])
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    results = asyncio.run(main_async(args.devices, args.seconds))
    print(json.dumps({"python": platform.python_version(), "results": results}, indent=2))


if __name__ == "__main__":
    main()
