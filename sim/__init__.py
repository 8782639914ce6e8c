"""The simulated massager: firmware model, virtual foot, and hosts that put it under bleak."""

from sim.clock import Clock, ScaledClock
from sim.firmware import AppliedLevels, FaultPlan, Firmware, ReceivedFrame
from sim.foot import Foot

__all__ = [
    "AppliedLevels",
    "Clock",
    "FaultPlan",
    "Firmware",
    "Foot",
    "ReceivedFrame",
    "ScaledClock",
]
