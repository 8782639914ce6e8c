"""The CLI's both-feet assembly: a stop that came before the group existed still stands."""

from __future__ import annotations

import argparse
import asyncio
from contextlib import AsyncExitStack

import pytest

from firmware_bridge.cli.run_group import assemble, connect_member
from firmware_bridge.device import StopReason
from firmware_bridge.protocol import ScaledClock
from firmware_bridge.runner import Session
from firmware_bridge.safety import SafetySettings
from tests.firmware_bridge.test_runner import steady
from tests.rigs import until

pytestmark = pytest.mark.sim_only


async def test_a_button_pressed_while_the_other_foot_connects_keeps_both_from_starting() -> None:
    args = argparse.Namespace(sim=True, sim_tier="memory", sim_description=None, device_id=None)
    clock = ScaledClock(10)
    async with AsyncExitStack() as stack:
        first = await connect_member(args, stack, clock, 0)
        first.massager.press_button()  # the person stops before the session began
        await until(lambda: first.stopped_early == [StopReason.DEVICE_BUTTON])
        second = await connect_member(args, stack, clock, 1)
        members = [first, second]
        sessions = [Session(m.link, steady(1.0, 60), SafetySettings(cap=4)) for m in members]
        records = await asyncio.wait_for(assemble(members, sessions).run(), 10)
        assert [r.stop_reason for r in records] == [StopReason.DEVICE_BUTTON] * 2
        for member in members:  # neither foot felt anything
            assert all(not any(a.levels) for a in member.massager.firmware.applied)
        assert first.link.latch_listeners == [] or all(
            getattr(hook, "group", None) is not None for hook in first.link.latch_listeners
        )
