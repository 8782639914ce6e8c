"""The device link over the production transport, on both simulator tiers.

Assertions are made against the simulator's own record of what reached the motors
(`firmware.applied`) and of what it received (`firmware.received`), not the controller's belief.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from firmware_bridge.device import LinkState, MassagerLink, ReconnectPolicy, StopReason
from firmware_bridge.errors import DeviceRejectedError, SafetyLimitError
from firmware_bridge.protocol import FrameType, Stop
from sim.firmware import FaultPlan
from tests.rigs import Rig, open_rig, until

pytestmark = pytest.mark.sim_only


async def ramp(link: MassagerLink, top: int = 15, step_s: float = 0.02) -> None:
    """Keep raising output one level at a time, forever (a profile's warm-up)."""
    level = 0
    while True:
        level = min(level + 1, top)
        link.set_levels((level,) * link.zones)
        await asyncio.sleep(step_s)


def received_types(rig: Rig) -> list[FrameType]:
    return [r.frame.message.TYPE for r in rig.firmware.received if r.frame is not None]


async def test_connect_handshake_sends_zero_first_and_reports_capabilities(rig: Rig) -> None:
    async with rig.link() as link:
        assert link.state == LinkState.READY
        assert link.capabilities is not None
        assert (link.zones, link.max_level, link.failsafe) == (3, 20, "watchdog")
        assert link.latched  # nothing runs before an explicit start
        assert received_types(rig)[:3] == [FrameType.STOP, FrameType.HELLO, FrameType.SET_WATCHDOG]
        assert rig.transport.max_frame_size == 244  # from max_write_without_response_size, MTU 247
    assert "capabilities" in rig.kinds()


async def test_levels_reach_the_motors_and_acks_become_applied_state(rig: Rig) -> None:
    async with rig.link() as link:
        await link.start()
        link.set_levels((4, 5, 6))
        await until(lambda: link.applied == (4, 5, 6))
        assert rig.firmware.levels == (4, 5, 6)
    assert rig.firmware.levels == (0, 0, 0)  # leaving the block wrote zero


async def test_updates_are_coalesced_latest_wins(rig: Rig) -> None:
    async with rig.link() as link:
        await link.start()
        for level in range(1, 16):
            link.set_levels((level,) * 3)  # no await in between: only the last matters
        await until(lambda: link.applied == (15, 15, 15))
        intensity_frames = received_types(rig).count(FrameType.SET_INTENSITY)
        assert intensity_frames <= 2


async def test_stop_reaches_zero_while_a_ramp_is_in_flight(rig: Rig) -> None:
    async with rig.link() as link:
        await link.start()
        ramping = asyncio.create_task(ramp(link))
        await until(lambda: rig.firmware.levels[0] >= 5)
        requested = rig.clock.now()
        result = await link.stop()
        assert result.confirmed
        assert result.reason == StopReason.USER_STOP
        assert rig.firmware.levels == (0, 0, 0)
        zeroed = rig.firmware.applied[-1]
        assert zeroed.cause == "stop"
        assert zeroed.t - requested < 0.05
        # The ramp keeps asking; the latch refuses and nothing non-zero reaches the motors.
        await asyncio.sleep(0.1)
        assert ramping.done()
        with pytest.raises(SafetyLimitError, match="latched"):
            ramping.result()
        assert all(not any(r.levels) for r in rig.applied_after(zeroed.t))


async def test_stop_is_idempotent_and_the_latch_holds_until_start(rig: Rig) -> None:
    async with rig.link() as link:
        await link.start()
        link.set_levels((3, 3, 3))
        await until(lambda: link.applied == (3, 3, 3))
        first = await link.stop(StopReason.REMOTE_STOP)
        second = await link.stop(StopReason.USER_STOP)
        assert first.confirmed
        assert second.confirmed
        assert second.reason == StopReason.REMOTE_STOP  # the first reason stands
        with pytest.raises(SafetyLimitError):
            link.set_levels((1, 1, 1))
        await link.start()
        link.set_levels((1, 1, 1))
        await until(lambda: rig.firmware.levels == (1, 1, 1))


async def test_stop_before_start_and_zero_is_always_allowed(rig: Rig) -> None:
    async with rig.link() as link:
        link.set_levels((0, 0, 0))
        with pytest.raises(SafetyLimitError, match="not started"):
            link.set_levels((1, 0, 0))
        assert (await link.stop()).confirmed


@pytest.mark.parametrize("levels", [(21, 0, 0), (-1, 0, 0), (1, 1)])
async def test_out_of_range_levels_raise_and_are_never_sent(
    rig: Rig, levels: tuple[int, ...]
) -> None:
    async with rig.link() as link:
        await link.start()
        with pytest.raises(SafetyLimitError):
            link.set_levels(levels)
        await asyncio.sleep(0.05)
        assert FrameType.SET_INTENSITY not in received_types(rig)


async def test_heartbeats_keep_output_alive_past_the_watchdog(rig: Rig) -> None:
    async with rig.link() as link:
        await link.start()
        link.set_levels((2, 2, 2))
        await asyncio.sleep(2.2)  # longer than the 1.5 s watchdog
        assert rig.firmware.levels == (2, 2, 2)
        assert received_types(rig).count(FrameType.HEARTBEAT) >= 3


async def test_cancelled_controller_task_leaves_the_motors_at_zero(rig: Rig) -> None:
    async def session() -> None:
        async with rig.link() as link:
            await link.start()
            await ramp(link)

    task = asyncio.create_task(session())
    await until(lambda: rig.firmware.levels[0] >= 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert rig.firmware.levels == (0, 0, 0)
    assert rig.firmware.applied[-1].cause == "stop"  # zero was written, not left to the watchdog


async def test_killed_controller_leaves_the_motors_at_zero_within_the_watchdog(rig: Rig) -> None:
    link = rig.link()
    await link.connect()
    await link.start()
    link.set_levels((8, 8, 8))
    await until(lambda: rig.firmware.levels == (8, 8, 8))
    # Kill the controller without any cleanup: its tasks die, nothing more is written.
    for task in list(link._tasks):
        task.cancel()
    killed = max(r.t for r in rig.firmware.received)
    await until(lambda: rig.firmware.levels == (0, 0, 0), within=3.0)
    zeroed = rig.firmware.applied[-1]
    assert zeroed.cause == "watchdog"
    assert zeroed.t - killed <= 1.5 + 0.01
    await rig.transport.disconnect()


async def test_stalled_controller_loop_leaves_the_motors_at_zero_within_the_watchdog(
    rig: Rig,
) -> None:
    async with rig.link() as link:
        await link.start()
        link.set_levels((8, 8, 8))
        await until(lambda: rig.firmware.levels == (8, 8, 8))
        last_frame = max(r.t for r in rig.firmware.received)
        time.sleep(2.0)  # noqa: ASYNC251 - the point: the whole loop stalls, heartbeats stop
        await until(lambda: rig.firmware.levels == (0, 0, 0))
        zeroed = next(r for r in rig.firmware.applied if r.cause == "watchdog")
        assert zeroed.t - last_frame == pytest.approx(1.5, abs=0.01)
        # The device's fault report latches the controller: nothing resumes on its own.
        await until(lambda: link.latched)
        assert link.stop_reason == StopReason.FAULT
        await asyncio.sleep(0.2)
        assert all(not any(r.levels) for r in rig.applied_after(zeroed.t))


async def test_link_loss_latches_reconnects_and_sends_zero_first(rig: Rig) -> None:
    async with rig.link(reconnect=ReconnectPolicy(first_backoff_s=0.05)) as link:
        await link.start()
        ramping = asyncio.create_task(ramp(link))
        await until(lambda: rig.firmware.levels[0] >= 5)
        lost_at = rig.clock.now()
        received_before = len(rig.firmware.received)
        rig.massager.drop_link()
        await until(lambda: link.state == LinkState.LINK_LOST or "reconnected" in rig.kinds())
        assert link.latched
        assert link.stop_reason == StopReason.LINK_LOST
        await until(lambda: "reconnected" in rig.kinds())
        after = rig.firmware.received[received_before:]
        assert after[0].frame is not None
        assert after[0].frame.message == Stop()  # first frame after reconnect is zero
        await asyncio.sleep(0.2)
        ramping.cancel()
        with contextlib.suppress(asyncio.CancelledError, SafetyLimitError):
            await ramping
        assert rig.firmware.levels == (0, 0, 0)  # the profile did not resume on its own
        assert all(not any(r.levels) for r in rig.applied_after(lost_at + 0.06))
        assert link.state == LinkState.READY
        assert link.latched
    assert rig.kinds().count("link_lost") == 1


async def test_out_of_range_reconnect_is_bounded(tier: str) -> None:
    async with open_rig(tier, speed=20) as rig:
        policy = ReconnectPolicy(
            attempts=3, first_backoff_s=0.5, max_backoff_s=1.0, attempt_timeout_s=10
        )
        async with rig.link(reconnect=policy) as link:
            await link.start()
            link.set_levels((5, 5, 5))
            await until(lambda: rig.firmware.levels == (5, 5, 5))
            rig.out_of_range()
            await until(lambda: "reconnect_failed" in rig.kinds(), within=20)
            assert rig.kinds().count("reconnecting") == 3
            assert link.state == LinkState.DISCONNECTED
            assert link.latched
            # Out of reach, the device's own watchdog took the output to zero.
            await until(lambda: rig.firmware.levels == (0, 0, 0))
            assert rig.firmware.applied[-1].cause == "watchdog"


async def test_garbled_and_dropped_notifications_are_counted_and_never_crash(tier: str) -> None:
    plan = FaultPlan(garble_notify=0.2, drop_notify=0.2, seed=7)
    async with open_rig(tier, plan=plan) as rig:
        async with rig.link(ack_timeout_s=0.2) as link:
            await link.start()  # the handshake re-sends what the lossy link ate
            for _ in range(40):
                with contextlib.suppress(SafetyLimitError):
                    link.set_levels((1, 1, 1))
                    link.set_levels((2, 2, 2))
                await asyncio.sleep(0.01)
            await asyncio.sleep(1.0)
            assert link.malformed_frames > 0
            assert "malformed" in rig.kinds()
            assert link.failure is None  # no task crashed
        assert rig.firmware.levels == (0, 0, 0)


async def test_repeated_malformed_frames_are_a_fault_stop(tier: str) -> None:
    async with open_rig(tier, plan=FaultPlan(garble_notify=1.0)) as rig:
        link = rig.link(ack_timeout_s=0.2)
        link.listeners.append(rig.events.append)
        with pytest.raises(Exception):  # noqa: B017,PT011 - the handshake cannot succeed
            await link.connect()
        assert link.malformed_frames >= 1
    async with open_rig(tier, plan=FaultPlan(garble_notify=0.0)) as rig, rig.link() as link:
        await link.start()
        link.set_levels((3, 3, 3))
        await until(lambda: rig.firmware.levels == (3, 3, 3))
        rig.firmware.plan.garble_notify = 1.0  # from now on every notification is garbled
        await until(lambda: link.stop_reason == StopReason.FAULT, within=5)
        await until(lambda: rig.firmware.levels == (0, 0, 0))
        assert link.malformed_frames >= link.limits.malformed_limit


async def test_a_nack_is_surfaced(tier: str) -> None:
    plan = FaultPlan(nack_types=frozenset({FrameType.SET_INTENSITY}))
    async with open_rig(tier, plan=plan) as rig, rig.link() as link:
        await link.start()
        link.set_levels((2, 2, 2))
        await until(lambda: link.nacks >= 1)
        nack = next(e for e in rig.events if e.kind == "nack")
        assert nack.detail == {"frame_type": "SET_INTENSITY", "code": "BUSY"}
        assert rig.firmware.levels == (0, 0, 0)


async def test_device_button_is_a_latched_stop(rig: Rig) -> None:
    async with rig.link() as link:
        await link.start()
        link.set_levels((6, 6, 6))
        await until(lambda: rig.firmware.levels == (6, 6, 6))
        rig.massager.press_button()
        await until(lambda: link.stop_reason == StopReason.DEVICE_BUTTON)
        assert rig.firmware.levels == (0, 0, 0)
        with pytest.raises(SafetyLimitError):
            link.set_levels((6, 6, 6))


async def test_device_without_watchdog_is_flagged_and_limited(tier: str) -> None:
    async with open_rig(tier, plan=FaultPlan(no_watchdog=True)) as rig:
        async with rig.link() as link:
            assert link.failsafe == "none"
            assert link.max_level == 8  # 40 % of 20
            await link.start()
            with pytest.raises(SafetyLimitError):
                link.set_levels((9, 0, 0))
            link.set_levels((8, 0, 0))
            await until(lambda: rig.firmware.levels == (8, 0, 0))
        limit = next(e for e in rig.events if e.kind == "limit")
        assert limit.detail["failsafe"] == "none"


@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        (lambda fw: setattr(fw, "temperature_c", 41.6), StopReason.OVER_TEMPERATURE),
        (lambda fw: setattr(fw, "battery_pct", 4.2), StopReason.LOW_BATTERY),
    ],
    ids=["over_temperature", "low_battery"],
)
async def test_device_conditions_latch_a_stop(rig: Rig, setup: object, reason: StopReason) -> None:
    async with rig.link() as link:
        await link.start()
        link.set_levels((5, 5, 5))
        await until(lambda: rig.firmware.levels == (5, 5, 5))
        setup(rig.firmware)  # type: ignore[operator]
        await until(lambda: link.stop_reason == reason)
        await until(lambda: rig.firmware.levels == (0, 0, 0))


