"""Both feet: one profile on two simulated massagers, one stop for both (firmware_bridge.group).

Assertions use each simulator's own record of what reached its motors.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import pytest

from firmware_bridge.device import LinkEvent, StopReason
from firmware_bridge.group import SessionGroup
from firmware_bridge.protocol import ScaledClock
from firmware_bridge.record import Sample
from firmware_bridge.runner import Session
from firmware_bridge.safety import SafetySettings
from sim.firmware import FaultPlan
from tests.firmware_bridge.test_runner import steady
from tests.rigs import Rig, open_rig, until

pytestmark = pytest.mark.sim_only

ZERO = (0, 0, 0)


@contextlib.asynccontextmanager
async def two_feet(
    tier: str, speed: float = 10, **session_kwargs: object
) -> AsyncIterator[tuple[list[Rig], SessionGroup]]:
    clock = ScaledClock(speed)
    async with (
        open_rig(tier, clock=clock) as left,
        open_rig(tier, clock=clock) as right,
        left.link() as left_link,
        right.link() as right_link,
    ):
        sessions = [
            Session(link, steady(1.0, 120), SafetySettings(cap=4), **session_kwargs)  # type: ignore[arg-type]
            for link in (left_link, right_link)
        ]
        yield [left, right], SessionGroup(sessions)


def playing(rigs: list[Rig]) -> Callable[[], bool]:
    return lambda: all(max(rig.firmware.levels) >= 2 for rig in rigs)


async def test_both_feet_play_the_profile_to_the_end_within_the_cap(tier: str) -> None:
    async with two_feet(tier, speed=40) as (rigs, group):
        records = await group.run()
    assert [r.stop_reason for r in records] == [StopReason.COMPLETED] * 2
    assert group.stop_reason is None  # nothing stopped them: each completed
    for rig, record in zip(rigs, records, strict=True):
        assert record.max_intensity == pytest.approx(0.4)
        assert max(max(a.levels) for a in rig.firmware.applied) == 8  # 40 % of 20 (S1)
        assert rig.firmware.levels == ZERO
    # lockstep: both were armed before either played; their first output is moments apart
    firsts = [next(a.t for a in rig.firmware.applied if any(a.levels)) for rig in rigs]
    assert abs(firsts[0] - firsts[1]) < 0.25 * 40  # session seconds at speed 40: < 0.25 s real


async def test_one_stop_zeroes_every_device(tier: str) -> None:
    async with two_feet(tier) as (rigs, group):
        running = asyncio.create_task(group.run())
        await until(playing(rigs))
        result = await group.request_stop(StopReason.USER_STOP)
        assert result.confirmed  # both devices confirmed zero
        assert [rig.firmware.levels for rig in rigs] == [ZERO, ZERO]
        records = await asyncio.wait_for(running, 10)
    assert [r.stop_reason for r in records] == [StopReason.USER_STOP] * 2
    assert all(r.stop_confirmed for r in records)


async def test_a_stop_on_one_device_stops_the_other(tier: str) -> None:
    """A remote stop reaches one device's session (its own MQTT topic): both stop."""
    async with two_feet(tier) as (rigs, group):
        running = asyncio.create_task(group.run())
        await until(playing(rigs))
        await group.sessions[0].request_stop(StopReason.REMOTE_STOP)
        await until(lambda: rigs[1].firmware.levels == ZERO)
        records = await asyncio.wait_for(running, 10)
    assert [r.stop_reason for r in records] == [StopReason.REMOTE_STOP] * 2
    assert group.stop_reason == StopReason.REMOTE_STOP
    assert group.stopped_by is group.sessions[0]


