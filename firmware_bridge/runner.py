"""The runner: plays a profile through the safety governor on a connected massager.

One TaskGroup per session owns the control loop (20 Hz, coalesced by the link), the per-second
sampler (record + telemetry hook), the ratings poller and the device timer. `stop()` from any
task or interface goes straight to the link (bypassing the control loop) and latches the
governor; the device is left at zero however the session ends. `pause()` and `lower_cap()`
lower output at once too (through the governor, then straight to the link), without waiting
for the next control tick; a pause holds the profile where it was while the session limit
keeps counting (see `profile_clock`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable
from typing import Any

from firmware_bridge.device import LinkEvent, LinkState, MassagerLink, StopReason, StopResult
from firmware_bridge.errors import DeviceRejectedError, DeviceTimeoutError, MassagerError
from firmware_bridge.profile_clock import ProfileClock
from firmware_bridge.record import Event, RatingSource, Sample, SessionRecord
from firmware_bridge.safety import (
    HARD_CEILING_S,
    Decision,
    SafetyGovernor,
    SafetySettings,
    to_levels,
)
from profiles.model import Profile
from profiles.waveforms import Timeline

_LOGGER = logging.getLogger(__name__)

CONTROL_HZ = 20.0  # profile sampled this often; the link only sends changes
SAMPLE_PERIOD_S = 1.0  # per-second samples in the record and the telemetry hook
RATING_PERIOD_S = 30.0  # how often a rating source (virtual user, prompt) is asked
DEVICE_TIMER_MARGIN_S = 5  # the on-device timer is a backstop just after the session limit
MAX_LATENESS_SAMPLES = 40_000  # 30 min at 20 Hz: the loop's own timing record stays bounded

# Link stop reasons that end the session (everything the link latches on by itself).
_LINK_STOPS = {reason.value: reason for reason in StopReason}
# What the link reports that goes into the session's record (and the terminal, journal, MQTT).
_RECORDED_LINK_EVENTS = frozenset(
    {"stop", "fault", "link_lost", "reconnected", "nack", "button", "limit", "device_silent"}
)


class Session:
    """One session of one profile on one massager. Use `await Session(...).run()` once."""

    def __init__(
        self,
        link: MassagerLink,
        profile: Profile,
        settings: SafetySettings | None = None,
        *,
        control_hz: float = CONTROL_HZ,
        rating_source: Callable[[], int | None] | None = None,
        rating_period_s: float = RATING_PERIOD_S,
        on_sample: Callable[[Sample], None] | None = None,
        on_event: Callable[[Event], None] | None = None,
        start_together: asyncio.Barrier | None = None,
    ) -> None:
        self.link = link
        self.profile = profile
        self.settings = settings or SafetySettings()
        self.clock = link.clock
        self.timeline = Timeline(profile)
        self.control_period_s = 1.0 / control_hz
        self.rating_source = rating_source
        self.rating_period_s = rating_period_s
        self.on_sample = on_sample
        self.on_event = on_event
        self.start_together = start_together  # several devices (both feet) start in lockstep
        self._passed_together = False
        self.record = SessionRecord(profile=profile.name, cap=self.settings.cap)
        self.governor: SafetyGovernor | None = None
        self.segment = ""
        self.segment_index = -1  # in play order (`profile.flat()`), -1 before the first tick
        self._t0 = 0.0
        self._profile_clock: ProfileClock | None = None
        self._timer_due = asyncio.Event()  # the device timer should be set again
        self.control_lateness_s: list[float] = []  # how late each control tick ran (real s)
        self._stop_task: asyncio.Task[StopResult] | None = None
        self.stop_requested: StopReason | None = None  # the first stop, even before run()

    # -- the API ---------------------------------------------------------------------------

    @property
    def elapsed_s(self) -> float:
        return self.clock.now() - self._t0 if self._t0 else 0.0

    @property
    def profile_s(self) -> float:
        """How far into the profile the session is (pauses excluded)."""
        clock = self._profile_clock
        return clock.at(self.clock.now()) if clock is not None else 0.0

    async def stop(self, reason: StopReason = StopReason.USER_STOP) -> StopResult:
        """Stop now, from anywhere: zero goes to the device ahead of anything else.

        Returns whether the device confirmed zero; a stop on an already stopped session writes
        zero again and is confirmed afresh.
        """
        self.stop_requested = self.stop_requested or reason
        if self.governor is not None:
            self.governor.stop(reason)
        result = await self.link.stop(reason)
        self._note_stop(result)
        return result

    def request_stop(self, reason: StopReason = StopReason.USER_STOP) -> asyncio.Task[StopResult]:
        """`stop()` for synchronous callers (signal handlers, callbacks); await the task for
        the device's confirmation. A stop already under way is shared, not repeated."""
        self.stop_requested = self.stop_requested or reason  # run() will not start after this
        if self.governor is not None:
            self.governor.stop(reason)  # latched synchronously: no further tick can raise output
        if self._stop_task is None or self._stop_task.done():
            self._stop_task = asyncio.create_task(self.stop(reason), name=f"stop {reason.value}")
        return self._stop_task

    def report_discomfort(
        self, rating: int, *, may_release: bool = True, source: RatingSource = "person"
    ) -> Decision:
        """A 0-10 rating (S6), and who gave it. Raises ValueError outside 0-10."""
        if self.governor is None:
            raise RuntimeError("session not running")
        now = self.clock.now()
        decision = self.governor.report_discomfort(rating, now, may_release=may_release)
        self.record.add_rating(now - self._t0, rating, source)
        self._event("discomfort", nrs=rating, decision=decision.value, source=source)
        if decision is Decision.STOP:
            self.request_stop(StopReason.DISCOMFORT)
        return decision

    def pause(self) -> bool:
        """Output to zero now and held; the profile waits, the session limit runs on (S7)."""
        governor, clock = self.governor, self._profile_clock
        if governor is None or clock is None or governor.stopped or governor.paused:
            return False
        now = self.clock.now()
        governor.pause(now)
        clock.pause(now)
        self._push_lower()
        self._event("paused", cap=governor.cap)
        self._timer_due.set()  # the profile's end moves; the device timer follows the limit
        return True

    def resume(self) -> bool:
        """Output may rise again from zero at S2's rate; the profile goes on where it was."""
        governor, clock = self.governor, self._profile_clock
        if governor is None or clock is None or governor.stopped or not governor.paused:
            return False
        now = self.clock.now()
        governor.resume(now)
        self._event("resumed", paused_s=round(clock.resume(now), 3))
        self._timer_due.set()
        return True

    def lower_cap(self) -> int | None:
        """This session's cap one lower (never higher), output above it falls at once."""
        governor = self.governor
        if governor is None or governor.stopped or self._profile_clock is None:
            return None
        before = governor.cap
        cap = governor.lower_cap()
        self._push_lower()
        if cap != before:
            self._event("cap_lowered", cap=cap, source="person")
        return cap

    async def run(self) -> SessionRecord:
        """Play the profile until it completes or something stops it; returns the record."""
        link = self.link
        if link.capabilities is None:
            raise MassagerError("connect the link before running a session")
        self.governor = SafetyGovernor(
            self.settings,
            zones=link.zones,
            device_max=link.max_level / link.capabilities.max_level,
        )
        link.listeners.append(self._on_link_event)
        together = self.start_together
        self._passed_together = False
        try:
            if await self._armed():
                async with asyncio.TaskGroup() as group:
                    control = group.create_task(self._control(), name="control")
                    others = [
                        group.create_task(self._sampler(), name="sampler"),
                        group.create_task(self._ratings(), name="ratings"),
                        group.create_task(self._device_timer(), name="device timer"),
                    ]
                    control.add_done_callback(lambda _t: [t.cancel() for t in others])
        except* Exception as failure:  # S9: any unhandled exception in a session task is a fault
            first = failure.exceptions[0]
            _LOGGER.exception("%s: session task failed: %r", link.transport.name, first)
            self._event("fault", problem=repr(first))
            self.governor.stop(StopReason.FAULT)
        finally:
            if together is not None and not self._passed_together:  # this one never arrived:
                await together.abort()  # the other devices do not start without it
            with contextlib.suppress(ValueError):
                link.listeners.remove(self._on_link_event)
            reason = self.governor.stop_reason or link.stop_reason or StopReason.FAULT
            self.governor.stop(reason)
            await asyncio.shield(self._finish(reason))
        return self.record

    async def _armed(self) -> bool:
        """Clear the link's latch, start the session clock, arm the device timer backstop.

        False (with a `refused` event) when the link refuses to start: a stop arrived while
        starting, the battery or temperature forbids output, or the link is gone.
        """
        link, governor = self.link, self.governor
        if governor is None:
            raise RuntimeError("no governor")
        if self.stop_requested is not None:  # stopped before it started (S3): never starts
            self._event("refused", problem=f"stopped before starting ({self.stop_requested})")
            governor.stop(self.stop_requested)
            return False
        try:
            await link.start()
        except MassagerError as exc:
            self._event("refused", problem=str(exc))
            governor.stop(link.stop_reason or StopReason.FAULT)
            return False
        if self.start_together is not None:  # every device armed before any plays
            try:
                await self.start_together.wait()
                self._passed_together = True
            except asyncio.BrokenBarrierError:
                self._event("refused", problem="another device of this session did not start")
                governor.stop(self.stop_requested or StopReason.FAULT)
                return False
        if self.stop_requested is not None:  # requested while the link was starting
            governor.stop(self.stop_requested)
            return False
        self._t0 = self.clock.now()
        governor.start(self._t0)
        self._profile_clock = ProfileClock(self._t0)
        limit = self.settings.session_limit_s
        try:
            await link.set_timer(self._device_timer_s())
        except (DeviceRejectedError, DeviceTimeoutError) as exc:  # our own limit still applies
            self._event("limit", device_timer="not set", problem=str(exc))
        self._event(
            "session_started",
            profile=self.profile.name,
            duration_s=self.timeline.duration_s,
            limit_s=limit,
            cap=self.settings.cap,
            failsafe=link.failsafe,
        )
        if link.failsafe == "none":
            self._event("limit", failsafe="none", max_intensity=governor.device_max)
        return True

    # -- tasks -----------------------------------------------------------------------------

    async def _control(self) -> None:
        governor, link = self.governor, self.link
        if governor is None or link.capabilities is None:
            raise RuntimeError("control loop started before the session")
        max_level = link.capabilities.max_level
        next_tick = self.clock.now()
        while not governor.stopped:
            now = self.clock.now()
            position = self.timeline.at(self.profile_s)
            if position is None:
                governor.stop(StopReason.COMPLETED)
                break
            self.segment_index = position.index
            if position.label != self.segment:
                self.segment = position.label
                self._event("segment", index=position.index, label=position.label)
            if link.latched:  # the link stopped (device, link loss): its announcement may follow
                governor.stop(link.stop_reason or StopReason.FAULT)
                break
            fractions = governor.limit(position.levels, now)
            if governor.stopped:  # the session limit elapsed inside limit()
                break
            link.set_levels(to_levels(fractions, max_level))
            next_tick += self.control_period_s
            await self.clock.sleep(max(0.0, next_tick - self.clock.now()))
            if len(self.control_lateness_s) < MAX_LATENESS_SAMPLES:
                late = self.clock.real_seconds(self.clock.now() - next_tick)
                self.control_lateness_s.append(late)

    async def _sampler(self) -> None:
        while True:
            self._sample()
            await self.clock.sleep(SAMPLE_PERIOD_S)

    async def _ratings(self) -> None:
        if self.rating_source is None:
            return
        while True:
            await self.clock.sleep(self.rating_period_s)
            rating = self.rating_source()
            if rating is not None and self.governor is not None and not self.governor.stopped:
                self.report_discomfort(rating, source="simulated")  # the simulator's virtual foot

    async def _device_timer(self) -> None:
        """Set the device's timer again when a pause moves the profile's end (latest wins)."""
        while True:
            await self._timer_due.wait()
            self._timer_due.clear()
            try:
                await self.link.set_timer(self._device_timer_s())
            except (DeviceRejectedError, DeviceTimeoutError) as exc:  # our own limit still holds
                self._event("limit", device_timer="not set", problem=str(exc))
            except MassagerError as exc:  # link lost: that stop is handled where it is seen
                _LOGGER.debug("%s: device timer not set: %s", self.link.transport.name, exc)

    # -- internals -------------------------------------------------------------------------

    def _device_timer_s(self) -> int:
        """The device timer, a backstop just after the session's end (S7): the limit's or,
        when sooner, the profile's (which a pause postpones, so it is left out while paused)."""
        now, governor = self.clock.now(), self.governor
        left = governor.remaining(now) if governor else self.settings.session_limit_s
        if governor is None or not governor.paused:
            left = min(left, self.timeline.duration_s - self.profile_s)
        return math.ceil(min(max(0.0, left) + DEVICE_TIMER_MARGIN_S, HARD_CEILING_S))

    def _push_lower(self) -> None:
        """Send the governor's output now, not at the next tick: only ever a fall (S2)."""
        governor, link, caps = self.governor, self.link, self.link.capabilities
        if governor is None or caps is None:
            return
        levels = to_levels(governor.output, caps.max_level)
        if any(levels) and (link.latched or link.state != LinkState.READY):
            return  # the link refuses output now; it is at zero or on its way there
        link.set_levels(levels)

    async def _finish(self, reason: StopReason) -> None:
        """Zero the device (confirmed where possible) and close the record."""
        result = None
        with contextlib.suppress(MassagerError, TimeoutError):
            result = await self.link.stop(reason)
        if self._stop_task is not None:
            with contextlib.suppress(MassagerError, TimeoutError, asyncio.CancelledError):
                await self._stop_task
        if result is not None:
            self._note_stop(result)
        self.record.stop_reason = self.link.stop_reason or reason
        self.record.duration_s = self.elapsed_s
        try:  # the device is at zero already; a broken hook must not lose the record
            self._sample()
            if not any(event.type == "stop" for event in self.record.events):
                self._event("stop", reason=self.record.stop_reason.value)
        except Exception:
            _LOGGER.exception("%s: session hooks failed while finishing", self.link.transport.name)

    def _note_stop(self, result: StopResult) -> None:
        """Keep the first stop's outcome; latency in real seconds (the clock may be scaled)."""
        if self.record.stop_confirmed is None:
            self.record.stop_confirmed = result.confirmed
            if result.latency_s is not None:
                self.record.stop_latency_s = self.clock.real_seconds(result.latency_s)

    def _fraction(self, levels: tuple[int, ...]) -> float:
        caps = self.link.capabilities
        if caps is None or not levels:
            return 0.0
        return max(levels) / caps.max_level

    def snapshot(self) -> Sample:
        """The session right now (what the per-second samples record), for a live view."""
        governor, link, caps = self.governor, self.link, self.link.capabilities
        now = self.clock.now()
        profile_left = max(0.0, self.timeline.duration_s - self.profile_s)
        return Sample(
            elapsed_s=round(now - self._t0, 3) if self._t0 else 0.0,
            remaining_s=round(min(governor.remaining(now), profile_left) if governor else 0.0, 3),
            segment=self.segment,
            intensity=round(self._fraction(link.commanded), 4),
            applied=round(self._fraction(link.applied), 4),
            zones=tuple(round(level / caps.max_level, 4) for level in link.commanded)
            if caps
            else (),
            nrs=governor.last_rating if governor else None,
            battery=link.battery_pct,
            temperature_c=link.temperature_c,
            rssi=getattr(link.transport, "rssi", None),
            stale=link.stale,
            paused=governor is not None and governor.paused,
        )

    def _sample(self) -> None:
        self.record.max_intensity = max(
            self.record.max_intensity, self._fraction((self.link.peak_level,))
        )
        sample = self.snapshot()
        self.record.samples.append(sample)
        if self.on_sample is not None:
            self.on_sample(sample)

    def _event(self, kind: str, **detail: Any) -> None:
        event = Event(kind, round(self.clock.now() - self._t0, 3) if self._t0 else 0.0, detail)
        self.record.events.append(event)
        if self.on_event is not None:
            self.on_event(event)

    def _on_link_event(self, event: LinkEvent) -> None:
        if event.kind == "stop":
            reason = _LINK_STOPS.get(str(event.detail.get("reason")), StopReason.FAULT)
            if self.governor is not None:
                self.governor.stop(reason)
        if event.kind in _RECORDED_LINK_EVENTS:
            self._event(event.kind, **dict(event.detail))