async def test_out_of_range_ack_is_a_fault_stop(rig: Rig) -> None:
    async with rig.link() as link:
        await link.start()
        link.set_levels((5, 5, 5))
        await until(lambda: rig.firmware.levels == (5, 5, 5))
        rig.firmware.levels = (25, 5, 5)  # firmware bug: reports more than its maximum
        await until(lambda: link.stop_reason == StopReason.FAULT)
        await until(lambda: "stop" in rig.kinds())  # announced once zero is written
        fault = next(e for e in rig.events if e.kind == "stop")
        assert fault.detail["problem"] == "out-of-range status"
        await until(lambda: rig.firmware.levels == (0, 0, 0))


async def test_cancel_mid_slow_write_still_zeroes(tier: str) -> None:
    async with open_rig(tier, plan=FaultPlan(slow_write_s=0.2)) as rig:

        async def session() -> None:
            async with rig.link(ack_timeout_s=2.0) as link:
                await link.start()
                link.set_levels((7, 7, 7))
                await asyncio.sleep(10)

        task = asyncio.create_task(session())
        await until(lambda: FrameType.SET_INTENSITY in received_types(rig), within=5)
        await asyncio.sleep(0.05)  # the next write is in flight inside the slow device
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert rig.firmware.levels == (0, 0, 0)


