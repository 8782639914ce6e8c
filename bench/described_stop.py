"""Stop latency on described (simple-write) devices: `link.stop()` → the impersonated device's
motors at zero, beside the floor of a bare bleak write of the same stop bytes on the same link.

Runs every shipped simple-write description on both simulator tiers. Both ends share one clock,
so the device's record of when zero reached the motors compares with the request time.
Run: `python -m bench.described_stop -n 200`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform

from bench.stats import summary
from firmware_bridge.devices import shipped
from firmware_bridge.devices.simple import SimpleWriteTransport
from firmware_bridge.protocol.description import Description
from tests.rigs import TIERS, Rig, open_rig

SETTLE_S = 0.25  # after each stop: longer than every shipped minimum gap (100 ms) twice over


ARM_WITHIN_S = 10.0  # a start and a level reach the motors in ms; this long is a bench error


async def _armed(rig: Rig, link: object, level: int) -> None:
    async with asyncio.timeout(ARM_WITHIN_S):
        await link.start()  # type: ignore[attr-defined]
        link.set_levels((level,) * 3)  # type: ignore[attr-defined]
        while not any(rig.firmware.levels):  # noqa: ASYNC110 - the simulator's record is truth
            await asyncio.sleep(0)
    await asyncio.sleep(SETTLE_S)  # out of the gap: measure the stop, not the gap rule


async def measure(description: Description, tier: str, n: int) -> dict[str, object]:
    through_link: list[float] = []
    bare: list[float] = []
    async with open_rig(tier, description=description) as rig, rig.link() as link:
        transport = rig.transport
        assert isinstance(transport, SimpleWriteTransport)
        stop_bytes = description.stop_writes()[0]
        response = transport.supports_write_with_response
        for i in range(n):
            level = 1 + i % 3
            await _armed(rig, link, level)
            requested = rig.clock.now()
            await link.stop()
            zeroed = next(r for r in reversed(rig.firmware.applied) if not any(r.levels))
            through_link.append(zeroed.t - requested)
            await asyncio.sleep(SETTLE_S)
            # The floor: the same bytes written straight through bleak on the same connection.
            await _armed(rig, link, level)
            client, char = transport._client, transport._control
            if client is None or char is None:
                raise SystemExit(f"{description.id} on {tier}: not connected")
            written = rig.clock.now()
            await client.write_gatt_char(char, stop_bytes, response=response)
            while any(rig.firmware.levels):  # noqa: ASYNC110 - a Write Command returns at once
                await asyncio.sleep(0)
            zeroed = next(r for r in reversed(rig.firmware.applied) if not any(r.levels))
            bare.append(zeroed.t - written)
            await link.stop()  # latch the link again before the next round
            await asyncio.sleep(SETTLE_S)
    return {
        "description": description.id,
        "tier": tier,
        "stop_to_motors_zero": summary(through_link),
        "floor_bare_bleak_write": summary(bare),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=200, help="stops per description and tier")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    simple = [d for d in shipped() if d.driver == "simple-write"]
    results = [asyncio.run(measure(d, t, args.n)) for d in simple for t in TIERS]
    if args.json:
        print(json.dumps({"python": platform.python_version(), "results": results}, indent=2))
        return
    print(f"python {platform.python_version()}, {args.n} stops per description and tier (ms)")
    print(f"{'description':14} {'tier':7} {'stop p50':>9} {'p99':>7} {'floor p50':>10} {'p99':>7}")
    for r in results:
        stop, floor = r["stop_to_motors_zero"], r["floor_bare_bleak_write"]
        assert isinstance(stop, dict)
        assert isinstance(floor, dict)
        print(
            f"{r['description']!s:14} {r['tier']!s:7} {stop['median_ms']:9.2f} "
            f"{stop['p99_ms']:7.2f} {floor['median_ms']:10.2f} {floor['p99_ms']:7.2f}"
        )


if __name__ == "__main__":
    main()