@pytest.mark.parametrize(
    ("condition", "reason"),
    [
        (lambda rig: rig.massager.drop_link(), StopReason.LINK_LOST),
        (lambda rig: rig.massager.press_button(), StopReason.DEVICE_BUTTON),
        (lambda rig: setattr(rig.firmware, "temperature_c", 41.5), StopReason.OVER_TEMPERATURE),
    ],
    ids=["link_lost", "device_button", "over_temperature"],
)
async def test_what_ends_one_device_latches_the_stop_for_all(
    tier: str, condition: Callable[[Rig], None], reason: StopReason
) -> None:
    async with two_feet(tier) as (rigs, group):
        running = asyncio.create_task(group.run())
        await until(playing(rigs))
        condition(rigs[1])
        records = await asyncio.wait_for(running, 10)
        await until(lambda: rigs[0].firmware.levels == ZERO)
    assert [r.stop_reason for r in records] == [reason, reason]
    # the healthy device was stopped, not left to run: its own record says the group's reason
    cause = rigs[0].firmware.applied[-1].cause
    assert cause == "stop", cause


async def test_a_fault_in_one_session_stops_the_other() -> None:
    samples: list[Sample] = []

    def broken(sample: Sample) -> None:
        samples.append(sample)
        if len(samples) == 8:  # the 4th second of whichever device samples next
            raise RuntimeError("hook bug")

    async with two_feet("memory", on_sample=broken) as (rigs, group):
        records = await asyncio.wait_for(group.run(), 20)
    assert {r.stop_reason for r in records} == {StopReason.FAULT}
    assert [rig.firmware.levels for rig in rigs] == [ZERO, ZERO]


async def test_a_rating_goes_to_both_feet_and_seven_stops_both() -> None:
    async with two_feet("memory") as (rigs, group):
        running = asyncio.create_task(group.run())
        await until(playing(rigs))
        assert group.report_discomfort(5).value == "hold"
        assert all(s.governor is not None and s.governor.holding for s in group.sessions)
        assert group.report_discomfort(7).value == "stop"
        records = await asyncio.wait_for(running, 10)
    assert [r.stop_reason for r in records] == [StopReason.DISCOMFORT] * 2
    assert all(r.ratings == [(r.ratings[0][0], 5), (r.ratings[1][0], 7)] for r in records)


async def test_a_device_that_cannot_start_keeps_the_other_from_playing() -> None:
    async with two_feet("memory") as (rigs, group):
        rigs[1].firmware.battery_pct = 4.0  # the right massager refuses to start (S9)
        records = await asyncio.wait_for(group.run(), 10)
    assert records[1].stop_reason == StopReason.LOW_BATTERY
    assert records[0].stop_reason in {StopReason.LOW_BATTERY, StopReason.FAULT}
    for rig in rigs:  # neither foot ever felt anything
        assert all(not any(a.levels) for a in rig.firmware.applied)


async def test_a_stop_before_the_group_starts_means_it_never_starts() -> None:
    async with two_feet("memory") as (rigs, group):
        group.request_stop(StopReason.USER_STOP)
        records = await asyncio.wait_for(group.run(), 10)
    assert [r.stop_reason for r in records] == [StopReason.USER_STOP] * 2
    for rig in rigs:
        assert all(not any(a.levels) for a in rig.firmware.applied)


async def test_pause_and_a_lowered_cap_apply_to_both_feet() -> None:
    async with two_feet("memory") as (rigs, group):
        running = asyncio.create_task(group.run())
        await until(playing(rigs))
        assert group.lower_cap() == 3
        assert all(s.governor is not None and s.governor.cap == 3 for s in group.sessions)
        assert group.pause()
        await until(lambda: all(rig.firmware.levels == ZERO for rig in rigs))
        assert group.resume()
        await group.stop()
        await asyncio.wait_for(running, 10)


async def test_the_other_device_is_latched_in_the_same_instant_as_the_lost_link() -> None:
    """Not after the lost device's session winds up: when its link announces the loss, the
    other foot's session is already stopped (its governor latched, its zero on the way)."""
    seen: list[tuple[bool, bool]] = []
    async with two_feet("memory") as (rigs, group):
        left, right = group.sessions

        def on_right(event: LinkEvent) -> None:
            if event.kind == "link_lost":
                governor = left.governor
                seen.append((left.stop_requested is not None, bool(governor and governor.stopped)))

        right.link.listeners.append(on_right)
        running = asyncio.create_task(group.run())
        await until(playing(rigs))
        rigs[1].massager.drop_link()
        await asyncio.wait_for(running, 10)
    assert seen == [(True, True)]