async def test_cancel_mid_reconnect_leaves_zero(tier: str) -> None:
    async with open_rig(tier) as rig:

        async def session() -> None:
            async with rig.link(reconnect=ReconnectPolicy(first_backoff_s=0.3)) as link:
                await link.start()
                link.set_levels((7, 7, 7))
                await asyncio.sleep(10)

        task = asyncio.create_task(session())
        await until(lambda: rig.firmware.levels == (7, 7, 7))
        rig.massager.drop_link()
        await asyncio.sleep(0.1)  # now in the reconnect backoff
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await until(lambda: rig.firmware.levels == (0, 0, 0), within=3)
        assert rig.firmware.applied[-1].cause == "watchdog"


async def test_speed_scales_every_timer_on_both_ends(tier: str) -> None:
    async with open_rig(tier, speed=20) as rig:
        link = rig.link()
        await link.connect()
        await link.start()
        link.set_levels((3, 3, 3))
        await until(lambda: rig.firmware.levels == (3, 3, 3))
        await asyncio.sleep(0.2)  # 4 session-seconds: heartbeats (every 0.5 s) keep it alive
        assert rig.firmware.levels == (3, 3, 3)
        for task in list(link._tasks):
            task.cancel()
        real_start = time.monotonic()
        await until(lambda: rig.firmware.levels == (0, 0, 0))
        # The device's watchdog at 20x: 1.5 session-seconds, but at least 0.5 s of real time.
        assert time.monotonic() - real_start < 1.0
        await rig.transport.disconnect()


