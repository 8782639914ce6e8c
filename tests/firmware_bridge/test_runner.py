"""Sessions through the real runner, link and simulator: the S-rules end to end.

Assertions use the simulator's record of what reached the motors (`firmware.applied`).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from typing import Any

import pytest

from firmware_bridge.device import StopReason
from firmware_bridge.protocol import ScaledClock
from firmware_bridge.record import Sample, SessionRecord
from firmware_bridge.runner import Session
from firmware_bridge.safety import RISE_FLOOR, STEP_FACTOR, SafetySettings
from profiles.loader import load_builtin
from profiles.model import Profile, Steady
from sim.firmware import MAX_LEVEL, FaultPlan
from sim.foot import Foot
from tests.rigs import Rig, open_rig, until

pytestmark = pytest.mark.sim_only


def steady(level: float = 1.0, seconds: float = 60, cool: float = 30) -> Profile:
    return Profile.model_validate(
        {
            "name": "test",
            "title": "Test",
            "segments": [
                {"kind": "steady", "duration_s": seconds, "level": level, "label": "work"},
                {"kind": "ramp", "duration_s": cool, "start": 0.2, "end": 0, "cool_down": True},
            ],
        }
    )


async def play(
    rig: Rig, profile: Profile, settings: SafetySettings, **kwargs: Any
) -> SessionRecord:
    async with rig.link() as link:
        return await Session(link, profile, settings, **kwargs).run()


def peak_applied(rig: Rig) -> int:
    return max((max(r.levels) for r in rig.firmware.applied), default=0)


async def test_a_profile_completes_within_the_cap_and_ends_at_zero(tier: str) -> None:
    async with open_rig(tier, speed=40) as rig:
        record = await play(rig, steady(1.0, 60), SafetySettings(cap=4))
    assert record.stop_reason == StopReason.COMPLETED
    assert record.ok
    assert record.max_intensity == pytest.approx(0.4)  # reached the cap, never more (S1)
    assert peak_applied(rig) == 8  # 40 % of 20 levels, in the simulator's own record
    assert rig.firmware.levels == (0, 0, 0)
    assert record.duration_s == pytest.approx(90, abs=1)
    assert 85 <= len(record.samples) <= 95  # per-second samples
    assert record.stop_confirmed


async def test_force_rises_gradually_from_zero(tier: str) -> None:
    async with open_rig(tier, speed=20) as rig:
        await play(rig, steady(1.0, 45), SafetySettings(cap=4))
    t0 = min(
        r.t for r in rig.firmware.received if r.frame and r.frame.message.TYPE.name == "SET_TIMER"
    )
    first_nonzero = next(r for r in rig.firmware.applied if any(r.levels))
    at_cap = next(r for r in rig.firmware.applied if max(r.levels) >= 8)
    assert first_nonzero.levels == (1, 1, 1)  # one level at a time, from zero
    assert first_nonzero.t - t0 >= 2.5  # 0 → first level takes one rise period (3 s)
    # 0.05 → 0.40 is log(8)/log(1.334) = 7.2 steps of 3 s on top of the first 3 s.
    expected = 3 + 3 * math.log(0.4 / RISE_FLOOR) / math.log(STEP_FACTOR)
    assert at_cap.t - t0 >= expected - 1.0
    for before, after in zip(rig.firmware.applied, rig.firmware.applied[1:], strict=False):
        if max(after.levels) > max(before.levels) and after.t < at_cap.t:
            assert max(after.levels) - max(before.levels) == 1  # never a jump


async def test_stop_mid_session_reaches_zero_and_latches(tier: str) -> None:
    async with open_rig(tier, speed=10) as rig, rig.link() as link:
        session = Session(link, steady(1.0, 120), SafetySettings(cap=6))
        running = asyncio.create_task(session.run())
        await until(lambda: max(rig.firmware.levels) >= 3)
        requested = rig.clock.now()
        await session.stop(StopReason.USER_STOP)
        assert rig.firmware.levels == (0, 0, 0)
        record = await running
        assert record.stop_reason == StopReason.USER_STOP
        assert record.stop_confirmed
        assert record.stop_latency_s is not None
        assert record.stop_latency_s < 0.05
        await asyncio.sleep(0.3)
        assert all(not any(r.levels) for r in rig.applied_after(requested))
        assert link.latched


async def test_stop_before_any_output_is_still_a_clean_stop() -> None:
    async with open_rig("memory", speed=10) as rig, rig.link() as link:
        session = Session(link, steady(), SafetySettings())
        running = asyncio.create_task(session.run())
        await until(lambda: session.governor is not None)
        session.request_stop(StopReason.REMOTE_STOP)
        record = await running
    assert record.stop_reason == StopReason.REMOTE_STOP
    assert peak_applied(rig) <= 1


@pytest.mark.parametrize("how", ["request_stop", "stop"])
async def test_a_session_stopped_before_it_ran_never_starts(how: str) -> None:
    """S3: a stop from any state, `connecting` included; run() is not a new start."""
    async with open_rig("memory", speed=10) as rig, rig.link() as link:
        session = Session(link, steady(), SafetySettings())
        if how == "stop":
            assert (await session.stop(StopReason.REMOTE_STOP)).confirmed
        else:
            await session.request_stop(StopReason.REMOTE_STOP)
        record = await session.run()
        await asyncio.sleep(0.2)
    assert record.stop_reason == StopReason.REMOTE_STOP
    assert [e.type for e in record.events][:1] == ["refused"]
    assert all(not any(r.levels) for r in rig.firmware.applied)


async def test_rating_7_stops_the_session(tier: str) -> None:
    async with open_rig(tier, speed=10) as rig, rig.link() as link:
        session = Session(link, steady(1.0, 120), SafetySettings(cap=6))
        running = asyncio.create_task(session.run())
        await until(lambda: max(rig.firmware.levels) >= 2)
        session.report_discomfort(7)
        record = await running
    assert record.stop_reason == StopReason.DISCOMFORT
    assert rig.firmware.levels == (0, 0, 0)
    assert record.ok  # the governor working as designed is not a fault


async def test_rating_6_drops_two_steps_and_freezes_increases() -> None:
    async with open_rig("memory", speed=40) as rig, rig.link() as link:
        session = Session(link, steady(1.0, 120), SafetySettings(cap=8))
        running = asyncio.create_task(session.run())
        await until(lambda: max(rig.firmware.levels) >= 12, within=20)
        level = max(rig.firmware.levels)
        dropped_at = rig.clock.now()
        session.report_discomfort(6)
        await until(lambda: max(rig.firmware.levels) < level)
        record = await running
    allowed = math.floor(level / STEP_FACTOR**2)
    after = [max(r.levels) for r in rig.applied_after(dropped_at)]
    assert after[0] <= allowed  # dropped at least two steps at once
    assert max(after) <= allowed  # and never rose again in this session
    assert record.stop_reason == StopReason.COMPLETED
    assert any(e.type == "discomfort" and e.detail["decision"] == "drop" for e in record.events)


async def test_the_virtual_user_drives_the_governor() -> None:
    sensitive = Foot(pain_magnitude=0.35, noise=0.0)  # rates 10 at a third of full output
    async with open_rig("memory", speed=60) as rig:
        rig.massager.foot = sensitive
        record = await play(
            rig,
            steady(1.0, 300),
            SafetySettings(cap=10),
            rating_source=rig.massager.rating,
            rating_period_s=10,
        )
    decisions = [e.detail["decision"] for e in record.events if e.type == "discomfort"]
    assert decisions
    assert {"hold", "drop", "stop"} & set(decisions)
    assert record.max_intensity < 0.5


async def test_session_limit_is_a_reported_timeout() -> None:
    async with open_rig("memory", speed=60) as rig:
        record = await play(rig, steady(0.5, 600), SafetySettings(cap=4, max_session_s=60))
    assert record.stop_reason == StopReason.TIMEOUT
    assert record.ok
    assert record.duration_s == pytest.approx(60, abs=1)
    assert rig.firmware.levels == (0, 0, 0)


async def test_nothing_makes_a_session_longer_than_30_minutes() -> None:
    # Validation refuses profiles over 30 min; build one anyway, as a buggy caller could.
    work = Steady.model_construct(
        kind="steady", duration_s=2400.0, level=0.2, zones=["all"], label="", cool_down=False
    )
    profile = Profile.model_construct(name="long", title="Long", description="", segments=[work])
    async with open_rig("memory", speed=300) as rig:
        record = await play(rig, profile, SafetySettings(cap=4, max_session_s=4 * 3600))
    assert record.stop_reason == StopReason.TIMEOUT
    assert record.duration_s == pytest.approx(1800, abs=2)
    assert rig.firmware.levels == (0, 0, 0)


async def test_a_crashing_session_task_is_a_fault_stop(tier: str) -> None:
    samples: list[Sample] = []

    def flaky_telemetry(sample: Sample) -> None:
        samples.append(sample)
        if len(samples) == 5:
            raise RuntimeError("telemetry hook bug")

    async with open_rig(tier, speed=10) as rig:
        record = await play(rig, steady(1.0, 120), SafetySettings(cap=4), on_sample=flaky_telemetry)
    assert record.stop_reason == StopReason.FAULT
    assert not record.ok
    assert rig.firmware.levels == (0, 0, 0)
    assert any(
        e.type == "fault" and "telemetry hook bug" in e.detail["problem"] for e in record.events
    )


@pytest.mark.parametrize(
    ("condition", "reason"),
    [
        (lambda rig: setattr(rig.firmware, "temperature_c", 41.5), StopReason.OVER_TEMPERATURE),
        (lambda rig: setattr(rig.firmware, "battery_pct", 4.0), StopReason.LOW_BATTERY),
        (lambda rig: rig.massager.press_button(), StopReason.DEVICE_BUTTON),
        (lambda rig: rig.massager.drop_link(), StopReason.LINK_LOST),
    ],
    ids=["over_temperature", "low_battery", "device_button", "link_lost"],
)
async def test_device_conditions_end_the_session(
    tier: str, condition: Callable[[Rig], None], reason: StopReason
) -> None:
    async with open_rig(tier, speed=10) as rig, rig.link() as link:
        session = Session(link, steady(1.0, 120), SafetySettings(cap=4))
        running = asyncio.create_task(session.run())
        await until(lambda: max(rig.firmware.levels) >= 2)
        condition(rig)
        record = await asyncio.wait_for(running, 10)
        assert record.stop_reason == reason
        await until(lambda: rig.firmware.levels == (0, 0, 0))


async def test_device_without_watchdog_is_limited_whatever_the_cap() -> None:
    async with open_rig("memory", speed=40, plan=FaultPlan(no_watchdog=True)) as rig:
        record = await play(rig, steady(1.0, 90), SafetySettings(cap=10))
    assert record.max_intensity == pytest.approx(0.4)
    assert peak_applied(rig) == int(MAX_LEVEL * 0.4)
    limit = next(e for e in record.events if e.type == "limit")
    assert limit.detail["failsafe"] == "none"


async def test_the_heel_spur_routine_plays_end_to_end() -> None:
    async with open_rig("memory", speed=120) as rig:
        record = await play(rig, load_builtin("heel-spur"), SafetySettings(cap=4))
    assert record.stop_reason == StopReason.COMPLETED
    assert 0 < record.max_intensity <= 0.4
    segments = [e.detail["label"] for e in record.events if e.type == "segment"]
    assert segments[0] == "warm-up, heel to toes"
    assert segments[-1] == "fade out"
    assert segments.count("rib strikes") == 2


async def test_a_refused_start_still_gives_a_record_and_never_output() -> None:
    async with open_rig("memory") as rig, rig.link() as link:
        rig.firmware.battery_pct = 4.0  # flat before the session even starts
        await until(lambda: link.battery_pct is not None and link.battery_pct < 5)
        record = await Session(link, steady(1.0, 60), SafetySettings(cap=6)).run()
    assert record.stop_reason == StopReason.LOW_BATTERY
    assert not record.ok
    assert any(e.type == "refused" for e in record.events)
    assert peak_applied(rig) == 0


async def test_sessions_started_together_never_wait_for_one_that_failed() -> None:
    """Two sessions share a start barrier (no group around them): the second's start raises
    a bare TimeoutError before the first arrives; the first is refused, never left waiting."""
    clock = ScaledClock(10)
    async with (
        open_rig("memory", clock=clock) as left,
        open_rig("memory", clock=clock) as right,
        left.link() as left_link,
        right.link() as right_link,
    ):
        start = left_link.start

        async def late_start() -> None:
            await asyncio.sleep(0.3)
            await start()

        async def broken_start() -> None:
            raise TimeoutError("no answer")

        left_link.start = late_start  # type: ignore[method-assign]
        right_link.start = broken_start  # type: ignore[method-assign]
        together = asyncio.Barrier(2)
        sessions = [
            Session(link, steady(1.0, 60), SafetySettings(cap=4), start_together=together)
            for link in (left_link, right_link)
        ]
        records = await asyncio.wait_for(asyncio.gather(*(s.run() for s in sessions)), 10)
    assert records[1].stop_reason == StopReason.FAULT
    assert any(e.type == "refused" for e in records[0].events)
    assert all(not any(a.levels) for a in left.firmware.applied)
