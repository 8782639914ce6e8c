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
session ran on. After going online it reads its own `online` back (the ACL probe, claim.py): a
broker whose ACL refuses this controller its own topics says so in no other way. On the first
connection either refusal, and a broker certificate that does not verify, is raised by
`wait_claimed` before the session; later, it ends telemetry with one warning. The stop lane
keeps listening in every case.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import ssl
from dataclasses import dataclass
from typing import Any

from firmware_bridge.errors import BrokerSetupError, DeviceIdForbiddenError, DeviceIdInUseError
from firmware_bridge.telemetry.claim import check_claim, probe_own_topics
from firmware_bridge.telemetry.commands import (
    RateLimit,
    Refused,
    command_lane,
    command_value,
    rating,
)
from firmware_bridge.telemetry.mqtt import BrokerSettings, MqttError, Will, make_client
from firmware_bridge.telemetry.outbox import Outbox
from firmware_bridge.telemetry.payloads import EventPayload, StatePayload, TelemetryPayload, now_ts
from firmware_bridge.telemetry.stops import CommandHandlers, StopDesk
from firmware_bridge.telemetry.topics import COMMANDS, Topics

__all__ = ["CommandHandlers", "Publisher", "PublisherStats"]

_LOGGER = logging.getLogger(__name__)

TELEMETRY_HZ = 2.0  # default telemetry rate; the contract asks for at least 1 Hz while running
BACKOFF_S = (0.2, 0.5, 1.0, 2.0, 5.0)  # reconnect backoff, then every 5 s
CLOSE_FLUSH_S = 2.0  # on close, how long to try to deliver what is still queued
OFFLINE_S = 1.0  # ... then how long "offline" may take (a dead broker publishes the will)
DROP_REPORT_S = 5.0  # rate-limited commands are reported as one event at most this often


