"""The fail-safes' own bounds, measured on the simulator's record (real time, speed 1):

- `watchdog`: the controller's frames stop (its tasks die mid-session) → the device zeroes
  output on its own: last valid frame → zero (the device's watchdog is 1.5 s);
- `silence`: the device stops sending STATUS while the link stays up → the controller latches
  `device_silent` (3.5 s: three STATUS periods and a half);
- `link_loss`: the link drops → the controller has latched output off (its latch, not zero:
  the device's watchdog does that part).

Their floors: the watchdog and silence settings themselves, and for the link loss a bare bleak
client's disconnect callback after the same drop (`bare_disconnect`).

Run: `python -m bench.failsafe --tier bumble -n 10`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import platform
import time

from bench.stats import summary
from firmware_bridge.device import LinkState, StopReason
from tests.rigs import Rig, open_rig


async def _running(rig: Rig, level: int = 5) -> None:
    while rig.firmware.levels[0] != level:  # noqa: ASYNC110 - the record is the truth
        await asyncio.sleep(0.001)


async def watchdog(tier: str, n: int) -> list[float]:
    delays = []
    for _ in range(n):
        async with open_rig(tier) as rig:
            link = rig.link()
            await link.connect()
            await link.start()
            link.set_levels((5,) * link.zones)
            await _running(rig)
            await asyncio.sleep(0.6)  # heartbeats flowing
            for task in list(link._tasks):  # the controller dies: no frame ever again
                task.cancel()
            while any(rig.firmware.levels):  # noqa: ASYNC110
                await asyncio.sleep(0.005)
            zeroed = next((r.t for r in rig.firmware.applied if r.cause == "watchdog"), None)
            if zeroed is None:
                raise RuntimeError(
                    f"the device zeroed, but not by its watchdog: {rig.firmware.applied}"
                )
            # Frames after the zero do not count: the controller's reader still answers the
            # device's WATCHDOG_EXPIRED with a STOP.
            received = rig.firmware.received
            last = max(r.t for r in received if r.frame is not None and r.t <= zeroed)
            delays.append(zeroed - last)
            await rig.transport.disconnect()
    return delays


async def silence(tier: str, n: int) -> list[float]:
    delays = []
    for _ in range(n):
        async with open_rig(tier) as rig, rig.link() as link:
            await link.start()
            link.set_levels((5,) * link.zones)
            await _running(rig)
            muted = rig.clock.now()
            rig.firmware.plan.mute_at_s = muted
            while link.stop_reason != StopReason.DEVICE_SILENT:  # noqa: ASYNC110
                await asyncio.sleep(0.005)
            delays.append(rig.clock.now() - muted)
    return delays


async def link_loss(tier: str, n: int) -> list[float]:
    delays = []
    async with open_rig(tier) as rig:
        for _ in range(n):
            async with rig.link() as link:
                await link.start()
                link.set_levels((5,) * link.zones)
                await _running(rig)
                dropped = time.monotonic()
                rig.massager.drop_link()
                while not (link.latched and link.state != LinkState.READY):  # noqa: ASYNC110
                    await asyncio.sleep(0)
                delays.append(time.monotonic() - dropped)
            await asyncio.sleep(2.0)  # let the device's watchdog finish before the next round
    return delays


async def bare_disconnect(tier: str, n: int) -> list[float]:
    """The link-loss floor: the device drops the link → a bare bleak client hears of it (s)."""
    delays = []
    async with open_rig(tier) as rig:
        for _ in range(n):
            gone = asyncio.Event()
            async with rig.bleak_client(disconnected_callback=lambda _c, gone=gone: gone.set()):
                dropped = time.monotonic()
                rig.massager.drop_link()
                await gone.wait()
                delays.append(time.monotonic() - dropped)
    return delays


async def measure(tier: str, n: int) -> dict[str, object]:
    return {
        "tier": tier,
        "watchdog_last_frame_to_zero": summary(await watchdog(tier, n)),
        "silence_mute_to_latched": summary(await silence(tier, max(3, n // 2))),
        "link_loss_to_latched": summary(await link_loss(tier, n)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=10)
    parser.add_argument("--tier", choices=("memory", "bumble"), default="bumble")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # every one of these stops is logged by design
    started = time.monotonic()
    result = asyncio.run(measure(args.tier, args.n))
    result["python"] = platform.python_version()
    result["wall_s"] = round(time.monotonic() - started, 1)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
