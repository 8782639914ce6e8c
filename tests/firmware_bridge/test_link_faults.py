"""The link against misbehaving devices and stacks, on both tiers (S3, S4, S9).

Each test here protects one promise that a deliberately broken link once kept passing the
suite (see tests/mutants.toml): an ack that never comes, a device that goes silent, a write
that overtakes the stop, stops lost in the stack, a crashed task, a lying ack.
"""

from __future__ import annotations

import asyncio

import pytest

from firmware_bridge.device import LinkEvent, LinkState, ReconnectPolicy, StopReason
from firmware_bridge.protocol import Ack, FrameType, encode
from sim.firmware import FaultPlan
from tests.rigs import Rig, open_rig, until

pytestmark = pytest.mark.sim_only


def frames_after(rig: Rig, t: float) -> list[FrameType]:
    return [r.frame.message.TYPE for r in rig.firmware.received if r.frame and r.t >= t]


async def test_a_stop_counts_as_confirmed_only_when_the_device_acks_zero(rig: Rig) -> None:
    async with rig.link() as link:
        await link.start()
        link.set_levels((6, 6, 6))
        await until(lambda: link.applied == (6, 6, 6))
        rig.firmware.plan.mute_at_s = rig.clock.now()  # writes still obeyed, nothing answers
        result = await link.stop()
        assert not result.confirmed
        assert result.latency_s is None
        assert rig.firmware.levels == (0, 0, 0)  # the stop itself got through
        assert "stop_unconfirmed" in rig.kinds()


async def test_a_device_that_goes_silent_is_a_latched_stop_with_its_own_reason(tier: str) -> None:
    async with open_rig(tier, speed=10) as rig, rig.link() as link:
        await link.start()
        link.set_levels((5, 5, 5))
        await until(lambda: rig.firmware.levels == (5, 5, 5))
        await asyncio.sleep(0.3)  # 3 session-seconds of normal STATUS: nothing is flagged
        assert not link.latched
        assert not link.stale
        silent_at = rig.clock.now()
        rig.firmware.plan.mute_at_s = silent_at
        await until(lambda: link.stop_reason == StopReason.DEVICE_SILENT, within=5)
        assert link.latched
        assert link.stale
        assert link.state == LinkState.READY  # the BLE link itself never dropped
        silent = next(e for e in rig.events if e.kind == "device_silent")
        assert silent.detail["backstop"] == "device watchdog (1.5 s)"
        assert float(str(silent.detail["silent_s"])) >= 3.0  # three missed STATUS periods
        assert silent.t - silent_at < 8.0  # ... noticed within a few more (clock seconds)
        await until(lambda: "stop_unconfirmed" in rig.kinds())  # no ack from a mute device
        await until(lambda: rig.firmware.levels == (0, 0, 0))
        after = frames_after(rig, silent.t)
        # A heartbeat already on the air may land; once the stop is out, none follows.
        assert FrameType.HEARTBEAT not in after[after.index(FrameType.STOP) :]


async def test_a_write_that_overtakes_the_stop_is_zeroed_at_once(rig: Rig) -> None:
    """Not left to the heartbeat loop or the device watchdog: the writer re-stops at once."""
    real_write = rig.transport.write

    async def slow_intensity(data: bytes, *, response: bool) -> None:
        if data[2] == FrameType.SET_INTENSITY:
            await asyncio.sleep(0.05)  # handed to the stack, sent after the stop
        await real_write(data, response=response)

    rig.transport.write = slow_intensity  # type: ignore[method-assign]
    async with rig.link(heartbeat_s=1.4) as link:  # the heartbeat loop's next look: 1.4 s on
        await link.start()
        link.set_levels((9, 9, 9))
        await asyncio.sleep(0.01)
        assert (await link.stop()).confirmed
        await until(lambda: any(r.levels == (9, 9, 9) for r in rig.firmware.applied))
        stale = next(r for r in rig.firmware.applied if r.levels == (9, 9, 9))
        await until(lambda: rig.firmware.levels == (0, 0, 0))
        zeroed = rig.applied_after(stale.t)[-1]
        assert zeroed.cause == "stop"
        assert zeroed.t - stale.t < 0.3  # well before the heartbeat loop (1.4 s) or watchdog


async def test_a_latched_link_re_stops_a_device_that_kept_its_output(rig: Rig) -> None:
    """Stops lost in the stack: the link sends STOP again, never a heartbeat that feeds it."""
    real_write = rig.transport.write
    swallowed: list[bytes] = []

    async def lose_two_stops(data: bytes, *, response: bool) -> None:
        if data[2] == FrameType.STOP and armed.is_set() and len(swallowed) < 2:
            swallowed.append(data)  # accepted by the stack, never reaches the device
            return
        await real_write(data, response=response)

    armed = asyncio.Event()
    rig.transport.write = lose_two_stops  # type: ignore[method-assign]
    async with rig.link(ack_timeout_s=0.3) as link:
        await link.start()
        link.set_levels((7, 7, 7))
        await until(lambda: rig.firmware.levels == (7, 7, 7))
        armed.set()
        latched_at = rig.clock.now()
        result = await link.stop()
        assert not result.confirmed
        assert len(swallowed) == 2
        assert rig.firmware.levels == (7, 7, 7)  # the device never heard either stop
        await until(lambda: rig.firmware.levels == (0, 0, 0), within=1.2)  # before its watchdog
        assert rig.firmware.applied[-1].cause == "stop"
        assert FrameType.HEARTBEAT not in frames_after(rig, latched_at)


