"""A fleet of simulated massagers in one process: independent sessions, one stop-all."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from firmware_bridge.compose import open_simulator
from firmware_bridge.device import StopReason
from firmware_bridge.errors import DeviceNotFoundError
from firmware_bridge.fleet import Fleet, FleetEntry
from firmware_bridge.protocol import ScaledClock
from firmware_bridge.safety import SafetySettings
from firmware_bridge.transport import Transport
from sim.hosts import SimulatedMassager
from tests.firmware_bridge.test_runner import steady
from tests.rigs import until

pytestmark = pytest.mark.sim_only

ZERO = (0, 0, 0)


def simulated_fleet(
    count: int, clock: ScaledClock, seconds: float = 120, **entry: Any
) -> tuple[list[FleetEntry], dict[str, SimulatedMassager], Any]:
    entries = [
        FleetEntry(f"room-{n}", steady(1.0, seconds), SafetySettings(cap=4), **entry)
        for n in range(count)
    ]
    massagers: dict[str, SimulatedMassager] = {}

    @contextlib.asynccontextmanager
    async def open_device(entry: FleetEntry) -> AsyncIterator[tuple[Transport, Any]]:
        async with open_simulator("memory", clock=clock) as setup:
            massagers[entry.id] = setup.massager
            yield setup.transport, setup.massager

    return entries, massagers, open_device


async def test_one_faulting_device_leaves_the_other_49_running() -> None:
    clock = ScaledClock(10)
    entries, massagers, open_device = simulated_fleet(50, clock)
    fleet = Fleet(entries, open_device=open_device, clock=clock)
    running = asyncio.create_task(fleet.run())

    def all_playing() -> bool:
        return len(massagers) == 50 and all(max(m.firmware.levels) >= 2 for m in massagers.values())

    await until(all_playing, within=30)
    massagers["room-7"].drop_link()  # one device walks out of range
    await until(lambda: "room-7" not in fleet.sessions, within=10)
    await asyncio.sleep(0.5)  # five session seconds later the others still play
    others = [m for key, m in massagers.items() if key != "room-7"]
    assert all(max(m.firmware.levels) >= 2 for m in others)
    assert len(fleet.sessions) == 49
    fleet.stop_all()
    results = await asyncio.wait_for(running, 30)
    reasons = {r.entry.id: r.record.stop_reason for r in results if r.record is not None}
    assert reasons.pop("room-7") == StopReason.LINK_LOST
    assert set(reasons.values()) == {StopReason.USER_STOP}
    assert len(reasons) == 49
    # (room-7's own watchdog zeroes it; its simulator closed with its session before that)
    assert all(m.firmware.levels == ZERO for m in others)
    assert all(
        r.record is not None and r.record.stop_confirmed for r in results if r.entry.id != "room-7"
    )


async def test_a_device_that_never_connects_is_reported_and_the_rest_play() -> None:
    clock = ScaledClock(40)
    entries, _massagers, open_device = simulated_fleet(3, clock, seconds=30)

    @contextlib.asynccontextmanager
    async def flaky(entry: FleetEntry) -> AsyncIterator[tuple[Transport, Any]]:
        if entry.id == "room-1":
            raise DeviceNotFoundError("no device room-1 found within 10 s")
        async with open_device(entry) as opened:
            yield opened

    results = await asyncio.wait_for(Fleet(entries, open_device=flaky, clock=clock).run(), 30)
    assert [r.ok for r in results] == [True, False, True]
    assert results[1].problem == "no device room-1 found within 10 s"
    assert all(r.record.stop_reason == StopReason.COMPLETED for r in results if r.record)


async def test_stop_all_keeps_late_starters_from_starting() -> None:
    clock = ScaledClock(10)
    entries, massagers, open_device = simulated_fleet(3, clock)
    entries[2].start_s = 600  # starts ten minutes (one real minute) after the others
    fleet = Fleet(entries, open_device=open_device, clock=clock)
    running = asyncio.create_task(fleet.run())
    await until(
        lambda: (
            len(fleet.sessions) == 2
            and all(max(m.firmware.levels) >= 2 for m in massagers.values())
        )
    )
    fleet.stop_all()
    results = await asyncio.wait_for(running, 5)  # the late starter's wait ends with the stop
    assert [r.record.stop_reason if r.record else None for r in results] == [
        StopReason.USER_STOP,
        StopReason.USER_STOP,
        None,
    ]
    assert results[2].problem == "not started: the fleet was stopped (user_stop)"
    assert "room-2" not in massagers  # never even connected


async def test_cancelling_the_fleet_leaves_every_device_at_zero() -> None:
    clock = ScaledClock(10)
    entries, massagers, open_device = simulated_fleet(5, clock)
    running = asyncio.create_task(Fleet(entries, open_device=open_device, clock=clock).run())
    await until(
        lambda: len(massagers) == 5 and all(max(m.firmware.levels) >= 2 for m in massagers.values())
    )
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert all(m.firmware.levels == ZERO for m in massagers.values())
