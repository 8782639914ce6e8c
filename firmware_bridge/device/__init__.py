"""The device link: one connected massager, its state, events and stop."""

from firmware_bridge.device.events import LinkEvent, LinkState, StopReason, StopResult
from firmware_bridge.device.health import DeviceLimits
from firmware_bridge.device.link import MassagerLink, ReconnectPolicy

__all__ = [
    "DeviceLimits",
    "LinkEvent",
    "LinkState",
    "MassagerLink",
    "ReconnectPolicy",
    "StopReason",
    "StopResult",
]
