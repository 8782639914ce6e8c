"""Stop latency: `link.stop()` requested → the simulator applies zero, and → the ack confirms it.

Runs the production transport (bleak + bleak-retry-connector) over either simulator tier; both
ends share one clock, so the simulator's record of when zero reached the motors is comparable
with the controller's request time. The floor, on the same tier and link, is a bare bleak
client's Write Request (a QUERY_STATUS frame, no MassagerLink) → the device's record of it, and
→ the STATUS notification it answers with. Run: `python -m bench.stop_latency --tier all -n 1000`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys

from bench.stats import summary
from firmware_bridge.protocol import CONTROL_CHAR_UUID, TELEMETRY_CHAR_UUID, QueryStatus, encode
from tests.rigs import TIERS, open_rig

REPLY_TIMEOUT_S = 5.0  # a STATUS answer takes < 1 ms on an ideal link; give up on a lost one


async def bare_write(tier: str, n: int, latency_ms: float) -> dict[str, list[float]]:
    """The floor: `n` bare Write Requests → the device's record (s), and → its answer (s)."""
    to_device: list[float] = []
    to_answer: list[float] = []
    async with open_rig(tier, latency_s=latency_ms / 1000) as rig, rig.bleak_client() as client:
        answers: asyncio.Queue[float] = asyncio.Queue()
        await client.start_notify(
            TELEMETRY_CHAR_UUID, lambda _char, _data: answers.put_nowait(rig.clock.now())
        )
        for i in range(n):
            while not answers.empty():  # a periodic STATUS is not the answer to this write
                answers.get_nowait()
            seen = len(rig.firmware.received)
            requested = rig.clock.now()
            frame = encode(QueryStatus(), i)
            await client.write_gatt_char(CONTROL_CHAR_UUID, frame, response=True)
            answered = await asyncio.wait_for(answers.get(), REPLY_TIMEOUT_S)
            to_device.append(rig.firmware.received[seen].t - requested)
            to_answer.append(answered - requested)
    return {"write_to_device": to_device, "write_to_answer": to_answer}


async def measure(tier: str, n: int, latency_ms: float) -> dict[str, object]:
    to_motors: list[float] = []
    to_ack: list[float] = []
    async with open_rig(tier, latency_s=latency_ms / 1000) as rig, rig.link() as link:
        for i in range(n):
            await link.start()
            level = 5 + i % 10
            link.set_levels((level,) * link.zones)
            # Polling the simulator's record is the point: it is the measurement's ground truth.
            while rig.firmware.levels[0] != level or link.applied[:1] != (level,):  # noqa: ASYNC110
                await asyncio.sleep(0)
            requested = rig.clock.now()
            result = await link.stop()
            zeroed = rig.firmware.applied[-1]
            if not result.confirmed or zeroed.cause != "stop" or any(zeroed.levels):
                raise SystemExit(f"stop {i} on {tier} not confirmed: {result} {zeroed}")
            to_motors.append(zeroed.t - requested)
            to_ack.append(rig.clock.now() - requested)
    floor = await bare_write(tier, n, latency_ms)
    return {
        "tier": tier,
        "link_latency_ms": latency_ms,
        "request_to_motors_zero": summary(to_motors),
        "request_to_ack": summary(to_ack),
        "floor_write_to_device": summary(floor["write_to_device"]),
        "floor_write_to_answer": summary(floor["write_to_answer"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tier", choices=[*TIERS, "all"], default="all")
    parser.add_argument("-n", type=int, default=1000, help="stops per tier (default 1000)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="tier 2 one-way latency")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    tiers = TIERS if args.tier == "all" else (args.tier,)
    results = [asyncio.run(measure(t, args.n, args.latency_ms)) for t in tiers]
    if args.json:
        print(json.dumps({"python": platform.python_version(), "results": results}, indent=2))
        return
    print(f"python {platform.python_version()} on {platform.machine()}, {args.n} stops per tier")
    print(f"{'tier':8} {'measure':24} {'median':>8} {'p90':>8} {'p99':>8} {'max':>8}  (ms)")
    for r in results:
        for key in (
            "request_to_motors_zero",
            "floor_write_to_device",
            "request_to_ack",
            "floor_write_to_answer",
        ):
            s = r[key]
            assert isinstance(s, dict)
            print(
                f"{r['tier']:8} {key:24} {s['median_ms']:8.3f} {s['p90_ms']:8.3f} "
                f"{s['p99_ms']:8.3f} {s['max_ms']:8.3f}"
            )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
