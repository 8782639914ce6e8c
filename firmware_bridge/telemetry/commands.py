"""MQTT command payloads and the incoming-command lane (S3, S8): pure parsing, no I/O.

A stop is acted on the moment it is read off the socket, ahead of anything queued; every other
command is rate-limited and counted, so a flood can neither fill memory nor push a stop out.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_LOGGER = logging.getLogger(__name__)

MAX_COMMAND_BYTES = 64  # a command is a word, a number or a small JSON object
COMMAND_RATE_PER_S = 5.0  # sustained rate of non-stop commands taken from one broker link
COMMAND_BURST = 20  # ... with this many at once (a slider dragged in Home Assistant)
_ASCII_INTEGER = re.compile(r"^[0-9]{1,2}$")  # 0-10 in ASCII digits: no "²", "٣", "--3"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class Refused:
    """A command that was not carried out, and why (one short line)."""

    reason: str


def command_value(raw: bytes, *, session_started_ts: float) -> object:
    """A command's value: plain ASCII text, or `value`/`nrs` of a JSON object (with `ts`).

    Returns `Refused` for anything oversized, non-ASCII, malformed or older than the session.
    """
    if len(raw) > MAX_COMMAND_BYTES:
        return Refused(f"payload of {len(raw)} bytes; commands are at most {MAX_COMMAND_BYTES}")
    try:
        text = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        return Refused("payload is not ASCII text")
    if not text.startswith("{"):
        return text
    try:
        body = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return Refused("payload is not valid JSON")
    if not isinstance(body, dict):
        return Refused("payload is not a JSON object")
    ts = body.get("ts")
    if isinstance(ts, int | float) and not isinstance(ts, bool) and ts < session_started_ts:
        return Refused("command is older than this session")
    return body.get("value", body.get("nrs", ""))


def rating(value: object) -> int | None:
    """A 0-10 whole number from a command value (ASCII digits or a JSON integer), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 <= value <= 10 else None
    if isinstance(value, str) and _ASCII_INTEGER.fullmatch(value.strip()):
        number = int(value.strip())
        return number if number <= 10 else None
    return None


def stop_request_id(raw: bytes) -> str | None:
    """The `request_id` of a stop sent by `massager stop`; None for any other payload.

    A stop is never refused for its form (the contract: any payload stops); the id only lets
    the sender match the confirmation to its request.
    """
    if not raw.startswith(b"{") or len(raw) > 4 * MAX_COMMAND_BYTES:
        return None
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    request_id = body.get("request_id") if isinstance(body, dict) else None
    if isinstance(request_id, str) and _REQUEST_ID.fullmatch(request_id):
        return request_id
    return None


class RateLimit:
    """A token bucket: `allow(now)` is True for at most `burst` at once, `rate` per second."""

    def __init__(self, rate: float = COMMAND_RATE_PER_S, burst: int = COMMAND_BURST) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._at: float | None = None

    def allow(self, now: float) -> bool:
        if self._at is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


def command_lane(
    *,
    is_stop: Callable[[str], bool],
    is_command: Callable[[str], bool],
    on_stop: Callable[[Any], None],
    on_drop: Callable[[], None],
    limit: RateLimit,
) -> type[asyncio.Queue[Any]]:
    """An aiomqtt `queue_type` whose queue never holds, delays or drops a stop.

    aiomqtt puts each incoming message with `put_nowait` from the client's socket reader, on
    the event loop. A stop is handed to `on_stop` right there, before the next packet is read;
    other commands pass the rate limit and a free slot or go to `on_drop` (aiomqtt's own
    full-queue path would discard whatever arrives next, a stop included). Messages that are
    not commands (the claim check's retained state) only need a free slot: a flood of
    commands must not make the claim check miss another controller's state.
    """

    class CommandLane(asyncio.Queue[Any]):
        def put_nowait(self, item: Any) -> None:
            try:
                topic = str(item.topic)
                if is_stop(topic):
                    on_stop(item)
                elif self.full() or (
                    is_command(topic) and not limit.allow(asyncio.get_running_loop().time())
                ):
                    on_drop()
                else:
                    super().put_nowait(item)
            except Exception:  # raising here would tear down aiomqtt's socket reader
                _LOGGER.exception("MQTT: incoming command failed")

    return CommandLane