@dataclass
class PublisherStats:
    connects: int = 0
    stop_lane_connects: int = 0
    published_events: int = 0
    published_telemetry: int = 0
    rejected_commands: int = 0
    accepted_commands: int = 0
    commands_dropped: int = 0  # rate-limited or overflowing (never a stop)
    last_error: str | None = None
    outages: int = 0
    probe_s: float | None = None  # how long our own "online" took to come back (ACL probe)


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
        self.session_id = session_id or secrets.token_hex(6)
        # Unique per controller instance: two clients with one id evict each other forever.
        self.client_id = f"massager-{topics.device_id}-{secrets.token_hex(4)}"
        self.stats = PublisherStats()
        self.stops = StopDesk(
            topics, session_id=self.session_id, queue_event=self.event, reject=self._rejected
        )
        self.connected = asyncio.Event()
        self.stop_lane_ready = asyncio.Event()
        self.conflict: str | None = None  # another live controller claims this device id
        self.refusal: BrokerSetupError | None = None  # the broker will not take us as set up
        self.session_started_ts = now_ts()
        self._claim_decided = asyncio.Event()
        self._claim_awaited = False  # wait_claimed() will raise a refusal at start
        self._state: StatePayload | None = None
        self._state_dirty = False
        self._telemetry: TelemetryPayload | None = None
        self._wake = asyncio.Event()
        self._closed = asyncio.Event()
        self._closing = False
        self._limit = RateLimit()
        self._lane = command_lane(
            is_stop=lambda topic: topic == topics.command("stop"),
            is_command=lambda topic: topic.startswith(topics.base + "/cmd/"),
            on_stop=self.stops.on_message,
            on_drop=self._on_drop,
            limit=self._limit,
        )
        self._unreported_drops = 0
        self._last_drop_report = float("-inf")
        self._close_deadline = float("inf")
        self._last_trouble: type[BaseException] | None = None
        self._unreachable = asyncio.Event()  # the first connection attempt failed
        self._reassert_online = False
        self._claim_timed_out = False
        if handlers is not None:
            self.handlers = handlers

    @property
    def handlers(self) -> CommandHandlers | None:
        return self.stops.handlers

    @handlers.setter
    def handlers(self, handlers: CommandHandlers | None) -> None:
        """Attach a session; a stop heard before this is carried out now (S3)."""
        self.stops.handlers = handlers

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
        """Wait for the first connection's claim check and ACL probe: True once the device id
        is ours, False if the broker did not answer in time. Raises DeviceIdInUseError if it is
        taken, DeviceIdForbiddenError if the broker's ACL refuses it, BrokerSetupError if the
        broker's certificate does not verify."""
        self._claim_awaited = True
        decided = asyncio.ensure_future(self._claim_decided.wait())
        unreachable = asyncio.ensure_future(self._unreachable.wait())
        try:  # a broker that is not there answers at once: do not hold the session for it
            await asyncio.wait(
                {decided, unreachable}, timeout=timeout_s, return_when="FIRST_COMPLETED"
            )
        finally:
            decided.cancel()
            unreachable.cancel()
        if self.conflict is not None:
            raise DeviceIdInUseError(self.conflict)
        if self.refusal is not None:
            raise self.refusal
        self._claim_timed_out = not self._claim_decided.is_set()
        return not self._claim_timed_out

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
            await self.stops.finish()
            self._report_drops(float("inf"))  # kept in the outbox if the broker was gone

    async def close(self) -> None:
        """Publish the final state, flush what the broker will take, go offline cleanly."""
        if not self._closing:
            self._close_deadline = asyncio.get_running_loop().time() + CLOSE_FLUSH_S
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
            except BrokerSetupError as exc:  # the ACL probe failed
                if self._caller_hears_it():  # before the session: refuse, in one line
                    self._refused(exc)
                    return
                self._outage(exc)  # the session runs: keep trying, say so once
            except (MqttError, OSError) as exc:  # refused, DNS, TLS, broker gone
                problem = _certificate_problem(exc)
                if problem is not None and self._caller_hears_it():  # else: retry, and warn
                    self._refused(self._untrusted(problem, exc))
                    return
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
                    self.stops.client = client
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
                self.stops.client = None
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
            await client.publish(topics.availability, b"online", qos=1, retain=True)
            # Read our "online" back (the ACL probe); then keep watching: a will or clean exit
            # of a controller that held this id before (a finished session, see claim.py) may
            # still say "offline" after our "online".
            await client.subscribe(topics.availability, qos=1)
            try:
                ours = self._state or StatePayload(state="idle", session_id=self.session_id)
                self.stats.probe_s = await probe_own_topics(
                    client,
                    topics,
                    ours.model_dump_json(exclude_none=True),
                    self.session_id,
                    broker=self.settings.display,
                    username=self.settings.username,
                )
            except DeviceIdForbiddenError:
                # Perhaps only reading is refused: never leave an "online" behind that would
                # block the id for every controller after us.
                with contextlib.suppress(MqttError, OSError):  # TimeoutError is an OSError
                    async with asyncio.timeout(OFFLINE_S):
                        await client.publish(topics.availability, b"offline", qos=1, retain=True)
                raise
            self.stats.connects += 1
            if self.stats.outages:
                _LOGGER.warning("MQTT: reconnected to %s", self.settings.display)
            if self.discovery is not None:
                await client.publish(
                    topics.ha_discovery, json.dumps(self.discovery), qos=1, retain=True
                )
            await client.subscribe(topics.commands, qos=1)
            self._state_dirty = self._state is not None  # (re)publish the retained state
            self.connected.set()
            self._claim_decided.set()  # the id is ours, and the broker lets us use it
            commands = asyncio.create_task(self._commands(client), name="mqtt commands")
            try:
                await self._pump(client)
            finally:
                commands.cancel()
                with contextlib.suppress(asyncio.CancelledError, MqttError):
                    await commands
                # Leaving the block disconnects cleanly, which discards the Last Will: say
                # offline ourselves, however the pump ended (or the broker keeps "online").
                with contextlib.suppress(MqttError, OSError):  # TimeoutError is an OSError
                    async with asyncio.timeout(OFFLINE_S):
                        await client.publish(topics.availability, b"offline", qos=1, retain=True)

    async def _pump(self, client: Any) -> None:
        """Publish state, events and telemetry until closed; closing is bounded in time."""
        try:
            await self._pump_until_closed(client)
        except TimeoutError:
            if not self._closing:
                raise
            _LOGGER.info("MQTT: closing before everything queued was delivered")

    async def _pump_until_closed(self, client: Any) -> None:
        loop = asyncio.get_running_loop()
        next_telemetry = loop.time()
        while True:
            if self._state_dirty and self._state is not None:
                self._state_dirty = False
                body = self._state.model_dump_json(exclude_none=True)
                await self._publish(client, self.topics.state, body, retain=True)
            if self._reassert_online and not self._closing:
                self._reassert_online = False
                await self._publish(client, self.topics.availability, "online", retain=True)
            while (event := self.outbox.peek()) is not None:
                if self._closing and loop.time() > self._close_deadline:
                    return  # what is left stays in the outbox for the next run
                await self._publish(client, self.topics.events, json.dumps(event))
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
                drained = not self._state_dirty and self.outbox.peek() is None
                if drained or now > self._close_deadline:
                    return
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, next_telemetry - loop.time())):
                    await self._wake.wait()

    async def _publish(
        self, client: Any, topic: str, payload: str, *, retain: bool = False
    ) -> None:
        """QoS 1; once closing, bounded by the close deadline (TimeoutError past it)."""
        if not self._closing:
            await client.publish(topic, payload, qos=1, retain=retain)
            return
        async with asyncio.timeout_at(self._close_deadline):
            await client.publish(topic, payload, qos=1, retain=retain)

    async def _commands(self, client: Any) -> None:
        async for message in client.messages:  # only what passed the lane's rate limit
            try:
                self._command(str(message.topic), message.payload, retained=bool(message.retain))
            except Exception:
                self.stats.rejected_commands += 1
                _LOGGER.exception("MQTT: command on %s failed", message.topic)

    # -- other commands (S8) ---------------------------------------------------------------------

    def _command(self, topic: str, payload: object, *, retained: bool) -> None:
        if topic == self.topics.availability:
            if _raw(payload) == b"offline" and not self._closing:
                self._reassert_online = True  # someone else's last word about this id
                self._wake.set()
            return
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
        handlers = self.stops.handlers
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
        """One `rejected` event for the commands dropped since the last one: at most every
        DROP_REPORT_S, and at once when closing (the count is never lost)."""
        due = self._closing or now - self._last_drop_report >= DROP_REPORT_S
        if self._unreported_drops and due:
            count, self._unreported_drops = self._unreported_drops, 0
            self._last_drop_report = now
            self.event(EventPayload.of("rejected", reason="rate limited", count=count))

    # -- trouble -----------------------------------------------------------------------------

    def _caller_hears_it(self) -> bool:
        """Within the first connection's check, with `wait_claimed` waiting to raise what goes
        wrong now (before the session: the CLI says it in one line)."""
        return (
            self._claim_awaited and not self._claim_decided.is_set() and not self._claim_timed_out
        )

    def _conflict(self, message: str) -> None:
        heard = self._caller_hears_it()
        self.conflict = message
        self._claim_decided.set()
        if not heard:  # the session may run already: stop publishing, keep hearing stops
            _LOGGER.warning("MQTT: %s; no more telemetry from this session", message)

    def _refused(self, error: BrokerSetupError) -> None:
        heard = self._caller_hears_it()
        self.refusal = error
        self._claim_decided.set()
        if not heard:  # as for a conflict: stop publishing, keep hearing stops
            _LOGGER.warning("MQTT: %s; no more telemetry from this session", error)

    def _untrusted(self, problem: str, exc: BaseException) -> BrokerSetupError:
        error = BrokerSetupError(
            f"MQTT broker {self.settings.display}: its certificate does not verify ({problem}); "
            "check --mqtt-ca (ca_file) and that the URL names a host the certificate is for"
        )
        error.__cause__ = exc
        return error

    def _outage(self, exc: BaseException) -> None:
        self.stats.last_error = str(exc) or repr(exc)
        self._unreachable.set()
        kind = type(exc)  # say it once per kind of trouble, not once per retry
        if self.connected.is_set() or self.stats.outages == 0 or kind is not self._last_trouble:
            self._last_trouble = kind
            _LOGGER.warning(
                "MQTT: %s unavailable (%s); the session goes on, events are kept",
                self.settings.display,
                self.stats.last_error,
            )
        self.stats.outages += 1


def _certificate_problem(exc: BaseException) -> str | None:
    """Why the broker's certificate did not verify, if that is what `exc` is about (aiomqtt
    wraps the ssl error in an MqttError, keeping it as the context)."""
    for candidate in (exc, exc.__cause__, exc.__context__):
        if isinstance(candidate, ssl.SSLCertVerificationError):
            return str(candidate.verify_message or candidate.reason or "unknown reason")
    return None


def _raw(payload: object) -> bytes:
    if isinstance(payload, bytes | bytearray):
        return bytes(payload)
    return str(payload if payload is not None else "").encode()