# -- regressions from the safety review ------------------------------------------------------


async def test_a_stop_that_overtakes_an_in_flight_write_still_has_the_last_word(rig: Rig) -> None:
    """A stack that yields before sending lets STOP pass a SET_INTENSITY already handed to it."""
    real_write = rig.transport.write

    async def slow_intensity(data: bytes, *, response: bool) -> None:
        if data[2] == FrameType.SET_INTENSITY:
            await asyncio.sleep(0.05)  # queued inside the stack while the stop goes out
        await real_write(data, response=response)

    rig.transport.write = slow_intensity  # type: ignore[method-assign]
    async with rig.link() as link:
        await link.start()
        link.set_levels((9, 9, 9))
        await asyncio.sleep(0.01)  # the writer is inside slow_intensity now
        assert (await link.stop()).confirmed
        await asyncio.sleep(0.1)  # the stale SET_INTENSITY lands after the STOP ...
        assert any(r.levels == (9, 9, 9) for r in rig.firmware.applied)
        await until(lambda: rig.firmware.levels == (0, 0, 0))  # ... and is zeroed again
        assert rig.firmware.applied[-1].cause == "stop"  # by us, not left to the watchdog
        sent_after = len(rig.firmware.received)
        await asyncio.sleep(1.0)
        later = [r.frame.message.TYPE for r in rig.firmware.received[sent_after:] if r.frame]
        assert FrameType.HEARTBEAT not in later  # a latched link never feeds the watchdog


