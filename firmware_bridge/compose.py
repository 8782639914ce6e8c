"""Composing a device connection: the OS stack, a bumble HCI transport, or the simulator.

This is the composition root for the simulator: the only module of the controller that imports
`sim`, and only inside `open_simulator` (the CLI's `--sim` and `firmware_bridge.simulated()`).
bumble is imported lazily too, so importing this module costs nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bleak.backends.client import BaseBleakClient
from bleak.backends.scanner import BaseBleakScanner

from firmware_bridge.errors import DeviceNotFoundError
from firmware_bridge.protocol import ScaledClock
from firmware_bridge.transport import BleakTransport, find_massager

if TYPE_CHECKING:
    from firmware_bridge.discovery import Sighting
    from firmware_bridge.protocol.description import Description
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
    description: Description | None = None,
) -> AsyncIterator[SimulatorSetup]:
    """A simulated massager on `tier`, found by scanning for its service UUID (not connected).

    Tier "memory" hosts it in an in-memory bleak backend; tier "bumble" puts it behind a bumble
    GATT peripheral on a virtual link reached through the bumble-central bleak backend.
    `description`: the simulator impersonates that model (found by its address, driven by the
    description's transport) instead of speaking protocol v1.
    """
    from firmware_bridge.devices import transport_for
    from firmware_bridge.transport.bumble_backend import BumbleBleakClient, BumbleBleakScanner
    from sim.hosts import InMemoryBleakClient, InMemoryBleakScanner, SimulatedMassager, VirtualAir
    from sim.hosts.virtual import VirtualRadio

    if tier not in SIM_TIERS:
        raise ValueError(f"unknown simulator tier {tier!r} (choose from {SIM_TIERS})")
    clock = clock or ScaledClock()
    massager = SimulatedMassager(
        firmware=firmware, plan=plan, clock=clock, foot=foot, description=description
    )
    # An impersonated model advertises what that model does, not our service: find it by address.
    wanted = {"address": massager.address} if massager.description else {}
    if tier == "memory":
        air = VirtualAir([massager])

        def out_of_range() -> None:
            massager.reachable = False
            massager.drop_link(0x08)  # HCI connection timeout: what walking away looks like

        def back_in_range() -> None:
            massager.reachable = True

        try:
            device = await find_massager(
                backend=InMemoryBleakScanner, air=air, timeout=scan_timeout, **wanted
            )
            transport = transport_for(
                device, massager.description, backend=InMemoryBleakClient, clock=clock
            )
            try:
                yield SimulatorSetup(tier, massager, clock, transport, out_of_range, back_in_range)
            finally:
                await transport.disconnect()  # its background tasks too, if the caller did not
        finally:
            await massager.close()
        return
    radio = VirtualRadio(latency_s=latency_s)
    try:
        central = await radio.add_central()
        host = await radio.add_peripheral(massager)
        if massager.description:
            wanted = {"address": host.address}
        device = await find_massager(
            backend=BumbleBleakScanner, central=central, timeout=scan_timeout, **wanted
        )
        transport = transport_for(
            device,
            massager.description,
            backend=BumbleBleakClient,
            backend_kwargs={"central": central},
            clock=clock,
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


@dataclass
class Stack:
    """The bleak backends a real massager is reached through (None: the OS's own stack)."""

    scanner: type[BaseBleakScanner] | None = None
    client: type[BaseBleakClient] | None = None
    scanner_kwargs: dict[str, Any] = field(default_factory=dict)
    client_kwargs: dict[str, Any] = field(default_factory=dict)


@asynccontextmanager
async def open_hardware(
    *,
    address: str | None = None,
    name: str | None = None,
    hci: str | None = None,
    scan_timeout: float = 10.0,
    preferred: Sequence[str] = (),
    ask: Callable[[list[Sighting]], Awaitable[Sighting]] | None = None,
    on_chosen: Callable[[Sighting], None] | None = None,
    stack: Stack | None = None,
    esphome: Sequence[str] = (),
    esphome_key: str | None = None,
) -> AsyncIterator[BleakTransport]:
    """A real massager: the OS Bluetooth stack, or a bumble HCI transport (`--hci usb:0`).

    Without `address`/`name`: a remembered massager in range (the first of `preferred`), else
    the only massager in range (ours or described), else `ask(candidates)`; without `ask`,
    several raise SeveralMassagersError. The transport suits the device's description, carries
    the scan's RSSI, pairs when the description says so, and is disconnected on exit.
    `stack` swaps the backends (tests: the simulator's); `on_chosen` hears the pick.
    `esphome`: reach it through these ESPHome Bluetooth proxies (`HOST[:PORT]`, key
    `esphome_key`) instead of a local adapter.
    """
    choice: dict[str, Any] = {
        "address": address,
        "name": name,
        "scan_timeout": scan_timeout,
        "preferred": preferred,
        "ask": ask,
        "on_chosen": on_chosen,
    }
    if esphome:  # through ESPHome Bluetooth proxies (bleak-esphome, imported lazily)
        from firmware_bridge.transport.esphome import open_proxies

        async with (
            open_proxies(esphome, esphome_key) as proxies,
            _opened(proxies.stack(), **choice) as transport,
        ):
            yield transport
        return
    if hci is None:
        async with _opened(stack or Stack(), **choice) as transport:
            yield transport
        return
    from firmware_bridge.transport.bumble_backend import (
        BumbleBleakClient,
        BumbleBleakScanner,
        open_central,
    )

    async with open_central(hci) as central:
        kwargs: dict[str, Any] = {"central": central}
        bumble = Stack(BumbleBleakScanner, BumbleBleakClient, kwargs, kwargs)
        async with _opened(bumble, **choice) as transport:
            yield transport


@asynccontextmanager
async def _opened(
    stack: Stack,
    *,
    address: str | None,
    name: str | None,
    scan_timeout: float,
    preferred: Sequence[str],
    ask: Callable[[list[Sighting]], Awaitable[Sighting]] | None,
    on_chosen: Callable[[Sighting], None] | None,
) -> AsyncIterator[BleakTransport]:
    from firmware_bridge import discovery
    from firmware_bridge.devices import transport_for

    def wanted(sighting: Sighting) -> bool:
        if address is not None:
            return sighting.address.upper() == address.upper()
        if name is not None:
            return sighting.name == name
        return (
            bool(preferred)
            and sighting.is_massager
            and sighting.address.upper() in {a.upper() for a in preferred}
        )

    found = await discovery.scan(
        scan_timeout,
        backend=stack.scanner,
        stop_when=wanted,
        settle_s=None if (address or name) else discovery.SETTLE_S,
        **stack.scanner_kwargs,
    )
    if address or name:
        chosen = next((s for s in found if wanted(s)), None)
        if chosen is None:
            raise DeviceNotFoundError(
                f"no device {address or name} found within {scan_timeout:g} s; is it on, in "
                "range and not connected to a phone? (`massager scan` lists what is nearby)"
            )
    else:
        try:
            chosen = discovery.pick(found, preferred=preferred, timeout=scan_timeout)
        except discovery.SeveralMassagersError as exc:
            if ask is None:
                raise
            chosen = await ask(exc.candidates)
    transport = transport_for(
        chosen.device,
        chosen.description,
        backend=stack.client,
        backend_kwargs=dict(stack.client_kwargs),
    )
    if chosen.description is not None and chosen.description.pairing:
        transport.pair = True
    transport.rssi = chosen.rssi
    if on_chosen is not None:
        on_chosen(chosen)
    try:
        yield transport
    finally:
        await transport.disconnect()
