"""Hosts that put the simulated massager under bleak (tier 1 in memory, tier 2 over bumble)."""

from sim.hosts.memory import InMemoryBleakClient, InMemoryBleakScanner, VirtualAir
from sim.hosts.runtime import SimulatedMassager

__all__ = ["InMemoryBleakClient", "InMemoryBleakScanner", "SimulatedMassager", "VirtualAir"]