async def test_a_stop_during_start_is_not_erased(rig: Rig) -> None:
    async with rig.link() as link:
        await link.start()
        await link.stop(StopReason.COMPLETED)  # a first session ended
        real_write = rig.transport.write

        async def press_during_hello(data: bytes, *, response: bool) -> None:
            await real_write(data, response=response)
            if data[2] == FrameType.HELLO:
                rig.massager.press_button()

        rig.transport.write = press_during_hello  # type: ignore[method-assign]
        with pytest.raises(SafetyLimitError, match="stopped while starting"):
            await link.start()
        assert link.latched
        assert link.stop_reason == StopReason.DEVICE_BUTTON
        with pytest.raises(SafetyLimitError):
            link.set_levels((5, 5, 5))


async def test_zero_is_written_before_listeners_hear_of_the_stop(rig: Rig) -> None:
    seen: list[tuple[int, ...]] = []

    def listener(event: object) -> None:
        if getattr(event, "kind", None) == "stop":
            seen.append(rig.firmware.levels)

    async with rig.link() as link:
        link.listeners.append(listener)
        await link.start()
        link.set_levels((6, 6, 6))
        await until(lambda: rig.firmware.levels == (6, 6, 6))
        await link.stop()
    assert seen == [(0, 0, 0)]


async def test_a_failing_listener_does_not_hide_a_device_fault(rig: Rig) -> None:
    def broken(_event: object) -> None:
        raise BrokenPipeError("stderr went away")

    async with rig.link() as link:
        await link.start()
        link.set_levels((6, 6, 6))
        await until(lambda: rig.firmware.levels == (6, 6, 6))
        link.listeners.append(broken)
        rig.massager.press_button()
        await until(lambda: link.latched)
        assert link.stop_reason == StopReason.DEVICE_BUTTON
        await until(lambda: rig.firmware.levels == (0, 0, 0))


async def test_out_of_range_report_on_a_device_without_watchdog_is_a_fault(tier: str) -> None:
    async with open_rig(tier, plan=FaultPlan(no_watchdog=True)) as rig, rig.link() as link:
        await link.start()
        link.set_levels((4, 4, 4))
        await until(lambda: rig.firmware.levels == (4, 4, 4))
        rig.firmware.levels = (10, 4, 4)  # above the 40 % this link allows for such a device
        await until(lambda: link.stop_reason == StopReason.FAULT)
        await until(lambda: rig.firmware.levels == (0, 0, 0))


async def test_a_refused_hello_is_reported_not_swallowed() -> None:
    async with open_rig("memory", plan=FaultPlan(nack_types=frozenset({FrameType.HELLO}))) as rig:
        link = rig.link()
        with pytest.raises(DeviceRejectedError, match="HELLO refused: BUSY"):
            await link.connect()
