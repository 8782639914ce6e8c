"""A fleet: many independent sessions in one process (a practice's rooms, a study's devices).

Each entry is its own session: its own link, governor, safety state, journal and MQTT topics.
One device's fault, lost link or refused connection ends that session only; the others play
on. `stop_all()` (Ctrl-C, SIGTERM) stops every session at once and keeps sessions that have
not started yet from starting. A remote `massager stop --all` reaches each session through its
own topic, as for a single device.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

from firmware_bridge.device import MassagerLink, StopReason
from firmware_bridge.errors import MassagerError
from firmware_bridge.protocol import ScaledClock
from firmware_bridge.record import SessionRecord
from firmware_bridge.runner import Session
from firmware_bridge.safety import SafetySettings
from firmware_bridge.transport import Transport
from profiles.model import Profile

_LOGGER = logging.getLogger(__name__)


@dataclass
class FleetEntry:
    """One device of the fleet and what to play on it."""

    id: str  # its MQTT device id, unique in the fleet
    profile: Profile
    settings: SafetySettings
    start_s: float = 0.0  # seconds after the fleet starts (session clock)
    address: str | None = None  # a real massager; None: a simulated one
    person: str | None = None  # whose session (real massagers need one: screening, plan)
    extra: dict[str, Any] = field(default_factory=dict)  # what the caller needs back


@dataclass
class FleetResult:
    """How one entry's session went: a record, or why there was none."""

    entry: FleetEntry
    record: SessionRecord | None = None
    problem: str | None = None  # never connected, refused, or stopped before it started
    device: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.record is not None and self.record.ok


# What a fleet needs from its caller, per entry: the device (transport, simulated massager or
# None), and telemetry: a context yielding (on_sample, on_event, attach(session)), each or None.
DeviceOpener = Callable[[FleetEntry], AbstractAsyncContextManager[tuple[Transport, Any]]]
HooksOpener = Callable[[FleetEntry, MassagerLink, dict[str, Any]], AbstractAsyncContextManager[Any]]


class Fleet:
    """Run `entries` concurrently; `await Fleet(...).run()` once, `stop_all()` from anywhere."""

    def __init__(
        self,
        entries: list[FleetEntry],
        *,
        open_device: DeviceOpener,
        clock: ScaledClock | None = None,
        telemetry: HooksOpener | None = None,
        on_session: Callable[[FleetEntry, Session], None] | None = None,
        on_record: Callable[[FleetResult], Awaitable[None]] | None = None,
    ) -> None:
        ids = [entry.id for entry in entries]
        if len(set(ids)) != len(ids):
            raise ValueError("every device of a fleet needs its own id")
        self.entries = entries
        self.open_device = open_device
        self.clock = clock or ScaledClock()
        self.telemetry = telemetry
        self.on_session = on_session
        self.sessions: dict[str, Session] = {}
        self.stopping: StopReason | None = None
        self.on_record = on_record
        self._stopped = asyncio.Event()  # wakes entries still waiting for their start time

    def stop_all(self, reason: StopReason = StopReason.USER_STOP) -> None:
        """Stop every running session now (latched synchronously); none starts after this."""
        self.stopping = self.stopping or reason
        self._stopped.set()
        for session in list(self.sessions.values()):
            session.request_stop(reason)

    async def run(self) -> list[FleetResult]:
        """Every entry's result, in the order given; one entry's failure touches no other."""
        tasks = [
            asyncio.create_task(self._one(entry), name=f"fleet {entry.id}")
            for entry in self.entries
        ]
        try:
            return list(await asyncio.gather(*tasks))
        except BaseException:  # cancelled: every session still ends at zero (their finally)
            self.stop_all()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    async def _one(self, entry: FleetEntry) -> FleetResult:
        result = FleetResult(entry)
        if entry.start_s > 0:  # a stop-all ends the wait: nothing starts after it
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopped.wait(), self.clock.real_seconds(entry.start_s))
        if self.stopping is not None:
            result.problem = f"not started: the fleet was stopped ({self.stopping.value})"
            return result
        try:
            async with self._session(entry, result) as session:
                result.record = await session.run()
                if self.on_record is not None:  # while its telemetry is still open
                    try:
                        await self.on_record(result)
                    except Exception:  # the record is kept; its store row waits for the journal
                        _LOGGER.exception("fleet %s: finishing the record failed", entry.id)
        except MassagerError as exc:  # this device only: never connected, or refused
            result.problem = str(exc)
            _LOGGER.warning("fleet %s: %s", entry.id, exc)
        except Exception as exc:  # isolation: a bug around one session never ends the others
            result.problem = f"failed: {exc!r}"
            _LOGGER.exception("fleet %s: session failed", entry.id)
        finally:
            self.sessions.pop(entry.id, None)
        return result

    @contextlib.asynccontextmanager
    async def _session(self, entry: FleetEntry, result: FleetResult) -> AsyncIterator[Session]:
        async with (
            self.open_device(entry) as (transport, _massager),
            MassagerLink(transport, clock=self.clock) as link,
        ):
            caps = link.capabilities
            result.device = {
                "name": transport.name,
                "address": str(getattr(getattr(transport, "device", None), "address", "")),
                "failsafe": link.failsafe,
                "firmware": caps.firmware_version if caps else None,
            }
            hooks = self.telemetry or _no_telemetry
            async with hooks(entry, link, result.device) as (on_sample, on_event, attach):
                session = Session(
                    link, entry.profile, entry.settings, on_sample=on_sample, on_event=on_event
                )
                if attach is not None:
                    attach(session)
                self.sessions[entry.id] = session
                if self.stopping is not None:  # stopped while this one was connecting
                    session.request_stop(self.stopping)
                if self.on_session is not None:
                    self.on_session(entry, session)
                yield session


@contextlib.asynccontextmanager
async def _no_telemetry(
    _entry: FleetEntry, _link: MassagerLink, _device: dict[str, Any]
) -> AsyncIterator[tuple[None, None, None]]:
    yield None, None, None
