"""MQTT command parsing and the command lane: pure, no broker (S3, S8)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware_bridge.telemetry.commands import (
    COMMAND_BURST,
    MAX_COMMAND_BYTES,
    RateLimit,
    Refused,
    command_lane,
    command_value,
    rating,
    stop_request_id,
)

STOP_TOPIC = "massager/dev/cmd/stop"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"0", 0),
        (b"7", 7),
        (b" 10 ", 10),
        (b'{"value": 4}', 4),
        (b'{"nrs": "3"}', 3),
        (b"11", None),
        (b"-1", None),
        (b"--3", None),
        (b"+3", None),
        (b"3.0", None),
        (b'{"value": 3.0}', None),
        (b'{"value": true}', None),
        (b'{"value": "\\u0663"}', None),  # JSON-escaped Arabic-Indic three: not ASCII digits
        (b'{"value": "\\u00b2"}', None),  # superscript two
        (b'{"value": -2}', None),
        (b"", None),
    ],
)
def test_ratings_are_ascii_digits_0_to_10(raw: bytes, expected: int | None) -> None:
    value = command_value(raw, session_started_ts=0.0)
    assert not isinstance(value, Refused)
    assert rating(value) == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("\u00b2".encode(), "not ASCII"),
        ("\u0663".encode(), "not ASCII"),
        (b"\xff\xfe", "not ASCII"),
        (b"{nope", "not valid JSON"),
        (b"{" * 30 + b"}" * 30, "not valid JSON"),
        (b"9" * (MAX_COMMAND_BYTES + 1), "at most 64"),
        (b'{"value": 3, "ts": 99}', "older than this session"),
    ],
)
def test_malformed_or_stale_payloads_are_refused(raw: bytes, reason: str) -> None:
    value = command_value(raw, session_started_ts=100.0)
    assert isinstance(value, Refused)
    assert reason in value.reason


def test_a_command_from_this_session_is_not_stale() -> None:
    assert command_value(b'{"value": 3, "ts": 101}', session_started_ts=100.0) == 3


@given(st.binary(max_size=200))
def test_no_payload_raises(raw: bytes) -> None:
    value = command_value(raw, session_started_ts=0.0)
    if not isinstance(value, Refused):
        number = rating(value)
        assert number is None or 0 <= number <= 10
    request_id = stop_request_id(raw)
    assert request_id is None or request_id.isascii()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b'{"request_id": "abc-123", "ts": 5}', "abc-123"),
        (b'{"request_id": "a/b"}', None),
        (b'{"request_id": "abc\\n"}', None),  # `$` alone would let a trailing newline in
        (b'{"request_id": 5}', None),
        (b"stop", None),
        (b"PRESS", None),
        (b"", None),
    ],
)
def test_stop_request_ids(raw: bytes, expected: str | None) -> None:
    assert stop_request_id(raw) == expected


def test_rate_limit_allows_a_burst_then_the_rate() -> None:
    limit = RateLimit(rate=5.0, burst=20)
    assert sum(limit.allow(0.0) for _ in range(100)) == 20
    assert sum(limit.allow(1.0) for _ in range(100)) == 5  # one second refills five
    assert sum(limit.allow(100.0) for _ in range(100)) == 20  # never more than the burst


@dataclass
class FakeMessage:
    topic: str
    payload: bytes = b""


async def test_the_lane_acts_on_a_stop_at_once_even_behind_a_flood() -> None:
    stops: list[FakeMessage] = []
    drops: list[None] = []
    lane = command_lane(
        is_stop=lambda topic: topic == STOP_TOPIC,
        is_command=lambda topic: "/cmd/" in topic,
        on_stop=stops.append,
        on_drop=lambda: drops.append(None),
        limit=RateLimit(rate=0.0, burst=COMMAND_BURST),  # no refill while the test runs
    )
    queue = lane(maxsize=1000)
    for _ in range(20_000):
        queue.put_nowait(FakeMessage("massager/dev/cmd/discomfort", b"3"))
    queue.put_nowait(FakeMessage(STOP_TOPIC, b"stop"))
    assert len(stops) == 1  # handled inside put_nowait: nothing queued ahead of it matters
    assert queue.qsize() == COMMAND_BURST  # the flood is rate-limited ...
    assert len(drops) == 20_000 - COMMAND_BURST  # ... and every dropped one is counted
    assert all(item.topic != STOP_TOPIC for item in _drain(queue))


async def test_a_full_queue_never_drops_a_stop() -> None:
    stops: list[FakeMessage] = []
    lane = command_lane(
        is_stop=lambda topic: topic == STOP_TOPIC,
        is_command=lambda topic: "/cmd/" in topic,
        on_stop=stops.append,
        on_drop=lambda: None,
        limit=RateLimit(rate=1e9, burst=10**9),
    )
    queue = lane(maxsize=3)
    for _ in range(10):
        queue.put_nowait(FakeMessage("massager/dev/cmd/discomfort", b"3"))
    assert queue.full()
    queue.put_nowait(FakeMessage(STOP_TOPIC))
    assert len(stops) == 1


async def test_a_failing_stop_handler_does_not_break_the_reader() -> None:
    def broken(_message: object) -> None:
        raise RuntimeError("handler bug")

    lane = command_lane(
        is_stop=lambda topic: topic == STOP_TOPIC,
        is_command=lambda topic: "/cmd/" in topic,
        on_stop=broken,
        on_drop=lambda: None,
        limit=RateLimit(),
    )
    queue = lane(maxsize=10)
    queue.put_nowait(FakeMessage(STOP_TOPIC))  # must not raise into aiomqtt's socket reader
    queue.put_nowait(FakeMessage("massager/dev/cmd/discomfort", b"1"))
    assert queue.qsize() == 1


async def test_only_commands_are_rate_limited() -> None:
    """The claim check's retained state must get through even right after a flood."""
    lane = command_lane(
        is_stop=lambda topic: topic == STOP_TOPIC,
        is_command=lambda topic: "/cmd/" in topic,
        on_stop=lambda _m: None,
        on_drop=lambda: None,
        limit=RateLimit(),
    )
    queue = lane(maxsize=1000)
    for _ in range(100):
        queue.put_nowait(FakeMessage("massager/dev/cmd/discomfort", b"3"))
    queue.put_nowait(FakeMessage("massager/dev/state", b"{}"))
    assert [m.topic for m in _drain(queue)][-1] == "massager/dev/state"


def _drain(queue: asyncio.Queue[FakeMessage]) -> list[FakeMessage]:
    items = []
    while not queue.empty():
        items.append(queue.get_nowait())
    return items
