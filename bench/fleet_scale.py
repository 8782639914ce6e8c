"""Fleet scale: N sessions in one controller process, the simulators in another.

Each device is a full session (profile → governor → link → bleak → `RemoteBleakClient`) at
20 Hz control, publishing 2 Hz telemetry, state and events to mosquitto on loopback through its
own publisher; the simulated massagers run in a separate process (`sim.hosts.remote`), so the
CPU and memory counted are the controller's own. After `seconds` every session is stopped at
once (stop-all); each device's time from that instant to its confirmed zero is recorded.
Floors, measured in the same run: a bare 20 Hz sleep loop (lateness) and N bare bleak Write
Requests issued at once on the same simulators (stop-all). Run:
`python -m bench.fleet_scale --devices 1 10 100 --seconds 10`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import statistics
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from bleak import BleakClient

from bench.capacity import MISS_S, bare_ticks, profile, rss_mib
from firmware_bridge.device import MassagerLink, StopReason
from firmware_bridge.durable import writer
from firmware_bridge.protocol import CONTROL_CHAR_UUID
from firmware_bridge.protocol.frames import Stop, encode
from firmware_bridge.runner import Session
from firmware_bridge.safety import SafetySettings
from firmware_bridge.telemetry.bridge import SessionTelemetry
from firmware_bridge.telemetry.outbox import Outbox
from firmware_bridge.telemetry.publisher import Publisher
from firmware_bridge.telemetry.topics import Topics
from firmware_bridge.transport import BleakTransport
from sim.hosts.remote import RemoteAir, RemoteBleakClient
from tests.brokers import Mosquitto

CONNECT_BATCH = 50  # devices connected at once while setting up (not measured)


async def _server(devices: int) -> tuple[asyncio.subprocess.Process, int]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sim.hosts.remote", "--devices", str(devices),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), 60)
    return process, int(line.split()[1])


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of another process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def bare_stop_all(air: RemoteAir, devices: int) -> list[float]:
    """The floor of stop-all: N bare Write Requests of a stop frame, issued at once."""
    clients = [
        BleakClient(air.device(i), backend=RemoteBleakClient, air=air) for i in range(devices)
    ]
    for start in range(0, devices, CONNECT_BATCH):
        await asyncio.gather(*(c.connect() for c in clients[start : start + CONNECT_BATCH]))
    frame = encode(Stop(), 0)
    done: list[float] = []
    t0 = time.perf_counter()

    async def one(client: BleakClient) -> None:
        await client.write_gatt_char(CONTROL_CHAR_UUID, frame, response=True)
        done.append(time.perf_counter() - t0)

    await asyncio.gather(*(one(c) for c in clients))
    await asyncio.gather(*(c.disconnect() for c in clients))
    return done


async def measure(devices: int, seconds: float, broker: Mosquitto, rss0: float) -> dict[str, Any]:
    process, port = await _server(devices)
    air = await RemoteAir.open(port)
    stack = contextlib.AsyncExitStack()
    try:
        floor = await bare_stop_all(air, devices)
        links = [
            MassagerLink(
                BleakTransport(
                    air.device(i), backend=RemoteBleakClient, backend_kwargs={"air": air}
                )
            )
            for i in range(devices)
        ]
        for start in range(0, devices, CONNECT_BATCH):
            await asyncio.gather(
                *(stack.enter_async_context(link) for link in links[start : start + CONNECT_BATCH])
            )
        # A publisher closed at its time limit may still have a write queued on the durable
        # writer's thread: leftovers in a temp dir are no error.
        with TemporaryDirectory(ignore_cleanup_errors=True) as tmp:
            sessions, publishers, serving = [], [], []
            for i, link in enumerate(links):
                publisher = Publisher(
                    broker.settings, Topics(f"fleet-{i}"), outbox=Outbox(Path(tmp) / str(i))
                )
                publishers.append(publisher)
                serving.append(asyncio.create_task(publisher.run()))
                telemetry = SessionTelemetry(profile="bench", cap=6, publisher=publisher)
                session = Session(
                    link,
                    profile(seconds * 4),
                    SafetySettings(cap=6),
                    on_sample=telemetry.sample,
                    on_event=telemetry.event,
                )
                telemetry.attach(session)
                sessions.append(session)
            running = [asyncio.create_task(s.run()) for s in sessions]
            await asyncio.sleep(1.0)  # every session armed and rising
            cpu0, server0, wall0 = time.process_time(), _cpu_s(process.pid), time.monotonic()
            await asyncio.sleep(seconds / 2)
            rss = rss_mib()
            await asyncio.sleep(seconds / 2)
            cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
            server_cpu = _cpu_s(process.pid) - server0
            t0 = time.perf_counter()
            confirmed_at: list[float] = []

            async def stop(session: Session) -> None:
                result = await session.request_stop(StopReason.USER_STOP)
                if result.confirmed:
                    confirmed_at.append(time.perf_counter() - t0)

            await asyncio.gather(*(stop(s) for s in sessions))
            await asyncio.gather(*running)
            for publisher in publishers:
                await publisher.close()
            for task in serving:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(task, 5)
            await asyncio.to_thread(writer().flush)
    finally:
        await stack.aclose()
        await air.close()
        process.kill()
        await process.wait()
    lateness = sorted(late for s in sessions for late in s.control_lateness_s[int(1.0 / MISS_S) :])
    pct = statistics.quantiles(lateness, n=100, method="inclusive")
    return {
        "devices": devices,
        "ticks": len(lateness),
        "lateness_median_ms": round(statistics.median(lateness) * 1000, 2),
        "lateness_p99_ms": round(pct[98] * 1000, 2),
        "lateness_max_ms": round(lateness[-1] * 1000, 2),
        "missed_ticks": sum(1 for late in lateness if late > MISS_S),
        "missed_pct": round(100 * sum(1 for late in lateness if late > MISS_S) / len(lateness), 3),
        "cpu_pct_of_one_core": round(100 * cpu / wall, 1),
        "cpu_ms_per_device_s": round(1000 * cpu / wall / devices, 3),
        "server_cpu_pct": round(100 * server_cpu / wall, 1),
        "rss_mib": round(rss, 1),
        "rss_mib_per_device": round((rss - rss0) / devices, 3),
        "stop_all": sorted(confirmed_at),
        "stop_all_confirmed": len(confirmed_at),
        "floor_stop_all": sorted(floor),
    }


def _quantile(values: list[float], q: int) -> float:
    return (
        statistics.quantiles(values, n=100, method="inclusive")[q - 1]
        if len(values) > 1
        else values[0]
    )


async def main_async(counts: list[int], seconds: float) -> list[dict[str, Any]]:
    broker = Mosquitto()
    broker.start()
    try:
        rss0 = rss_mib()
        floor = await bare_ticks(min(seconds, 5.0))
        results = []
        for n in sorted(counts):
            r = await measure(n, seconds, broker, rss0)
            r["floor_tick_p99_ms"] = round(_quantile(sorted(floor), 99) * 1000, 2)
            results.append(r)
        return results
    finally:
        broker.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 10, 100])
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    results = asyncio.run(main_async(args.devices, args.seconds))
    for r in results:
        stops, floor = r.pop("stop_all"), r.pop("floor_stop_all")
        r["stop_all_p50_ms"] = round(statistics.median(stops) * 1000, 2) if stops else None
        r["stop_all_p99_ms"] = round(_quantile(stops, 99) * 1000, 2) if stops else None
        r["floor_stop_all_p99_ms"] = round(_quantile(floor, 99) * 1000, 2)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
