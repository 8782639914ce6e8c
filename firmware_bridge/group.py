"""Several massagers in one session (one per foot): one profile, one stop for all of them.

Each device keeps its own governor, link and safety state (S1-S9 hold per device); the group
adds three things on top:
- lockstep: every device is armed before any of them plays (one start barrier);
- one stop: a stop of any kind on any device (a key, a signal, MQTT, a device's button, a
  fault, a lost link, the time limit, a rating of 7) latches every other device at once, with
  the same reason. Only a profile that completes is left to complete on each device;
- one rating, pause or lowered cap applies to every device (the person rates the session).

The group hooks each link's latch (`MassagerLink.latch_listeners`), which is called
synchronously the moment a device's output is latched off, before its zero is written: the
other devices' stops are requested in the same instant, never after a write or an ack.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from firmware_bridge.device import StopReason, StopResult
from firmware_bridge.record import RatingSource, SessionRecord
from firmware_bridge.runner import Session
from firmware_bridge.safety import Decision, SafetyGovernor

_LOGGER = logging.getLogger(__name__)

# Decisions from least to most protective: the group answers with the strongest of its devices.
_SEVERITY = (Decision.TARGET, Decision.HOLD, Decision.DROP, Decision.STOP)


class SessionGroup:
    """Sessions on several devices played together; use `await SessionGroup(...).run()` once.

    Quacks like a `Session` for the keyboard, the signal handler and the screen (`request_stop`,
    `report_discomfort`, `pause`, `resume`, `lower_cap`, `governor`), fanning out to every device.
    """

    def __init__(self, sessions: Sequence[Session]) -> None:
        if not sessions:
            raise ValueError("a session group needs at least one session")
        self.sessions = list(sessions)
        self.stop_reason: StopReason | None = None  # the first stop that stopped them all
        self.stopped_by: Session | None = None  # whose device it came from (None: the group's)
        self._stop_task: asyncio.Task[StopResult] | None = None
        barrier = asyncio.Barrier(len(self.sessions))
        self._barrier = barrier
        self._aborting: asyncio.Task[None] | None = None
        for session in self.sessions:
            session.start_together = barrier
            session.link.latch_listeners.append(self._latched_by(session))

    @property
    def lead(self) -> Session:
        return self.sessions[0]

    @property
    def governor(self) -> GroupGovernor | None:
        """Every device's governor as one (is the session running, paused; a cap for all)."""
        governors = [s.governor for s in self.sessions if s.governor is not None]
        return GroupGovernor(governors) if governors else None

    async def run(self) -> list[SessionRecord]:
        """Play on every device; returns each device's record, in the order given."""
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [
                    group.create_task(self._run_one(session), name=f"session {index}")
                    for index, session in enumerate(self.sessions)
                ]
        finally:
            for session in self.sessions:
                listeners = session.link.latch_listeners
                listeners[:] = [hook for hook in listeners if getattr(hook, "group", None) != self]
        return [task.result() for task in tasks]

    async def _run_one(self, session: Session) -> SessionRecord:
        record = await session.run()
        # Belt and braces: whatever ended this device (its record says) ends the others too.
        reason = record.stop_reason
        if reason is not None and reason is not StopReason.COMPLETED:
            self._stop_others(session, reason)
        return record

    def request_stop(self, reason: StopReason = StopReason.USER_STOP) -> asyncio.Task[StopResult]:
        """Stop every device now (latched synchronously); the task says whether all confirmed."""
        self.stop_reason = self.stop_reason or reason
        # Each device's latch tells the group (_stop_others), which releases any device armed
        # and waiting for the others.
        tasks = [session.request_stop(reason) for session in self.sessions]
        if self._stop_task is None or self._stop_task.done():
            self._stop_task = asyncio.create_task(
                _all_confirmed(tasks, reason), name=f"group stop {reason.value}"
            )
        return self._stop_task

    async def stop(self, reason: StopReason = StopReason.USER_STOP) -> StopResult:
        return await self.request_stop(reason)

    def report_discomfort(
        self, rating: int, *, may_release: bool = True, source: RatingSource = "person"
    ) -> Decision:
        """The person's rating goes to every device's governor; the strongest answer is said."""
        decisions = [
            session.report_discomfort(rating, may_release=may_release, source=source)
            for session in self.sessions
            if session.governor is not None and not session.governor.stopped
        ]
        if not decisions:
            raise RuntimeError("session not running")
        return max(decisions, key=_SEVERITY.index)

    def pause(self) -> bool:
        paused = [session.pause() for session in self.sessions]  # every one, no short cut
        return any(paused)

    def resume(self) -> bool:
        resumed = [session.resume() for session in self.sessions]
        return any(resumed)

    def lower_cap(self) -> int | None:
        caps = [session.lower_cap() for session in self.sessions]
        known = [cap for cap in caps if cap is not None]
        return min(known) if known else None

    # -- internals -------------------------------------------------------------------------

    def _latched_by(self, session: Session) -> _LatchHook:
        return _LatchHook(self, session)

    def _stop_others(self, source: Session, reason: StopReason) -> None:
        if reason is StopReason.COMPLETED:
            return  # each device completes the same profile on its own
        if self.stop_reason is None:
            self.stop_reason, self.stopped_by = reason, source
            _LOGGER.warning(
                "%s: stop (%s) stops the other %d device(s) of this session",
                source.link.transport.name,
                reason.value,
                len(self.sessions) - 1,
            )
        for session in self.sessions:  # the source too: a stop before it started must stand
            if session.stop_requested is None:
                session.request_stop(reason)  # latched before this returns; zero from a task
        self._release_waiting()

    def _release_waiting(self) -> None:
        """Devices armed and waiting for the others are refused at once, not left waiting."""
        if self._aborting is None and not self._barrier.broken:
            self._aborting = asyncio.get_running_loop().create_task(
                self._barrier.abort(), name="group start refused"
            )


class GroupGovernor:
    """The governors of a group seen as one, for the keyboard and remote commands."""

    def __init__(self, governors: list[SafetyGovernor]) -> None:
        self.governors = governors

    @property
    def stopped(self) -> bool:
        return any(g.stopped for g in self.governors)  # one stopped: all are stopping

    @property
    def paused(self) -> bool:
        return any(g.paused for g in self.governors)

    @property
    def cap(self) -> int:
        return min(g.cap for g in self.governors)

    def set_cap(self, cap: int, *, allow_raise: bool = False) -> str | None:
        """The same cap on every device; the first refusal is the answer (None: applied)."""
        answers = [g.set_cap(cap, allow_raise=allow_raise) for g in self.governors]
        return next((answer for answer in answers if answer is not None), None)


class _LatchHook:
    """Called by one device's link the moment its output is latched off."""

    def __init__(self, group: SessionGroup, session: Session) -> None:
        self.group, self.session = group, session

    def __call__(self, reason: StopReason) -> None:
        self.group._stop_others(self.session, reason)  # the group's own hook


async def _all_confirmed(tasks: list[asyncio.Task[StopResult]], reason: StopReason) -> StopResult:
    """One result for the group: confirmed only when every device confirmed; the slowest time."""
    results = await asyncio.gather(*tasks, return_exceptions=True)
    good = [r for r in results if isinstance(r, StopResult)]
    confirmed = len(good) == len(results) and all(r.confirmed for r in good)
    latencies = [r.latency_s for r in good if r.latency_s is not None]
    latency = max(latencies) if confirmed and latencies else None
    return StopResult(reason, confirmed, latency)
