"""The controller's link tests against the reference firmware's core, hosted by the simulator.

`sim.reference.ReferenceFirmware` puts firmware/core.py where the simulator's own firmware
model usually is, on both tiers (in memory, and over bumble's BLE stack). The key tests of
tests/firmware_bridge/test_link.py run here unchanged, then what is the core's own: the device
timer, and the motors zeroed the moment the link is lost.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from firmware_bridge.device import ReconnectPolicy, StopReason
from firmware_bridge.protocol import CapabilityFlags, FrameType
from sim.firmware import FaultPlan
from sim.reference import ReferenceFirmware
from tests.firmware_bridge import test_link as link_tests
from tests.rigs import Rig, open_rig, until

pytestmark = pytest.mark.sim_only

REUSED: list[Callable[[Rig], Awaitable[None]]] = [
    link_tests.test_connect_handshake_sends_zero_first_and_reports_capabilities,
    link_tests.test_levels_reach_the_motors_and_acks_become_applied_state,
    link_tests.test_updates_are_coalesced_latest_wins,
    link_tests.test_stop_reaches_zero_while_a_ramp_is_in_flight,
    link_tests.test_stop_is_idempotent_and_the_latch_holds_until_start,
    link_tests.test_heartbeats_keep_output_alive_past_the_watchdog,
    link_tests.test_cancelled_controller_task_leaves_the_motors_at_zero,
    link_tests.test_killed_controller_leaves_the_motors_at_zero_within_the_watchdog,
    link_tests.test_stalled_controller_loop_leaves_the_motors_at_zero_within_the_watchdog,
    link_tests.test_link_loss_latches_reconnects_and_sends_zero_first,
    link_tests.test_device_button_is_a_latched_stop,
    link_tests.test_stop_before_start_and_zero_is_always_allowed,
    link_tests.test_a_stop_that_overtakes_an_in_flight_write_still_has_the_last_word,
    link_tests.test_a_stop_during_start_is_not_erased,
    link_tests.test_zero_is_written_before_listeners_hear_of_the_stop,
    link_tests.test_a_failing_listener_does_not_hide_a_device_fault,
]


@pytest.fixture
async def rig(tier: str) -> AsyncIterator[Rig]:
    async with open_rig(tier, firmware=ReferenceFirmware()) as rig:
        yield rig


@pytest.mark.parametrize("case", REUSED, ids=lambda case: case.__name__.removeprefix("test_"))
async def test_link(rig: Rig, case: Callable[[Rig], Awaitable[None]]) -> None:
    assert isinstance(rig.firmware, ReferenceFirmware)
    await case(rig)


@pytest.mark.parametrize(
    ("condition", "reason"),
    [
        (lambda fw: setattr(fw, "temperature_c", 41.6), StopReason.OVER_TEMPERATURE),
        (lambda fw: setattr(fw, "battery_pct", 4.2), StopReason.LOW_BATTERY),
    ],
    ids=["over_temperature", "low_battery"],
)
async def test_device_conditions_stop_the_motors_themselves(
    rig: Rig, condition: Callable[[ReferenceFirmware], None], reason: StopReason
) -> None:
    """The controller latches on the device's report; the core had already zeroed the motors."""
    assert isinstance(rig.firmware, ReferenceFirmware)
    async with rig.link() as link:
        await link.start()
        link.set_levels((5, 5, 5))
        await until(lambda: rig.firmware.levels == (5, 5, 5))
        condition(rig.firmware)
        await until(lambda: link.stop_reason == reason)
        assert rig.firmware.applied[-1].cause == reason.value
        assert rig.firmware.levels == (0, 0, 0)


async def test_the_device_timer_ends_the_session(rig: Rig) -> None:
    async with rig.link() as link:
        assert link.capabilities is not None
        assert CapabilityFlags.TIMER in link.capabilities.flags
        await link.start()
        link.set_levels((4, 4, 4))
        await until(lambda: rig.firmware.levels == (4, 4, 4))
        armed = rig.clock.now()
        await link.set_timer(1)
        await until(lambda: link.stop_reason == StopReason.TIMEOUT, within=3.0)
        zeroed = rig.firmware.applied[-1]
        assert zeroed.cause == "timer"
        assert zeroed.t - armed == pytest.approx(1.0, abs=0.1)
        assert rig.firmware.levels == (0, 0, 0)


async def test_the_core_zeroes_the_motors_when_the_link_is_lost(rig: Rig) -> None:
    async with rig.link(reconnect=ReconnectPolicy(first_backoff_s=0.05)) as link:
        await link.start()
        link.set_levels((7, 7, 7))
        await until(lambda: rig.firmware.levels == (7, 7, 7))
        lost_at = rig.clock.now()
        rig.massager.drop_link(0x08)  # out of range: nobody is left to send STOP
        await until(lambda: rig.firmware.levels == (0, 0, 0), within=1.0)
        zeroed = rig.firmware.applied[-1]
        assert zeroed.cause == "link_lost"  # at once, not after the 1.5 s watchdog
        assert zeroed.t - lost_at < 0.2
        await until(lambda: "reconnected" in rig.kinds())
        assert link.latched


@pytest.mark.parametrize(
    "plan", [FaultPlan(no_watchdog=True), FaultPlan(nack_types=frozenset({FrameType.HELLO}))]
)
def test_plans_for_another_firmware_are_refused(plan: FaultPlan) -> None:
    with pytest.raises(ValueError, match="another firmware"):
        ReferenceFirmware(plan=plan)


async def test_a_reboot_forgets_every_setting(tier: str) -> None:
    async with open_rig(tier, firmware=ReferenceFirmware()) as rig, rig.link() as link:
        await link.start()
        await link.set_timer(600)
        link.set_levels((3, 3, 3))
        await until(lambda: rig.firmware.levels == (3, 3, 3))
        rig.firmware.plan.reboot_at_s = rig.clock.now()  # due by the next STATUS at the latest
        await until(lambda: rig.firmware.boots == 2)
        assert rig.firmware.applied[-1].cause == "reboot"
        assert rig.firmware.timer_deadline is None
        assert rig.firmware.watchdog_s == 1.5
