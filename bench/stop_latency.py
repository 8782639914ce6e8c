"""Stop latency: `link.stop()` requested → the simulator applies zero, and → the ack confirms it.

Runs the production transport (bleak + bleak-retry-connector) over either simulator tier; both
ends share one clock, so the simulator's record of when zero reached the motors is comparable
with the controller's request time. Run: `python -m bench.stop_latency --tier all -n 1000`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys

from bench.stats import summary
from tests.rigs import TIERS, open_rig


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
    return {
        "tier": tier,
        "link_latency_ms": latency_ms,
        "request_to_motors_zero": summary(to_motors),
        "request_to_ack": summary(to_ack),
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
        for key in ("request_to_motors_zero", "request_to_ack"):
            s = r[key]
            assert isinstance(s, dict)
            print(
                f"{r['tier']:8} {key:24} {s['median_ms']:8.3f} {s['p90_ms']:8.3f} "
                f"{s['p99_ms']:8.3f} {s['max_ms']:8.3f}"
            )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
