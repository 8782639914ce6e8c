"""What the device link reports: its state, stop reasons, events and stop results."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class LinkState(StrEnum):
    """Where the link is; output can be non-zero only in READY while not latched."""

    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    READY = "ready"
    LINK_LOST = "link_lost"
    RECONNECTING = "reconnecting"
    CLOSED = "closed"


class StopReason(StrEnum):
    """Why output was latched off (the `stop_reason` of the CLI and MQTT contracts)."""

    COMPLETED = "completed"
    USER_STOP = "user_stop"
    REMOTE_STOP = "remote_stop"
    DEVICE_BUTTON = "device_button"
    TIMEOUT = "timeout"
    DISCOMFORT = "discomfort"
    LINK_LOST = "link_lost"
    FAULT = "fault"
    LOW_BATTERY = "low_battery"
    OVER_TEMPERATURE = "over_temperature"
    DEVICE_SILENT = "device_silent"  # no STATUS for 3 periods while the link stayed up


@dataclass(frozen=True, slots=True)
class LinkEvent:
    """Something the link saw or did, at session-clock time `t`."""

    kind: str  # connected, capabilities, stop, nack, button, fault, malformed, link_lost, ...
    t: float
    detail: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StopResult:
    """Outcome of a stop: whether the device confirmed zero, and how long that took."""

    reason: StopReason
    confirmed: bool
    latency_s: float | None  # stop requested → device ack, session-clock seconds
