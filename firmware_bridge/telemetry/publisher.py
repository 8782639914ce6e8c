"""Publishing a session over MQTT and taking commands, never on the safety path (S8, S10).

The session talks to `Publisher` through non-blocking calls: `state()` and `telemetry()` are
latest-wins slots, `event()` appends to the outbox. A separate task owns the broker connection,
reconnects with backoff (aiomqtt does not), and drains the slots and the outbox. A dead, slow or
refusing broker costs the session nothing but a warning.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from firmware_bridge.telemetry.mqtt import BrokerSettings, MqttError, Will, make_client
from firmware_bridge.telemetry.outbox import Outbox
from firmware_bridge.telemetry.payloads import EventPayload, StatePayload, TelemetryPayload, now_ts
from firmware_bridge.telemetry.topics import COMMANDS, Topics

_LOGGER = logging.getLogger(__name__)

TELEMETRY_HZ = 2.0  # default telemetry rate; the contract asks for at least 1 Hz while running
MAX_COMMAND_BYTES = 64  # a command is a word or a number; anything bigger is rejected unread
BACKOFF_S = (0.2, 0.5, 1.0, 2.0, 5.0)  # reconnect backoff, then every 5 s
CLOSE_FLUSH_S = 2.0  # on close, how long to try to deliver what is still queued


@dataclass
class CommandHandlers:
    """What commands do. Each returns None when accepted or a reason when refused."""

    stop: Callable[[], str | None]
    discomfort: Callable[[int], str | None]
    cap: Callable[[int], str | None] | None = None  # lowering is always allowed


@dataclass
class PublisherStats:
    connects: int = 0
    published_events: int = 0
    published_telemetry: int = 0
    rejected_commands: int = 0
    accepted_commands: int = 0
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
    ) -> None:
        if not 1.0 <= telemetry_hz <= 50.0:
            raise ValueError(f"telemetry rate {telemetry_hz} Hz must be 1-50")
        self.settings = settings
        self.topics = topics
        self.outbox = outbox or Outbox(None)
        self.telemetry_period_s = 1.0 / telemetry_hz
        self.remote_control = remote_control
        self.discovery = discovery
        self.handlers = handlers
        self.stats = PublisherStats()
        self.connected = asyncio.Event()
        self.session_started_ts = now_ts()
        self._state: StatePayload | None = None
        self._state_dirty = False
        self._telemetry: TelemetryPayload | None = None
        self._wake = asyncio.Event()
        self._closed = asyncio.Event()
        self._closing = False

    # -- the session's side: never blocks, never raises -----------------------------------------

    def state(self, payload: StatePayload) -> None:
        self._state, self._state_dirty = payload, True
        self._wake.set()

    def telemetry(self, payload: TelemetryPayload) -> None:
        self._telemetry = payload  # latest wins: a slow broker sees fewer, never older, samples

    def event(self, payload: EventPayload) -> None:
        self.outbox.append(payload.model_dump(mode="json", exclude_none=True))
        self._wake.set()

    # -- the connection --------------------------------------------------------------------------

    async def run(self) -> None:
        """Stay connected until `close()`; reconnect with backoff after any broker failure."""
        attempt = 0
        while not self._closing:
            try:
                await self._connected_session()
                attempt = 0
            except MqttError as exc:
                self._outage(exc)
            except OSError as exc:  # DNS, refused, TLS files...
                self._outage(exc)
            self.connected.clear()
            if self._closing:
                break
            with contextlib.suppress(TimeoutError):  # back off, but wake at once for close()
                async with asyncio.timeout(BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)]):
                    await self._closed.wait()
            attempt += 1

    async def close(self) -> None:
        """Publish the final state, flush what the broker will take, go offline cleanly."""
        self._closing = True
        self._closed.set()
        self._wake.set()

    async def _connected_session(self) -> None:
        topics = self.topics
        will = Will(topics.availability, b"offline", qos=1, retain=True)
        client = make_client(self.settings, identifier=f"massager-{topics.device_id}", will=will)
        async with client:
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
        async for message in client.messages:  # read promptly: aiomqtt buffers without bound
            try:
                self._command(str(message.topic), message.payload, retained=bool(message.retain))
            except Exception:
                self.stats.rejected_commands += 1
                _LOGGER.exception("MQTT: command on %s failed", message.topic)

    # -- commands (S8) ---------------------------------------------------------------------------

    def _command(self, topic: str, payload: object, *, retained: bool) -> None:
        name = topic.removeprefix(self.topics.base + "/cmd/")
        raw = payload if isinstance(payload, bytes | bytearray) else str(payload or "").encode()
        problem = self._refusal(name, bytes(raw), retained=retained)
        if problem is None:
            self.stats.accepted_commands += 1
            self.event(EventPayload.of("command", command=name, accepted=True))
            return
        self.stats.rejected_commands += 1
        _LOGGER.warning("MQTT: rejected %s command: %s", name, problem)
        self.event(EventPayload.of("rejected", command=name[:32], reason=problem))

    def _refusal(self, name: str, raw: bytes, *, retained: bool) -> str | None:
        """None if the command was carried out, else why not (one short line)."""
        if retained:
            return "retained commands are ignored"
        if name == "stop":  # any payload (the contract): a stop is never refused for its form
            return "no session is running" if self.handlers is None else self.handlers.stop()
        parsed = self._parse(raw)
        if isinstance(parsed, _Refused):
            return parsed.reason
        handlers = self.handlers
        if handlers is None:
            return "no session is running"
        if name in {"discomfort", "cap"}:
            handler = handlers.discomfort if name == "discomfort" else handlers.cap
            number = _integer(parsed)
            if number is None or not 0 <= number <= 10:
                return f"{name} must be a whole number 0-10, got {str(parsed)[:16]!r}"
            return "not supported" if handler is None else handler(number)
        if name not in COMMANDS and not self.remote_control:
            return f"{name!r} can raise output; remote control is not enabled"
        return f"unknown command {name!r}"

    def _parse(self, raw: bytes) -> object:
        """A command's value: plain text, or `value`/`nrs` of a JSON object (with `ts`)."""
        if len(raw) > MAX_COMMAND_BYTES:
            return _Refused(
                f"payload of {len(raw)} bytes; commands are at most {MAX_COMMAND_BYTES}"
            )
        try:
            text = raw.decode("ascii").strip()
        except UnicodeDecodeError:
            return _Refused("payload is not text")
        if not text.startswith("{"):
            return text
        try:
            body = json.loads(text)
        except json.JSONDecodeError:
            return _Refused("payload is not valid JSON")
        if not isinstance(body, dict):
            return _Refused("payload is not a JSON object")
        ts = body.get("ts")
        if isinstance(ts, int | float) and ts < self.session_started_ts:
            return _Refused("command is older than this session")
        return body.get("value", body.get("nrs", ""))

    def _outage(self, exc: BaseException) -> None:
        self.stats.last_error = str(exc)
        if self.connected.is_set() or self.stats.outages == 0:
            _LOGGER.warning(
                "MQTT: %s unavailable (%s); the session goes on, events are kept",
                self.settings.display,
                exc,
            )
        self.stats.outages += 1


@dataclass(frozen=True)
class _Refused:
    reason: str


def _integer(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None
