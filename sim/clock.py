"""The simulator's time base: the protocol's shared clock (firmware_bridge.protocol.timebase)."""

from firmware_bridge.protocol.timebase import Clock, ScaledClock

__all__ = ["Clock", "ScaledClock"]
