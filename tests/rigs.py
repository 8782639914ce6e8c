"""Test rigs: the production transport over either simulator tier."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from bleak import BleakClient
from bleak.backends.device import BLEDevice

from firmware_bridge.compose import open_simulator
from firmware_bridge.device import LinkEvent, MassagerLink
from firmware_bridge.protocol import ScaledClock
from firmware_bridge.protocol.description import Description
from firmware_bridge.transport import BleakTransport
from sim.firmware import AppliedLevels, FaultPlan, Firmware
from sim.hosts import SimulatedMassager

TIERS = ("memory", "bumble")


async def until(predicate: Callable[[], object], within: float = 10.0) -> None:
    """Poll `predicate()` until true; fail the test after `within` real seconds."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {within} s")
        await asyncio.sleep(0.005)


@dataclass
class Rig:
    """One simulated massager reachable through `transport` (bleak + retry connector)."""

    tier: str
    massager: SimulatedMassager
    clock: ScaledClock
    transport: BleakTransport
    out_of_range: Callable[[], None]
    back_in_range: Callable[[], None]
    events: list[LinkEvent] = field(default_factory=list)

    @property
    def device(self) -> BLEDevice:
        return self.transport.device

    def bleak_client(self, **kwargs: Any) -> BleakClient:
        """A bare bleak client on this tier's backend (what the transport builds on)."""
        return BleakClient(
            self.device,
            backend=self.transport.backend,
            **self.transport.backend_kwargs,
            **kwargs,
        )

    @property
    def firmware(self) -> Firmware:
        return self.massager.firmware

    def link(self, **kwargs: Any) -> MassagerLink:
        link = MassagerLink(self.transport, clock=self.clock, **kwargs)
        link.listeners.append(self.events.append)
        return link

    def kinds(self) -> list[str]:
        return [event.kind for event in self.events]

    def applied_after(self, t: float) -> list[AppliedLevels]:
        return [record for record in self.firmware.applied if record.t >= t]


@asynccontextmanager
async def open_rig(
    tier: str,
    *,
    plan: FaultPlan | None = None,
    firmware: Firmware | None = None,
    speed: float = 1.0,
    latency_s: float = 0.0,
    clock: ScaledClock | None = None,
    description: Description | None = None,
) -> AsyncIterator[Rig]:
    """A massager on `tier`, found by scanning, not yet connected (impersonating
    `description` when one is given)."""
    async with open_simulator(
        tier,
        clock=clock or ScaledClock(speed),
        plan=plan,
        firmware=firmware,
        latency_s=latency_s,
        description=description,
    ) as setup:
        try:
            yield Rig(
                tier,
                setup.massager,
                setup.clock,
                setup.transport,
                setup.out_of_range,
                setup.back_in_range,
            )
        finally:
            await setup.transport.disconnect()