async def test_a_crashed_link_task_is_a_fault_stop(rig: Rig) -> None:
    real_write = rig.transport.write
    crash = asyncio.Event()

    async def buggy_stack(data: bytes, *, response: bool) -> None:
        if crash.is_set() and data[2] == FrameType.SET_INTENSITY:
            raise RuntimeError("stack bug")  # not a MassagerError: the writer task dies
        await real_write(data, response=response)

    rig.transport.write = buggy_stack  # type: ignore[method-assign]
    async with rig.link() as link:
        await link.start()
        link.set_levels((4, 4, 4))
        await until(lambda: rig.firmware.levels == (4, 4, 4))
        crash.set()
        link.set_levels((5, 5, 5))
        await until(lambda: link.stop_reason == StopReason.FAULT)
        assert isinstance(link.failure, RuntimeError)
        await until(lambda: rig.firmware.levels == (0, 0, 0))
        assert rig.firmware.applied[-1].cause == "stop"


async def test_an_ack_reporting_levels_above_the_maximum_is_a_fault_stop(rig: Rig) -> None:
    at_stop: list[tuple[int, ...]] = []

    def listener(event: LinkEvent) -> None:
        if event.kind == "stop":
            at_stop.append(rig.firmware.levels)

    async with rig.link() as link:
        link.listeners.append(listener)
        await link.start()
        link.set_levels((5, 5, 5))
        await until(lambda: rig.firmware.levels == (5, 5, 5))
        assert rig.massager.on_notify is not None
        lying_ack = Ack(0, FrameType.SET_INTENSITY, (25, 5, 5))  # firmware bug: 25 > 20
        rig.massager.on_notify(encode(lying_ack, 200))  # a real notification over the link
        await until(lambda: link.stop_reason == StopReason.FAULT)
        await until(lambda: "stop" in rig.kinds())  # announced once zero is written
        stop = next(e for e in rig.events if e.kind == "stop")
        assert stop.detail["problem"] == "out-of-range ack"
        await until(lambda: rig.firmware.levels == (0, 0, 0))
    assert at_stop == [(0, 0, 0)]  # the stop was announced only once zero was written


async def test_a_latched_link_gives_up_re_stopping_so_the_device_watchdog_can_act(
    tier: str,
) -> None:
    """A device that hears frames but never answers: a few STOPs, then nothing that feeds it."""
    async with open_rig(tier, speed=10) as rig, rig.link() as link:
        await link.start()
        link.set_levels((5, 5, 5))
        await until(lambda: rig.firmware.levels == (5, 5, 5))
        muted_at = rig.clock.now()
        rig.firmware.plan.mute_at_s = muted_at
        await until(lambda: link.stop_reason == StopReason.DEVICE_SILENT, within=5)
        await asyncio.sleep(1.5)  # 15 session-seconds: the heartbeat loop looked ~30 times
        sent = len(frames_after(rig, muted_at))
        # The stop and three re-stops, each said twice when unanswered: then nothing at all.
        assert 1 <= frames_after(rig, muted_at).count(FrameType.STOP) <= 2 * (1 + 3)
        await asyncio.sleep(1.0)
        assert len(frames_after(rig, muted_at)) == sent  # silent: its watchdog may act
        assert link.stale  # what it last said is old news


async def test_values_are_stale_while_the_link_is_down(rig: Rig) -> None:
    async with rig.link(reconnect=ReconnectPolicy(attempts=0)) as link:
        await link.start()
        await until(lambda: link.battery_pct is not None)
        assert not link.stale
        rig.massager.drop_link()
        await until(lambda: link.state == LinkState.LINK_LOST)
        assert link.stale


async def test_closing_after_link_loss_reaches_a_device_without_watchdog_to_stop_it(
    tier: str,
) -> None:
    """Nothing on such a device zeroes it: closing sees the reconnect through (zero first)."""
    async with open_rig(tier, plan=FaultPlan(no_watchdog=True)) as rig:
        async with rig.link(reconnect=ReconnectPolicy(first_backoff_s=0.3)) as link:
            await link.start()
            link.set_levels((4, 4, 4))
            await until(lambda: rig.firmware.levels == (4, 4, 4))
            rig.massager.drop_link()
            await until(lambda: link.state != LinkState.READY)
        assert rig.firmware.levels == (0, 0, 0)  # leaving the block reconnected and zeroed it
        assert rig.firmware.applied[-1].cause == "stop"
