"""The simulator's runtime: what the firmware emits always reaches the host."""

from __future__ import annotations

from firmware_bridge.protocol import FrameType, ScaledClock, decode
from sim.hosts.runtime import SimulatedMassager


async def test_asking_the_virtual_user_does_not_swallow_due_notifications() -> None:
    massager = SimulatedMassager(clock=ScaledClock(1000))  # status falls due within a ms
    sent: list[bytes] = []
    massager.on_notify = sent.append
    massager.attach()
    massager.firmware._next_status = 0.0  # a STATUS is due right now
    massager.rating()
    assert [decode(data).message.TYPE for data in sent] == [FrameType.STATUS]