async def test_no_device_plays_until_every_device_is_armed() -> None:
    async with two_feet("memory") as (rigs, group):
        slow = group.sessions[1].link
        armed = asyncio.Event()
        start = slow.start

        async def slow_start() -> None:
            await armed.wait()  # the right massager takes its time to start
            await start()

        slow.start = slow_start  # type: ignore[method-assign]
        running = asyncio.create_task(group.run())
        await asyncio.sleep(1.0)  # 10 session seconds: the left would be rising by now
        assert all(not any(a.levels) for a in rigs[0].firmware.applied)
        armed.set()
        await until(playing(rigs))
        await group.stop()
        await asyncio.wait_for(running, 10)


async def test_the_group_stop_is_confirmed_only_when_every_device_confirmed() -> None:
    async with two_feet("memory") as (rigs, group):
        running = asyncio.create_task(group.run())
        await until(playing(rigs))
        rigs[1].firmware.plan = FaultPlan(mute_at_s=0.0)  # the right one no longer answers
        result = await group.request_stop(StopReason.USER_STOP)
        await asyncio.wait_for(running, 10)
    assert not result.confirmed
    assert rigs[0].firmware.levels == ZERO  # the left one confirmed; the right one was told
    assert rigs[1].firmware.levels == ZERO


async def test_a_device_whose_start_fails_unexpectedly_never_leaves_the_other_waiting() -> None:
    """Device 2's start raises a bare TimeoutError before device 1 reaches the barrier: the
    group still ends (it once waited forever, Ctrl-C included), and neither foot plays."""
    async with two_feet("memory") as (rigs, group):
        left = group.sessions[0].link
        start = left.start

        async def late_start() -> None:
            await asyncio.sleep(0.3)  # device 2 fails first
            await start()

        async def broken_start() -> None:
            raise TimeoutError("no answer")

        left.start = late_start  # type: ignore[method-assign]
        group.sessions[1].link.start = broken_start  # type: ignore[method-assign]
        records = await asyncio.wait_for(group.run(), 10)
    assert records[1].stop_reason == StopReason.FAULT
    assert records[0].stop_reason is not StopReason.COMPLETED
    for rig in rigs:
        assert all(not any(a.levels) for a in rig.firmware.applied)


async def test_a_group_stop_releases_a_device_waiting_for_the_others() -> None:
    async with two_feet("memory") as (rigs, group):
        slow = group.sessions[1].link
        start = slow.start

        async def slow_start() -> None:
            await asyncio.sleep(3.0)  # the right massager takes its time
            await start()

        slow.start = slow_start  # type: ignore[method-assign]
        running = asyncio.create_task(group.run())
        await until(lambda: group.sessions[0].link.state.value == "ready")
        await asyncio.sleep(0.3)  # the left one is armed and waiting at the barrier
        group.request_stop(StopReason.USER_STOP)
        left = group.sessions[0].record
        await until(lambda: any(e.type == "refused" for e in left.events), within=1.0)  # not 3 s
        records = await asyncio.wait_for(running, 10)
    assert [r.stop_reason for r in records] == [StopReason.USER_STOP] * 2
    for rig in rigs:
        assert all(not any(a.levels) for a in rig.firmware.applied)


async def test_remote_commands_through_the_group_reach_both_feet() -> None:
    async with two_feet("memory") as (rigs, group):
        running = asyncio.create_task(group.run())
        await until(playing(rigs))
        governor = group.governor
        assert governor is not None
        assert governor.set_cap(2) is None  # a lower cap, as MQTT `cmd/cap` asks
        assert all(s.governor is not None and s.governor.cap == 2 for s in group.sessions)
        assert governor.set_cap(4) == "raising the cap remotely is not enabled"
        assert all(s.governor is not None and s.governor.cap == 2 for s in group.sessions)
        await group.stop()
        await asyncio.wait_for(running, 10)
