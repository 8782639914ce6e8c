"""MQTT payloads as pydantic models: one schema, documented in docs/mqtt.md."""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

State = Literal["idle", "running", "paused", "stopped", "link_lost", "fault"]


def now_ts() -> float:
    """Wall-clock seconds since the epoch (payload `ts`), rounded to milliseconds."""
    return round(time.time(), 3)


class StatePayload(BaseModel):
    """`<prefix>/<id>/state`, retained: what the device is doing now."""

    model_config = ConfigDict(extra="allow")

    state: State
    profile: str | None = None
    stop_reason: str | None = None
    ts: float = Field(default_factory=now_ts)
    session_id: str | None = None
    cap: int | None = None
    failsafe: str | None = None
    remote_control: bool = False
    stop_confirmed: bool | None = None  # the device acknowledged zero after the last stop


class TelemetryPayload(BaseModel):
    """`<prefix>/<id>/telemetry`, at least 1 Hz while running."""

    model_config = ConfigDict(extra="allow")

    ts: float = Field(default_factory=now_ts)
    intensity: float  # commanded fraction of the device maximum
    applied: float  # device-acknowledged fraction
    cap: int
    nrs: int | None  # last 0-10 rating
    battery: int | None
    temperature_c: float | None
    rssi: int | None
    elapsed_s: float
    remaining_s: float
    segment: str
    zones: list[float] = Field(default_factory=list)
    stale: bool = False  # the device's STATUS is overdue: applied/battery/temperature may lag


class EventPayload(BaseModel):
    """`<prefix>/<id>/events`, QoS 1. `id` lets receivers drop a redelivered duplicate."""

    model_config = ConfigDict(extra="allow")

    type: str
    ts: float = Field(default_factory=now_ts)
    id: str = Field(default_factory=lambda: uuid.uuid4().hex[:16])
    session_id: str | None = None
    t: float | None = None  # session time, seconds

    @classmethod
    def of(
        cls, type_: str, *, session_id: str | None = None, t: float | None = None, **detail: Any
    ) -> EventPayload:
        return cls(type=type_, session_id=session_id, t=t, **detail)
