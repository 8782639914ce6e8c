"""Publishing a session over MQTT and taking commands, never on the safety path (S3, S8, S10).

The session talks to `Publisher` through non-blocking calls: `state()` and `telemetry()` are
latest-wins slots, `event()` appends to the outbox. Two broker connections run as tasks and
reconnect with backoff (aiomqtt does not):

- the main lane publishes availability (with the Last Will), state, telemetry and events, and
  takes every command, rate-limited;
- the stop lane subscribes to `cmd/stop` only, so no flood of other commands can delay a stop
  in a socket buffer or push it out of a broker-side queue. On both lanes a stop is acted on the
  moment it is read (`commands.command_lane`), and its outcome, confirmed by the device or not,
  is answered as a `stop_result` event so `massager stop` can tell the person what happened.

Before going online the main lane checks that no other live controller claims the same device
id on this broker: two controllers on one id would make a stop look delivered while the other
session ran on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from firmware_bridge.device.events import StopResult
from firmware_bridge.errors import DeviceIdInUseError
from firmware_bridge.telemetry.claim import check_claim
from firmware_bridge.telemetry.commands import (
    RateLimit,
    Refused,
    command_lane,
    command_value,
    rating,
    stop_request_id,
)
from firmware_bridge.telemetry.mqtt import BrokerSettings, MqttError, Will, make_client
from firmware_bridge.telemetry.outbox import Outbox
from firmware_bridge.telemetry.payloads import EventPayload, StatePayload, TelemetryPayload, now_ts
from firmware_bridge.telemetry.topics import COMMANDS, Topics

_LOGGER = logging.getLogger(__name__)

TELEMETRY_HZ = 2.0  # default telemetry rate; the contract asks for at least 1 Hz while running
BACKOFF_S = (0.2, 0.5, 1.0, 2.0, 5.0)  # reconnect backoff, then every 5 s
CLOSE_FLUSH_S = 2.0  # on close, how long to try to deliver what is still queued
STOP_ANSWER_S = 5.0  # a stop's outcome is known within the link's ack timeout; bounded anyway
ANSWER_PUBLISH_S = 2.0  # publishing a stop_result on the stop lane, before the outbox takes it
MAX_ANSWERS = 16  # stop_results being prepared at once; a flood of stops is acted on, not answered
IDLESS_STOP_WINDOW_S = 0.5  # a stop without request id seen on both lanes is answered once
DROP_REPORT_S = 5.0  # rate-limited commands are reported as one event at most this often
REMEMBERED_REQUESTS = 256  # request ids already answered (the other lane sees each stop too)


@dataclass
class CommandHandlers:
    """What commands do. `stop` returns the device's confirmation; the others None when
    accepted, or a reason when refused."""

    stop: Callable[[], Awaitable[StopResult]]
    discomfort: Callable[[int], str | None]
    cap: Callable[[int], str | None] | None = None  # lowering is always allowed


@dataclass
class PublisherStats:
    connects: int = 0
    stop_lane_connects: int = 0
    published_events: int = 0
    published_telemetry: int = 0
    rejected_commands: int = 0
    accepted_commands: int = 0
    stops_received: int = 0
    stop_results: int = 0
    commands_dropped: int = 0  # rate-limited or overflowing (never a stop)
    last_error: str | None = None
    outages: int = 0


class Publisher:
    """One device's MQTT presence. `run()` is a task; the other methods never block or raise."""

    def __init__(
        self,
        settings: BrokerSettings,
        topics: Topics,
        *,
        outbox: Outbox | None = None,
        telemetry_hz: float = TELEMETRY_HZ,
        remote_control: bool = False,
        discovery: dict[str, Any] | None = None,
        handlers: CommandHandlers | None = None,
        session_id: str | None = None,
    ) -> None:
        if not 1.0 <= telemetry_hz <= 50.0:
            raise ValueError(f"telemetry rate {telemetry_hz} Hz must be 1-50")
        self.settings = settings
        self.topics = topics
        # Not `outbox or ...`: an empty Outbox is falsy (it has __len__) and would be replaced.
        self.outbox = outbox if outbox is not None else Outbox(None)
        self.telemetry_period_s = 1.0 / telemetry_hz
        self.remote_control = remote_control
        self.discovery = discovery
        self.handlers = handlers
        self.session_id = session_id or secrets.token_hex(6)
        # Unique per controller instance: two clients with one id evict each other forever.
        self.client_id = f"massager-{topics.device_id}-{secrets.token_hex(4)}"
        self.stats = PublisherStats()
        self.connected = asyncio.Event()
        self.stop_lane_ready = asyncio.Event()
        self.conflict: str | None = None  # another live controller claims this device id
        self.session_started_ts = now_ts()
        self._claim_decided = asyncio.Event()
        self._state: StatePayload | None = None
        self._state_dirty = False
        self._telemetry: TelemetryPayload | None = None
        self._wake = asyncio.Event()
        self._closed = asyncio.Event()
        self._closing = False
        self._limit = RateLimit()
        self._lane = command_lane(
            is_stop=lambda topic: topic == topics.command("stop"),
            on_stop=self._on_stop_message,
            on_drop=self._on_drop,
            limit=self._limit,
        )
        self._stop_client: Any = None
        self._answered: OrderedDict[str, None] = OrderedDict()
        self._last_idless_stop = float("-inf")
        self._answers: set[asyncio.Task[None]] = set()
        self._unreported_drops = 0
        self._last_drop_report = float("-inf")

    # -- the session's side: never blocks, never raises -----------------------------------------

    def state(self, payload: StatePayload) -> None:
        self._state, self._state_dirty = payload, True
        self._wake.set()

    def telemetry(self, payload: TelemetryPayload) -> None:
        self._telemetry = payload  # latest wins: a slow broker sees fewer, never older, samples

    def event(self, payload: EventPayload) -> None:
        self.outbox.append(payload.model_dump(mode="json", exclude_none=True))
        self._wake.set()

    async def wait_claimed(self, timeout_s: float) -> bool:
        """Wait for the first connection's claim check: True once the device id is ours, False
        if the broker did not answer in time. Raises DeviceIdInUseError if it is taken."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._claim_decided.wait()
        if self.conflict is not None:
            raise DeviceIdInUseError(self.conflict)
        return self._claim_decided.is_set()

    # -- the connections -------------------------------------------------------------------------

    async def run(self) -> None:
        """Both lanes until `close()`; reconnect with backoff after any broker failure."""
        stop_lane = asyncio.create_task(self._stop_lane(), name=f"mqtt stop lane {self.topics}")
        try:
            await self._main_lane()
            await self._closed.wait()  # after a conflict, stops are still heard until the end
        finally:
            stop_lane.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stop_lane
            await self._finish_answers()

    async def close(self) -> None:
        """Publish the final state, flush what the broker will take, go offline cleanly."""
        self._closing = True
        self._closed.set()
        self._wake.set()

    async def _main_lane(self) -> None:
        attempt = 0
        while not self._closing:
            try:
                await self._connected_session()
                attempt = 0
            except DeviceIdInUseError as exc:
                self._conflict(str(exc))
                return
            except (MqttError, OSError) as exc:  # refused, DNS, TLS, broker gone
                self._outage(exc)
            except Exception as exc:  # noqa: BLE001 - a bad setting must not end telemetry unseen
                self._outage(exc)
            self.connected.clear()
            if self._closing:
                break
            await self._backoff(attempt)
            attempt += 1

    async def _stop_lane(self) -> None:
        """A connection that hears `cmd/stop` and nothing else (acted on in `command_lane`)."""
        attempt = 0
        while True:
            try:
                client = make_client(
                    self.settings, identifier=f"{self.client_id}-stop", queue_type=self._lane
                )
                async with client:
                    await client.subscribe(self.topics.command("stop"), qos=1)
                    self._stop_client = client
                    self.stats.stop_lane_connects += 1
                    self.stop_lane_ready.set()
                    attempt = 0
                    async for _ in client.messages:  # ends with MqttError when the link drops
                        pass  # stops never reach the queue: they were handled on arrival
            except (MqttError, OSError) as exc:
                _LOGGER.debug("MQTT stop lane: %s", exc)
            except Exception as exc:  # noqa: BLE001 - reported by the main lane's outage too
                _LOGGER.debug("MQTT stop lane: %r", exc)
            finally:
                self._stop_client = None
                self.stop_lane_ready.clear()
            await self._backoff(attempt)
            attempt += 1

    async def _backoff(self, attempt: int) -> None:
        with contextlib.suppress(TimeoutError):  # back off, but wake at once for close()
            async with asyncio.timeout(BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)]):
                await self._closed.wait()

    async def _connected_session(self) -> None:
        topics = self.topics
        will = Will(topics.availability, b"offline", qos=1, retain=True)
        client = make_client(
            self.settings, identifier=self.client_id, will=will, queue_type=self._lane
        )
        async with client:  # leaving it sends DISCONNECT: the will is discarded, not published
            await check_claim(client, topics, self.session_id)
            self._claim_decided.set()
            self.stats.connects += 1
            if self.stats.outages:
                _LOGGER.warning("MQTT: reconnected to %s", self.settings.display)
            await client.publish(topics.availability, b"online", qos=1, retain=True)
            if self.discovery is not None:
                await client.publish(
                    topics.ha_discovery, json.dumps(self.discovery), qos=1, retain=True
                )
            await client.subscribe(topics.commands, qos=1)
            self._state_dirty = self._state is not None  # (re)publish the retained state
            self.connected.set()
            commands = asyncio.create_task(self._commands(client), name="mqtt commands")
            try:
                await self._pump(client)
                await client.publish(topics.availability, b"offline", qos=1, retain=True)
            finally:
                commands.cancel()
                with contextlib.suppress(asyncio.CancelledError, MqttError):
                    await commands

    async def _pump(self, client: Any) -> None:
        loop = asyncio.get_running_loop()
        next_telemetry = loop.time()
        closing_deadline: float | None = None
        while True:
            if self._state_dirty and self._state is not None:
                self._state_dirty = False
                await client.publish(
                    self.topics.state,
                    self._state.model_dump_json(exclude_none=True),
                    qos=1,
                    retain=True,
                )
            while (event := self.outbox.peek()) is not None:
                await client.publish(self.topics.events, json.dumps(event), qos=1)
                self.outbox.pop()
                self.stats.published_events += 1
            now = loop.time()
            self._report_drops(now)
            if now >= next_telemetry:
                next_telemetry = now + self.telemetry_period_s
                sample, self._telemetry = self._telemetry, None
                if sample is not None:
                    await client.publish(self.topics.telemetry, sample.model_dump_json(), qos=0)
                    self.stats.published_telemetry += 1
            if self._closing:
                closing_deadline = closing_deadline or now + CLOSE_FLUSH_S
                drained = not self._state_dirty and self.outbox.peek() is None
                if drained or now > closing_deadline:
                    return
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, next_telemetry - loop.time())):
                    await self._wake.wait()

    async def _commands(self, client: Any) -> None:
        async for message in client.messages:  # only what passed the lane's rate limit
            try:
                self._command(str(message.topic), message.payload, retained=bool(message.retain))
            except Exception:
                self.stats.rejected_commands += 1
                _LOGGER.exception("MQTT: command on %s failed", message.topic)

    # -- stop (S3): acted on as it arrives, answered with the device's confirmation -------------

    def _on_stop_message(self, message: Any) -> None:
        """Runs inside the client's socket reader: must not block and must not raise."""
        self.stats.stops_received += 1
        raw = _raw(message.payload)
        if message.retain:  # an old stop kept by the broker would stop every future session
            self._rejected("stop", "retained commands are ignored")
            return
        handlers = self.handlers
        pending = handlers.stop() if handlers is not None else None  # the stop happens here
        request_id = stop_request_id(raw)
        if request_id is not None:
            if request_id in self._answered:
                return  # the other lane carried the same request
            self._answered[request_id] = None
            while len(self._answered) > REMEMBERED_REQUESTS:
                self._answered.popitem(last=False)
        else:
            now = asyncio.get_running_loop().time()
            if now - self._last_idless_stop < IDLESS_STOP_WINDOW_S:
                return
            self._last_idless_stop = now
        self.stats.accepted_commands += 1
        if len(self._answers) >= MAX_ANSWERS:
            return
        task = asyncio.create_task(self._answer(request_id, pending), name="mqtt stop answer")
        self._answers.add(task)
        task.add_done_callback(self._answers.discard)

    async def _answer(self, request_id: str | None, pending: Awaitable[StopResult] | None) -> None:
        detail: dict[str, Any] = {"request_id": request_id}
        if pending is None:
            detail |= {"stop_confirmed": False, "problem": "no session is attached"}
        else:
            try:
                async with asyncio.timeout(STOP_ANSWER_S):
                    result = await pending
                latency = None if result.latency_s is None else round(result.latency_s * 1000, 3)
                detail |= {
                    "stop_confirmed": result.confirmed,
                    "reason": result.reason.value,
                    "latency_ms": latency,
                }
            except Exception as exc:  # noqa: BLE001 - the answer says what went wrong
                detail |= {"stop_confirmed": False, "problem": repr(exc)[:120]}
        payload = EventPayload.of("stop_result", session_id=self.session_id, **detail)
        self.stats.stop_results += 1
        client = self._stop_client
        if client is not None:  # straight out: an outbox backlog must not hide the answer
            with contextlib.suppress(MqttError, OSError, TimeoutError):
                async with asyncio.timeout(ANSWER_PUBLISH_S):
                    body = payload.model_dump_json(exclude_none=True)
                    await client.publish(self.topics.events, body, qos=1)
                return
        self.event(payload)

    async def _finish_answers(self) -> None:
        if self._answers:
            await asyncio.wait(list(self._answers), timeout=ANSWER_PUBLISH_S)
        for task in list(self._answers):
            task.cancel()

    # -- other commands (S8) ---------------------------------------------------------------------

    def _command(self, topic: str, payload: object, *, retained: bool) -> None:
        if not topic.startswith(self.topics.base + "/cmd/"):
            return  # a claim-check message still in the queue
        name = topic.removeprefix(self.topics.base + "/cmd/")
        problem = self._refusal(name, _raw(payload), retained=retained)
        if problem is None:
            self.stats.accepted_commands += 1
            self.event(EventPayload.of("command", command=name, accepted=True))
            return
        self._rejected(name, problem)

    def _rejected(self, name: str, problem: str) -> None:
        self.stats.rejected_commands += 1
        _LOGGER.warning("MQTT: rejected %s command: %s", name[:32], problem)
        self.event(EventPayload.of("rejected", command=name[:32], reason=problem))

    def _refusal(self, name: str, raw: bytes, *, retained: bool) -> str | None:
        """None if the command was carried out, else why not (one short line)."""
        if retained:
            return "retained commands are ignored"
        value = command_value(raw, session_started_ts=self.session_started_ts)
        if isinstance(value, Refused):
            return value.reason
        handlers = self.handlers
        if handlers is None:
            return "no session is running"
        if name in {"discomfort", "cap"}:
            handler = handlers.discomfort if name == "discomfort" else handlers.cap
            number = rating(value)
            if number is None:
                return f"{name} must be a whole number 0-10, got {str(value)[:16]!r}"
            return "not supported" if handler is None else handler(number)
        if name not in COMMANDS and not self.remote_control:
            return f"{name[:32]!r} can raise output; remote control is not enabled"
        return f"unknown command {name[:32]!r}"

    def _on_drop(self) -> None:
        self.stats.commands_dropped += 1
        if self._unreported_drops == 0 and self.stats.commands_dropped == 1:
            _LOGGER.warning("MQTT: commands arrive faster than accepted; counting the excess")
        self._unreported_drops += 1
        self._wake.set()

    def _report_drops(self, now: float) -> None:
        if self._unreported_drops and now - self._last_drop_report >= DROP_REPORT_S:
            count, self._unreported_drops = self._unreported_drops, 0
            self._last_drop_report = now
            self.event(EventPayload.of("rejected", reason="rate limited", count=count))

    # -- trouble -----------------------------------------------------------------------------

    def _conflict(self, message: str) -> None:
        first = not self._claim_decided.is_set()
        self.conflict = message
        self._claim_decided.set()
        if not first:  # found on a reconnect: stop publishing, keep hearing stops
            _LOGGER.warning("MQTT: %s; no more telemetry from this session", message)

    def _outage(self, exc: BaseException) -> None:
        self.stats.last_error = str(exc) or repr(exc)
        if self.connected.is_set() or self.stats.outages == 0:
            _LOGGER.warning(
                "MQTT: %s unavailable (%s); the session goes on, events are kept",
                self.settings.display,
                self.stats.last_error,
            )
        self.stats.outages += 1


def _raw(payload: object) -> bytes:
    if isinstance(payload, bytes | bytearray):
        return bytes(payload)
    return str(payload if payload is not None else "").encode()
