"""Feeding a running session into MQTT and the local journal (the session's hooks)."""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import TYPE_CHECKING, Any

from firmware_bridge.device import StopReason, StopResult
from firmware_bridge.journal import Journal
from firmware_bridge.record import Event, Sample, SessionRecord
from firmware_bridge.telemetry.payloads import (
    EventPayload,
    State,
    StatePayload,
    TelemetryPayload,
)
from firmware_bridge.telemetry.publisher import CommandHandlers, Publisher

if TYPE_CHECKING:
    from firmware_bridge.group import SessionGroup
    from firmware_bridge.runner import Session

_LOGGER = logging.getLogger(__name__)

_STATE_ON_EVENT: dict[str, State] = {
    "session_started": "running",
    "paused": "paused",  # the person paused: output at zero, the session limit running
    "resumed": "running",
    "link_lost": "link_lost",
    "fault": "fault",
}


class SessionTelemetry:
    """The session's `on_sample`/`on_event` for MQTT and the journal. Never raises (S10)."""

    def __init__(
        self,
        *,
        profile: str,
        cap: int,
        publisher: Publisher | None = None,
        journal: Journal | None = None,
        session_id: str | None = None,
    ) -> None:
        # The publisher's session id is the one its claim on the device id carries.
        self.session_id = (
            publisher.session_id if publisher is not None else session_id or secrets.token_hex(6)
        )
        self.profile = profile
        self.cap = cap
        self.publisher = publisher
        self.journal = journal
        self.failsafe: str | None = None
        self.stop_confirmed: bool | None = None
        self._stop_reason: str | None = None
        self._state: State = "idle"
        self._publish_state("idle")

    def attach(self, session: Session | SessionGroup) -> None:
        """Take commands for `session` (stop, discomfort, cap) from the publisher."""
        if self.publisher is None:
            return
        remote = self.publisher.remote_control

        def stop() -> asyncio.Task[StopResult]:
            stopping = session.request_stop(StopReason.REMOTE_STOP)  # latched before returning
            stopping.add_done_callback(self._stop_done)
            return stopping

        def discomfort(rating: int) -> str | None:
            if session.governor is None or session.governor.stopped:
                return "no session is running"
            # S8: a remote rating never raises output; it is recorded as the remote's, not yours
            session.report_discomfort(rating, may_release=remote, source="remote")
            return None

        def cap(value: int) -> str | None:
            if session.governor is None:
                return "no session is running"
            return session.governor.set_cap(value, allow_raise=remote)

        self.publisher.handlers = CommandHandlers(stop=stop, discomfort=discomfort, cap=cap)

    def _stop_done(self, task: asyncio.Task[StopResult]) -> None:
        """The retained state says whether the device confirmed the stop (and HA shows it)."""
        if task.cancelled() or task.exception() is not None:
            self.stop_confirmed = False
        else:
            self.stop_confirmed = task.result().confirmed
        self._publish_state(self._state, stop_reason=self._stop_reason)

    def sample(self, sample: Sample) -> None:
        try:
            if self.publisher is not None:
                self.publisher.telemetry(
                    TelemetryPayload(
                        intensity=sample.intensity,
                        applied=sample.applied,
                        cap=self.cap,
                        nrs=sample.nrs,
                        battery=sample.battery,
                        temperature_c=sample.temperature_c,
                        rssi=sample.rssi,  # the scan's: bleak has none for a connected link
                        elapsed_s=sample.elapsed_s,
                        remaining_s=sample.remaining_s,
                        segment=sample.segment,
                        zones=list(sample.zones),
                        stale=sample.stale,
                    )
                )
            if self.journal is not None:
                self.journal.sample(sample)
        except Exception:
            _LOGGER.exception("telemetry: sample dropped")

    def event(self, event: Event) -> None:
        try:
            if event.type == "session_started":
                self.failsafe = str(event.detail.get("failsafe"))
            if self.publisher is not None:
                detail = {k: v for k, v in event.detail.items() if k not in {"type", "t"}}
                self.publisher.event(
                    EventPayload.of(event.type, session_id=self.session_id, t=event.t, **detail)
                )
            if self.journal is not None:
                self.journal.event(event)
            if event.type in _STATE_ON_EVENT:
                self._publish_state(_STATE_ON_EVENT[event.type])
        except Exception:
            _LOGGER.exception("telemetry: event dropped")

    def finish(self, record: SessionRecord, extra: dict[str, Any] | None = None) -> None:
        reason = record.stop_reason
        if record.stop_confirmed is not None:
            self.stop_confirmed = record.stop_confirmed
        state: State = (
            "stopped"
            if record.ok or reason is None
            else ("link_lost" if reason == StopReason.LINK_LOST else "fault")
        )
        self._publish_state(state, stop_reason=reason.value if reason else None)
        if self.journal is not None:
            self.journal.close(record, extra, wait=False)  # `flushed()` waits, off the loop

    async def flushed(self) -> None:
        """Wait, off the event loop, until the journal's lines are on the disk."""
        if self.journal is not None:
            await asyncio.to_thread(self.journal.flush)

    def journal_note(self) -> dict[str, Any]:
        """For the session summary: whether the journal has everything (after `flushed`)."""
        if self.journal is None:
            return {"journal": "off"}
        note: dict[str, Any] = {"journal": self.journal.status}
        if self.journal.lines_lost:
            note["journal_lines_lost"] = self.journal.lines_lost
        return note

    def _publish_state(self, state: State, *, stop_reason: str | None = None) -> None:
        self._state, self._stop_reason = state, stop_reason
        if self.publisher is None:
            return
        self.publisher.state(
            StatePayload(
                state=state,
                profile=self.profile,
                stop_reason=stop_reason,
                session_id=self.session_id,
                cap=self.cap,
                failsafe=self.failsafe,
                remote_control=self.publisher.remote_control,
                stop_confirmed=self.stop_confirmed,
            )
        )
