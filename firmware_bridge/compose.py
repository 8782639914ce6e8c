"""Composing a device connection: the OS stack, a bumble HCI transport, or the simulator.

This is the composition root for the simulator: the only module of the controller that imports
`sim`, and only inside `open_simulator` (the CLI's `--sim` and `firmware_bridge.simulated()`).
bumble is imported lazily too, so importing this module costs nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from firmware_bridge.protocol import ScaledClock
from firmware_bridge.transport import BleakTransport, find_massager

if TYPE_CHECKING:
    from sim.firmware import FaultPlan, Firmware
    from sim.foot import Foot
    from sim.hosts import SimulatedMassager

SIM_TIERS = ("bumble", "memory")


@dataclass
class SimulatorSetup:
    """A simulated massager, reachable through `transport` (bleak + retry connector)."""

    tier: str
    massager: SimulatedMassager
    clock: ScaledClock
    transport: BleakTransport
    out_of_range: Callable[[], None]
    back_in_range: Callable[[], None]


@asynccontextmanager
async def open_simulator(
    tier: str = "bumble",
    *,
    clock: ScaledClock | None = None,
    plan: FaultPlan | None = None,
    firmware: Firmware | None = None,
    foot: Foot | None = None,
    latency_s: float = 0.0,
    scan_timeout: float = 5.0,
) -> AsyncIterator[SimulatorSetup]:
    """A simulated massager on `tier`, found by scanning for its service UUID (not connected).

    Tier "memory" hosts it in an in-memory bleak backend; tier "bumble" puts it behind a bumble
    GATT peripheral on a virtual link reached through the bumble-central bleak backend.
    """
    from firmware_bridge.transport.bumble_backend import BumbleBleakClient, BumbleBleakScanner
    from sim.hosts import InMemoryBleakClient, InMemoryBleakScanner, SimulatedMassager, VirtualAir
    from sim.hosts.virtual import VirtualRadio

    if tier not in SIM_TIERS:
        raise ValueError(f"unknown simulator tier {tier!r} (choose from {SIM_TIERS})")
    clock = clock or ScaledClock()
    massager = SimulatedMassager(firmware=firmware, plan=plan, clock=clock, foot=foot)
    if tier == "memory":
        air = VirtualAir([massager])

        def out_of_range() -> None:
            massager.reachable = False
            massager.drop_link(0x08)  # HCI connection timeout: what walking away looks like

        def back_in_range() -> None:
            massager.reachable = True

        try:
            device = await find_massager(
                backend=InMemoryBleakScanner, air=air, timeout=scan_timeout
            )
            transport = BleakTransport(device, backend=InMemoryBleakClient)
            yield SimulatorSetup(tier, massager, clock, transport, out_of_range, back_in_range)
        finally:
            await massager.close()
        return
    radio = VirtualRadio(latency_s=latency_s)
    try:
        central = await radio.add_central()
        host = await radio.add_peripheral(massager)
        device = await find_massager(
            backend=BumbleBleakScanner, central=central, timeout=scan_timeout
        )
        transport = BleakTransport(
            device, backend=BumbleBleakClient, backend_kwargs={"central": central}
        )
        try:
            yield SimulatorSetup(
                tier,
                massager,
                clock,
                transport,
                lambda: radio.out_of_range(host),
                lambda: radio.back_in_range(host),
            )
        finally:
            await transport.disconnect()
    finally:
        await radio.close()
        await massager.close()


@asynccontextmanager
async def open_hardware(
    *,
    address: str | None = None,
    name: str | None = None,
    hci: str | None = None,
    scan_timeout: float = 10.0,
) -> AsyncIterator[BleakTransport]:
    """A real massager: the OS Bluetooth stack, or a bumble HCI transport (`--hci usb:0`)."""
    from firmware_bridge.transport.bumble_backend import (
        BumbleBleakClient,
        BumbleBleakScanner,
        open_central,
    )

    if hci is None:
        device = await find_massager(address=address, name=name, timeout=scan_timeout)
        yield BleakTransport(device)
        return
    async with open_central(hci) as central:
        kwargs: dict[str, Any] = {"central": central}
        device = await find_massager(
            address=address, name=name, timeout=scan_timeout, backend=BumbleBleakScanner, **kwargs
        )
        transport = BleakTransport(device, backend=BumbleBleakClient, backend_kwargs=kwargs)
        try:
            yield transport
        finally:
            await transport.disconnect()
