"""Remote stops (S3): carried out the moment they are read, answered with the device's word.

Both broker connections of a Publisher hand every `cmd/stop` message to one `StopDesk`, from
inside the client's socket reader. The desk stops first (the session's handler latches at
once) and only then decides whether an answer is still owed: a request heard on both lanes,
or a flood of stops, is acted on every time and answered once. A stop heard before a session
is attached is remembered and carried out at attach, so the session never starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from firmware_bridge.device.events import StopResult
from firmware_bridge.telemetry.commands import stop_request_id
from firmware_bridge.telemetry.mqtt import MqttError
from firmware_bridge.telemetry.payloads import EventPayload
from firmware_bridge.telemetry.topics import Topics

_LOGGER = logging.getLogger(__name__)

STOP_ANSWER_S = 5.0  # a stop's outcome is known within the link's ack timeout; bounded anyway
ANSWER_PUBLISH_S = 2.0  # publishing a stop_result on the stop lane, before the outbox takes it
MAX_ANSWERS = 16  # stop_results being prepared at once; a flood of stops is acted on, not answered
IDLESS_STOP_WINDOW_S = 0.5  # a stop without request id seen on both lanes is answered once
REMEMBERED_REQUESTS = 256  # request ids already answered (the other lane sees each stop too)


@dataclass
class CommandHandlers:
    """What commands do. `stop` must start the stop before it returns (latch at once) and
    return the device's confirmation to come; the others return None when accepted, or a
    reason when refused."""

    stop: Callable[[], Awaitable[StopResult]]
    discomfort: Callable[[int], str | None]
    cap: Callable[[int], str | None] | None = None  # lowering is always allowed


@dataclass
class StopStats:
    received: int = 0  # every cmd/stop message, on either lane
    carried_out: int = 0  # handler calls (idempotent: both lanes call it)
    answered: int = 0  # stop_result events sent


class StopDesk:
    """One device's remote stops: carry out, remember when early, answer once."""

    def __init__(
        self,
        topics: Topics,
        *,
        session_id: str,
        queue_event: Callable[[EventPayload], None],
        reject: Callable[[str, str], None],
    ) -> None:
        self.topics = topics
        self.session_id = session_id
        self.stats = StopStats()
        self.client: Any = None  # the stop lane's connection, while it is up
        self._queue_event = queue_event  # the outbox, when no lane can publish now
        self._reject = reject
        self._handlers: CommandHandlers | None = None
        self._early: list[str | None] = []  # stops heard before a session was attached
        self._answered: OrderedDict[str, None] = OrderedDict()
        self._last_idless = float("-inf")
        self._answers: set[asyncio.Task[None]] = set()

    @property
    def handlers(self) -> CommandHandlers | None:
        return self._handlers

    @handlers.setter
    def handlers(self, handlers: CommandHandlers | None) -> None:
        """Attach a session's handlers; a stop heard before this is carried out now (S3)."""
        self._handlers = handlers
        if handlers is None:
            return
        early, self._early = self._early, []
        for request_id in early:
            _LOGGER.warning("MQTT: carrying out a stop that arrived before the session")
            self._carry_out(handlers, request_id)

    def on_message(self, message: Any) -> None:
        """Runs inside the client's socket reader: must not block and must not raise."""
        self.stats.received += 1
        if message.retain:  # an old stop kept by the broker would stop every future session
            self._reject("stop", "retained commands are ignored")
            return
        payload = message.payload
        raw = bytes(payload) if isinstance(payload, bytes | bytearray) else b""
        request_id = stop_request_id(raw)
        handlers = self._handlers
        if handlers is None:  # before the session is attached: it must not start (S3)
            if len(self._early) < MAX_ANSWERS:
                self._early.append(request_id)
            elif None not in self._early:
                self._early.append(None)  # remembered, if not every id
            return
        self._carry_out(handlers, request_id)

    def _carry_out(self, handlers: CommandHandlers, request_id: str | None) -> None:
        """Stop first, then decide whether this stop still needs an answer."""
        pending = asyncio.ensure_future(handlers.stop())  # a coroutine handler starts now too
        self.stats.carried_out += 1
        if request_id is not None and request_id in self._answered:
            return  # the other lane carried the same request
        if request_id is None:
            now = asyncio.get_running_loop().time()
            if now - self._last_idless < IDLESS_STOP_WINDOW_S:
                return
            self._last_idless = now
        if len(self._answers) >= MAX_ANSWERS:
            return  # a flood of stops is acted on; answering each is not owed
        if request_id is not None:
            self._answered[request_id] = None
            while len(self._answered) > REMEMBERED_REQUESTS:
                self._answered.popitem(last=False)
        task = asyncio.create_task(self._answer(request_id, pending), name="mqtt stop answer")
        self._answers.add(task)
        task.add_done_callback(self._answers.discard)

    async def _answer(self, request_id: str | None, pending: asyncio.Future[StopResult]) -> None:
        detail: dict[str, Any] = {"request_id": request_id}
        # asyncio.wait, not await: cancelling this answer must never cancel the stop itself.
        done, _ = await asyncio.wait({pending}, timeout=STOP_ANSWER_S)
        if not done:
            detail |= {"stop_confirmed": False, "problem": f"no outcome in {STOP_ANSWER_S:g} s"}
        elif pending.cancelled() or pending.exception() is not None:
            problem = "cancelled" if pending.cancelled() else repr(pending.exception())[:120]
            detail |= {"stop_confirmed": False, "problem": problem}
        else:
            result = pending.result()
            latency = None if result.latency_s is None else round(result.latency_s * 1000, 3)
            detail |= {
                "stop_confirmed": result.confirmed,
                "reason": result.reason.value,
                "latency_ms": latency,
            }
        await self._send(EventPayload.of("stop_result", session_id=self.session_id, **detail))

    async def _send(self, payload: EventPayload) -> None:
        self.stats.answered += 1
        client = self.client
        if client is not None:  # straight out: an outbox backlog must not hide the answer
            with contextlib.suppress(MqttError, OSError):  # TimeoutError is an OSError
                async with asyncio.timeout(ANSWER_PUBLISH_S):
                    body = payload.model_dump_json(exclude_none=True)
                    await client.publish(self.topics.events, body, qos=1)
                return
        self._queue_event(payload)

    async def finish(self) -> None:
        """At close: answer early stops whose session never came; bounded wait for the rest."""
        for request_id in self._early:
            problem = "no session was started; nothing to confirm"
            await self._send(
                EventPayload.of(
                    "stop_result",
                    session_id=self.session_id,
                    request_id=request_id,
                    stop_confirmed=False,
                    problem=problem,
                )
            )
        self._early = []
        if self._answers:
            await asyncio.wait(list(self._answers), timeout=ANSWER_PUBLISH_S)
        for task in list(self._answers):
            task.cancel()  # an answer only: the stops they waited on are not touched
