"""The device link: handshake, heartbeat, coalesced intensity, stop bypass, acks, link loss.

`MassagerLink` speaks the wire protocol over any `Transport`. Intensity updates are coalesced
(latest wins) by one writer task; `stop()` bypasses it and writes zero directly, with response
where the device supports it, and the output stays latched off until an explicit `start()`.
A link loss latches too, reconnects with bounded backoff, and sends zero as the first frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Self

from firmware_bridge.device.events import LinkEvent, LinkState, StopReason, StopResult
from firmware_bridge.device.exchange import Exchange
from firmware_bridge.device.health import DeviceHealth, DeviceLimits, Problem
from firmware_bridge.errors import (
    ConnectionLostError,
    DeviceTimeoutError,
    MassagerError,
    ProtocolError,
    SafetyLimitError,
)
from firmware_bridge.protocol import (
    Ack,
    ButtonPress,
    Capabilities,
    CapabilityFlags,
    Fault,
    FaultCode,
    FrameType,
    Heartbeat,
    Nack,
    ScaledClock,
    SetIntensity,
    SetTimer,
    SetWatchdog,
    Status,
    Stop,
    decode,
)
from firmware_bridge.protocol.timebase import Clock

_LOGGER = logging.getLogger(__name__)

WATCHDOG_S = 1.5  # device zeroes output if no valid frame arrives within this (S4)
HEARTBEAT_S = 0.5  # ≥ 1 Hz while output is non-zero: three chances per watchdog period
HANDSHAKE_ATTEMPTS = 5  # HELLO, SET_WATCHDOG are re-sent when its answer is lost on a lossy link
ACK_TIMEOUT_S = 1.0  # an ack slower than this is treated as lost (stop is re-sent)
RESTOPS = 3  # a latched device still reporting output gets this many more STOPs, then silence
NO_WATCHDOG_MAX_FRACTION = 0.4  # S4: devices without a dead-man watchdog are limited to this


@dataclass(frozen=True)
class ReconnectPolicy:
    """Bounded reconnect after link loss: `attempts` tries, exponential backoff (clock s).

    Each attempt is one `transport.connect()` (bleak-retry-connector retries inside it) bounded
    by `attempt_timeout_s`: its backoff for a vanished device is 4 s per try, up to nine tries.
    """

    attempts: int = 5
    first_backoff_s: float = 0.5
    max_backoff_s: float = 8.0
    attempt_timeout_s: float = 15.0


def _type_name(code: int) -> str:
    try:
        return FrameType(code).name
    except ValueError:
        return f"0x{code:02x}"


class MassagerLink:
    """A connected massager. Use as `async with MassagerLink(transport) as link:`."""

    def __init__(
        self,
        transport: Any,
        *,
        clock: Clock | None = None,
        watchdog_s: float = WATCHDOG_S,
        heartbeat_s: float = HEARTBEAT_S,
        ack_timeout_s: float = ACK_TIMEOUT_S,
        reconnect: ReconnectPolicy | None = None,
        limits: DeviceLimits | None = None,
    ) -> None:
        self.transport = transport
        self.clock: Clock = clock or ScaledClock()
        self.watchdog_s = watchdog_s
        self.heartbeat_s = heartbeat_s
        self.ack_timeout_s = ack_timeout_s
        self.reconnect_policy = reconnect or ReconnectPolicy()
        self.limits = limits or DeviceLimits()
        self.health = DeviceHealth(self.limits, speed=self.clock.speed)
        self.listeners: list[Callable[[LinkEvent], None]] = []
        # Told synchronously, before zero is written, each time output is newly latched off:
        # a group of devices (both feet) stops the others at once (firmware_bridge.group).
        self.latch_listeners: list[Callable[[StopReason], None]] = []

        self.state = LinkState.DISCONNECTED
        self.capabilities: Capabilities | None = None
        self.latched = True  # nothing runs until start(): sessions start from zero (S2)
        self.stop_reason: StopReason | None = None
        self.commanded: tuple[int, ...] = ()
        self.applied: tuple[int, ...] = ()
        self.peak_level = 0  # highest level ever written to the device by this link
        self.battery_pct: int | None = None
        self.temperature_c: float | None = None
        self.malformed_frames = 0
        self.nacks = 0
        self.failure: BaseException | None = None

        self._desired: tuple[int, ...] = ()
        self._dirty = asyncio.Event()
        self._exchange = Exchange(transport, self.clock, ack_timeout_s=ack_timeout_s)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._reconnecting: asyncio.Task[None] | None = None
        self._restops_left = RESTOPS
        self._stop_requests = 0  # every stop request, even on an already latched link
        self._stop_writes = 0  # STOP exchanges under way (a re-stop may still wait for its ack)
        self._stops_done = asyncio.Event()  # set while none is
        self._stops_done.set()
        self._last_stop_request: StopReason | None = None

    # -- lifecycle -----------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def connect(self) -> None:
        """Connect, handshake (zero first), and start the writer and heartbeat."""
        self.state = LinkState.CONNECTING
        self.transport.on_frame = self._on_frame
        self.transport.on_battery = self._on_battery
        self.transport.on_disconnect = self._on_disconnect
        try:
            await self.transport.connect()
            await self._handshake()
        except BaseException:
            self.state = LinkState.DISCONNECTED
            await self.transport.disconnect()
            raise
        self.state = LinkState.READY
        self._emit("connected", name=self.transport.name)
        if not self._tasks:
            self._spawn(self._writer(), "writer")
            self._spawn(self._heartbeat(), "heartbeat")
            self._spawn(self._liveness(), "liveness")

    async def close(self) -> None:
        """Write zero (even when cancelled) and disconnect."""
        if self.state == LinkState.CLOSED:
            return
        cleanup = asyncio.create_task(self._zero_and_disconnect(), name="link-close")
        try:
            await asyncio.shield(cleanup)
        except asyncio.CancelledError:
            await cleanup  # finish writing zero, then let the cancellation through
            raise
        finally:
            self.state = LinkState.CLOSED
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _zero_and_disconnect(self) -> None:
        self._latch(self.stop_reason or StopReason.COMPLETED)
        reconnecting = self._reconnecting
        if reconnecting is not None and not reconnecting.done():
            if self.failsafe == "none" and not self.transport.is_connected:
                # Nothing on the device zeroes it (no watchdog): see the bounded reconnect
                # through, whose first frame is zero (S5), rather than walk away from it.
                _LOGGER.warning(
                    "%s: has no watchdog; reconnecting to stop it before closing",
                    self.transport.name,
                )
                with contextlib.suppress(Exception):
                    await asyncio.shield(reconnecting)
                if not self.transport.is_connected:
                    _LOGGER.error(
                        "%s: could not reach it again; without a watchdog it runs until its "
                        "own timer, if it has one",
                        self.transport.name,
                    )
            else:
                reconnecting.cancel()
        if self.transport.is_connected:
            with contextlib.suppress(MassagerError, TimeoutError):
                await self._write_stop()
        await self.transport.disconnect()

    # -- commands ------------------------------------------------------------------------

    @property
    def zones(self) -> int:
        return self.capabilities.zones if self.capabilities else 0

    @property
    def max_level(self) -> int:
        """Highest level this link will send (device max, lower without a watchdog)."""
        caps = self.capabilities
        if caps is None:
            return 0
        if not caps.has_watchdog:
            return int(caps.max_level * NO_WATCHDOG_MAX_FRACTION)
        return caps.max_level

    @property
    def failsafe(self) -> str:
        """`watchdog` when the device zeroes output on its own, `none` when it cannot (S4)."""
        return "watchdog" if self.capabilities and self.capabilities.has_watchdog else "none"

    async def start(self) -> None:
        """Explicit new start: clears the latch (and the device's), output still zero."""
        if self.state != LinkState.READY:
            raise ConnectionLostError(f"{self.transport.name}: cannot start while {self.state}")
        stops = self._stop_requests
        await self._stops_done.wait()  # an earlier stop still re-sending must not hit this start
        await self._handshake()
        await self._stops_done.wait()  # nor one a heartbeat began while this one shook hands
        if self._stop_requests != stops:  # a button, fault or stop arrived meanwhile: it stands
            self.stop_reason = self._last_stop_request
            raise SafetyLimitError(f"stopped while starting ({self.stop_reason})")
        if self.state != LinkState.READY or not self.transport.is_connected:
            raise ConnectionLostError(f"{self.transport.name}: link lost while starting")
        unfit = self.health.unfit(self.temperature_c, self.battery_pct)
        if unfit is not None:
            self.stop_reason = unfit.reason
            raise SafetyLimitError(f"{self.transport.name}: cannot start: {unfit.reason.value}")
        self.latched = False
        self.stop_reason = None
        self._emit("armed")

    def set_levels(self, levels: Sequence[int]) -> None:
        """Ask for these drive levels; coalesced, latest wins, sent by the writer task."""
        wanted = tuple(int(level) for level in levels)
        if len(wanted) != self.zones:
            raise SafetyLimitError(f"{len(wanted)} levels for a {self.zones}-zone device")
        if any(not 0 <= level <= self.max_level for level in wanted):
            raise SafetyLimitError(f"levels {wanted} outside 0-{self.max_level}")
        if any(wanted):
            if self.latched:
                reason = self.stop_reason or "not started"
                raise SafetyLimitError(f"output is latched off ({reason}); start() a new session")
            if self.state != LinkState.READY:
                raise ConnectionLostError(f"{self.transport.name}: link is {self.state}")
        self._desired = wanted
        self._dirty.set()

    async def stop(self, reason: StopReason = StopReason.USER_STOP) -> StopResult:
        """Latch output off and write zero now, ahead of anything queued. Idempotent."""
        return await self._stop(reason, announce=self._latch(reason))

    async def _stop(
        self, reason: StopReason, *, announce: bool, detail: dict[str, object] | None = None
    ) -> StopResult:
        """Write zero, then announce the stop: listeners (disk, terminal) never delay zero."""
        started = self.clock.now()
        if not self.transport.is_connected:
            # The device watchdog zeroes it; the first frame after reconnect is zero.
            if announce:
                self._announce(reason, detail)
            return StopResult(self.stop_reason or reason, confirmed=False, latency_s=None)
        try:
            confirmed = await self._write_stop()
        except (MassagerError, TimeoutError) as exc:
            _LOGGER.warning("%s: stop not confirmed: %s", self.transport.name, exc)
            confirmed = False
        if announce:
            self._announce(reason, detail)
        latency = self.clock.now() - started
        self._emit("stop_confirmed" if confirmed else "stop_unconfirmed", latency_s=latency)
        return StopResult(self.stop_reason or reason, confirmed, latency if confirmed else None)

    async def set_timer(self, seconds: int) -> None:
        """Arm the on-device session timer (a second, independent end-of-session stop)."""
        if self.capabilities is None or not self.capabilities.has_timer:
            return
        await self._exchange.request(SetTimer(seconds), attempts=HANDSHAKE_ATTEMPTS)

    # -- internals: sending ------------------------------------------------------------------

    async def _write_stop(self) -> bool:
        """STOP with response where supported; True once the device acks all-zero."""
        self._stop_writes += 1
        self._stops_done.clear()
        try:
            return await self._stop_exchange()
        finally:
            self._stop_writes -= 1
            if not self._stop_writes:
                self._stops_done.set()

    async def _stop_exchange(self) -> bool:
        self._desired = (0,) * self.zones
        caps = self.capabilities
        with_response = self.transport.supports_write_with_response and (
            caps is None or CapabilityFlags.WRITE_WITH_RESPONSE in caps.flags
        )
        try:
            ack = await self._exchange.request(Stop(), response=with_response)
        except DeviceTimeoutError:
            await self._exchange.send(Stop())  # the ack may be what was lost; say it once more
            return False
        if isinstance(ack, Ack) and not any(ack.levels):
            self.commanded = (0,) * self.zones
            return True
        return False

    async def _handshake(self) -> None:
        """Zero first, then HELLO → CAPABILITIES, then the watchdog period (lossy-link safe)."""
        # S5: the first frame on any (re)connect is zero
        await self._exchange.send(Stop(), response=False)
        self.commanded = (0,) * len(self.commanded)
        caps = await self._exchange.hello(HANDSHAKE_ATTEMPTS)
        self.health.expect_status(self.clock.now())  # STATUS is due within a period from now
        first = self.capabilities is None
        self.capabilities = caps
        if first or len(self._desired) != caps.zones:
            self._desired = self.commanded = (0,) * caps.zones
        if caps.has_watchdog:
            await self._exchange.request(
                SetWatchdog(round(self.watchdog_s * 1000)), attempts=HANDSHAKE_ATTEMPTS
            )
        elif first:
            _LOGGER.warning("%s: device has no watchdog; output limited", self.transport.name)
            self._emit("limit", failsafe="none", max_level=self.max_level)
        if first:
            self._emit(
                "capabilities",
                model=caps.model,
                firmware=caps.firmware_version,
                zones=caps.zones,
                max_level=caps.max_level,
                failsafe=self.failsafe,
            )

    async def _writer(self) -> None:
        """Send the latest wanted levels; intermediate values are dropped (coalesced)."""
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            levels = self._desired
            if levels == self.commanded or self.state != LinkState.READY:
                continue
            if self.latched and any(levels):
                continue
            try:
                await self._exchange.send(SetIntensity(levels))
            except (MassagerError, TimeoutError) as exc:
                _LOGGER.debug("%s: intensity write failed: %s", self.transport.name, exc)
                continue
            self.commanded = levels
            self.peak_level = max(self.peak_level, *levels)
            if self.latched and any(levels):
                # A stop raced this write onto the wire; zero again so the stop has the last word.
                with contextlib.suppress(MassagerError, TimeoutError):
                    await self._write_stop()

    async def _heartbeat(self) -> None:
        """Keep the device watchdog fed while output is non-zero; stops when this loop stalls."""
        while True:
            due = self._exchange.last_sent + self.heartbeat_s
            await self.clock.sleep(max(due - self.clock.now(), self.heartbeat_s / 10))
            if self.state != LinkState.READY:
                continue
            if self.latched:
                # Never keep a latched device alive; if it still reports output, stop it again,
                # a few times: then fall silent, so its own watchdog zeroes a device that hears
                # frames (which feed it) but does not obey them.
                if (any(self.applied) or any(self.commanded)) and self._restops_left > 0:
                    self._restops_left -= 1
                    with contextlib.suppress(MassagerError, TimeoutError):
                        await self._write_stop()
                continue
            if not (any(self.commanded) or any(self.applied)):
                continue
            if self.clock.now() - self._exchange.last_sent >= self.heartbeat_s * 0.9:
                with contextlib.suppress(MassagerError, TimeoutError):
                    await self._exchange.send(Heartbeat())

    async def _liveness(self) -> None:
        """S9: a device that stops sending STATUS while the link stays up is a lost device."""
        while True:
            await self.clock.sleep(self.health.limits.status_period_s / 2)
            if self.state != LinkState.READY:
                continue
            problem = self.health.check_silence(self.clock.now())
            if problem is None:
                continue
            # The stop below cannot be confirmed by a silent device; say what zeroes it anyway.
            backstop = f"device watchdog ({self.watchdog_s:g} s)"
            detail = problem.detail | {
                "backstop": backstop if self.failsafe == "watchdog" else "none"
            }
            _LOGGER.warning(
                "%s: no STATUS for %s s; treating the device as lost",
                self.transport.name,
                problem.detail["silent_s"],
            )
            self._emit("device_silent", **detail)
            if not self.latched:
                self._stop_soon(problem.reason, **detail)

    @property
    def stale(self) -> bool:
        """True when applied levels, battery and temperature may lag: the last STATUS is older
        than two periods, or the link is not up (they are from before it went)."""
        return self.state != LinkState.READY or self.health.stale(self.clock.now())

    # -- internals: receiving --------------------------------------------------------------

    def _on_frame(self, data: bytes) -> None:
        try:
            frame = decode(data)
        except ProtocolError as exc:
            self._malformed(str(exc))
            return
        match frame.message:
            case Capabilities() as caps:
                self._exchange.capabilities(caps)
            case Ack(acked_seq=seq, levels=levels) as ack:
                self._check_applied(levels, "ack")
                self.applied = levels
                self._exchange.answer(seq, ack)
            case Nack(acked_seq=seq, acked_type=acked_type, code=code, levels=levels) as nack:
                self.nacks += 1
                self.applied = levels
                type_name = _type_name(acked_type)
                _LOGGER.warning(
                    "%s: device refused %s: %s", self.transport.name, type_name, code.name
                )
                self._emit("nack", frame_type=str(type_name), code=code.name)
                self._exchange.answer(seq, nack)
            case Status() as status:
                self._on_status(status)
            case ButtonPress():
                self._stop_soon(StopReason.DEVICE_BUTTON)
                self._emit("button")
            case Fault(code=code) as fault:
                self._on_fault(fault.code, fault.detail)
            case _:
                self._malformed(f"unexpected {frame.message.TYPE.name} from the device")

    def _on_status(self, status: Status) -> None:
        self.applied = status.levels
        # A described simple-write device measures little: only what it measures is shown.
        measures = getattr(self.transport, "measures", None)
        if measures is None or "battery" in measures:
            self.battery_pct = status.battery_pct
        if measures is None or "temperature" in measures:
            self.temperature_c = status.temperature_c
        problem = self.health.on_status(
            status.levels,
            status.battery_pct,
            status.temperature_c,
            self.clock.now(),
            zones=self.zones if self.capabilities else None,
            max_level=self.max_level,
        )
        if problem is not None and (problem.reason == StopReason.FAULT or not self.latched):
            self._stop_for(problem)

    def _on_battery(self, percent: int) -> None:
        self.battery_pct = percent

    def _on_fault(self, code: FaultCode, detail: int) -> None:
        reason = {
            FaultCode.OVER_TEMPERATURE: StopReason.OVER_TEMPERATURE,
            FaultCode.LOW_BATTERY: StopReason.LOW_BATTERY,
            FaultCode.TIMER_EXPIRED: StopReason.TIMEOUT,
        }.get(code, StopReason.FAULT)
        # WATCHDOG_EXPIRED means our frames stopped reaching it: never resume on our own.
        self._stop_soon(reason, fault=code.name)
        self._emit("fault", code=code.name, detail=detail)

    def _check_applied(self, levels: tuple[int, ...], source: str) -> None:
        """S9: an ack reporting levels we never allowed is a fault."""
        if self.capabilities is None:
            return
        problem = self.health.check_levels(
            levels, source, zones=self.zones, max_level=self.max_level
        )
        if problem is not None:
            self._stop_for(problem)

    def _malformed(self, problem: str) -> None:
        self.malformed_frames += 1
        _LOGGER.debug("%s: malformed frame: %s", self.transport.name, problem)
        self._emit("malformed", problem=problem, count=self.malformed_frames)
        fault = self.health.malformed(self.clock.now())
        if fault is not None:
            self._stop_for(fault)

    def _on_disconnect(self) -> None:
        if self.state in (LinkState.CLOSED, LinkState.LINK_LOST, LinkState.RECONNECTING):
            return
        if self._latch(StopReason.LINK_LOST):
            self._announce(StopReason.LINK_LOST, None)
        self.state = LinkState.LINK_LOST
        self.health.forget()
        _LOGGER.warning("%s: link lost; output latched off", self.transport.name)
        self._emit("link_lost")
        self._exchange.fail_all(ConnectionLostError(f"{self.transport.name}: link lost"))
        if self.reconnect_policy.attempts > 0:
            self._reconnecting = self._spawn(self._reconnect(), "reconnect")

    async def _reconnect(self) -> None:
        policy = self.reconnect_policy
        backoff = policy.first_backoff_s
        for attempt in range(1, policy.attempts + 1):
            self.state = LinkState.RECONNECTING
            self._emit("reconnecting", attempt=attempt)
            await self.clock.sleep(backoff)
            try:
                async with asyncio.timeout(self.clock.real_seconds(policy.attempt_timeout_s)):
                    await self.transport.connect()
                    await self._handshake()
            except (MassagerError, TimeoutError) as exc:
                _LOGGER.info("%s: reconnect %d failed: %s", self.transport.name, attempt, exc)
                await self.transport.disconnect()
                backoff = min(backoff * 2, policy.max_backoff_s)
                continue
            self.state = LinkState.READY
            self._emit("reconnected", attempt=attempt)
            return
        self.state = LinkState.DISCONNECTED
        _LOGGER.warning("%s: gave up after %d reconnects", self.transport.name, policy.attempts)
        self._emit("reconnect_failed", attempts=policy.attempts)

    # -- internals: latch, events, tasks ----------------------------------------------------

    def _latch(self, reason: StopReason) -> bool:
        """Latch output off, synchronously. True if this call set the stop reason."""
        self._desired = (0,) * self.zones
        self._stop_requests += 1
        self._last_stop_request = reason
        if self.latched and self.stop_reason is not None:
            return False
        self.latched = True
        self.stop_reason = reason
        self._restops_left = RESTOPS
        for listener in list(self.latch_listeners):
            try:
                listener(reason)
            except Exception:  # this device is latched already; the failure is not hidden
                _LOGGER.exception("%s: latch listener failed", self.transport.name)
        return True

    def _announce(self, reason: StopReason, detail: dict[str, object] | None) -> None:
        quiet = reason in (StopReason.USER_STOP, StopReason.COMPLETED)
        log = _LOGGER.info if quiet else _LOGGER.warning
        log("%s: stop (%s) %s", self.transport.name, reason.value, detail or "")
        self._emit("stop", reason=reason.value, **(detail or {}))

    def _stop_for(self, problem: Problem) -> None:
        self._stop_soon(problem.reason, **problem.detail)

    def _stop_soon(self, reason: StopReason, **detail: object) -> None:
        """Latch now (synchronously) and write zero from a task: for callbacks."""
        announce = self._latch(reason)
        if self.transport.is_connected and self.state == LinkState.READY:
            self._spawn(self._stop(reason, announce=announce, detail=detail), f"stop {reason}")
        elif announce:
            self._announce(reason, detail)

    def _emit(self, kind: str, **detail: object) -> None:
        event = LinkEvent(kind, self.clock.now(), detail)
        for listener in list(self.listeners):
            try:
                listener(event)
            except Exception as exc:  # a broken listener is a fault, never a silent loss (S9)
                _LOGGER.exception("%s: %s listener failed", self.transport.name, kind)
                if not self.latched:
                    self._stop_soon(StopReason.FAULT, problem=f"listener: {exc!r}")

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=f"{self.transport.name} {name}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled() or task.exception() is None:
            return
        exc = task.exception()
        self.failure = exc
        _LOGGER.error("%s: task %s failed: %r", self.transport.name, task.get_name(), exc)
        self._stop_soon(StopReason.FAULT, problem=f"{task.get_name()}: {exc!r}")
