"""One key, one action: what each key does to the session, and keys that are not keys."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from firmware_bridge.cli.keys import TEN_WINDOW_S, Keyboard, keys_in
from firmware_bridge.device import StopReason
from firmware_bridge.runner import Session
from firmware_bridge.safety import Decision


class _Governor:
    def __init__(self) -> None:
        self.stopped = False
        self.paused = False


class _Session:
    """Records what the keyboard asked of it."""

    def __init__(self) -> None:
        self.governor = _Governor()
        self.calls: list[tuple[str, Any]] = []

    def request_stop(self, reason: StopReason) -> None:
        self.governor.stopped = True
        self.calls.append(("stop", reason))

    def report_discomfort(self, rating: int, *, source: str) -> Decision:
        self.calls.append(("rate", (rating, source)))
        return Decision.STOP if rating >= 7 else Decision.TARGET

    def lower_cap(self) -> int:
        self.calls.append(("lower_cap", None))
        return 3

    def pause(self) -> bool:
        self.governor.paused = True
        self.calls.append(("pause", None))
        return True

    def resume(self) -> bool:
        self.governor.paused = False
        self.calls.append(("resume", None))
        return True


def keyboard() -> tuple[Keyboard, _Session, list[str]]:
    session, said = _Session(), list[str]()
    return Keyboard(cast(Session, session), said.append), session, said


def test_escape_sequences_and_control_bytes_are_not_keys() -> None:
    assert keys_in(b"\x1b[15~") == ""  # F5 is ESC [ 1 5 ~: not a rating of 1 and then 5
    assert keys_in(b"\x1b[A3") == "3"  # an arrow, then a 3
    assert keys_in(b"\x1bOP") == ""  # F1
    assert keys_in(b"\r\n\t") == ""
    assert keys_in(b"SPX") == "spx"  # shifted keys act like their lower case
    assert keys_in("é".encode()) == "é"  # not a key we use, but not a crash either


async def test_each_key_acts_on_one_press() -> None:
    keys, session, said = keyboard()
    keys.feed("3")
    keys.feed("x")
    keys.feed("-")
    keys.feed("p")
    keys.feed("p")
    keys.feed("k")
    assert session.calls == [
        ("rate", (3, "person")),
        ("rate", (10, "person")),
        ("lower_cap", None),
        ("pause", None),
        ("resume", None),
    ]
    assert said[-1] == "key 'k' does nothing; the keys are below"
    keys.feed(" ")
    assert session.calls[-1] == ("stop", StopReason.USER_STOP)


async def test_a_stop_among_other_keys_wins_at_once() -> None:
    keys, session, _ = keyboard()
    keys.feed("3 5")  # a paste, or fast fingers: the stop is not queued behind the ratings
    assert session.calls == [("stop", StopReason.USER_STOP)]
    keys.feed("4")
    assert session.calls[-1] == ("stop", StopReason.USER_STOP)  # not running: not taken


async def test_a_typed_10_is_ten_never_one_then_zero() -> None:
    """Ten stops the session (S6); as 1 then 0 it would release a hold instead."""
    keys, session, _ = keyboard()
    keys.feed("1")
    keys.feed("0")
    assert session.calls == [("rate", (10, "person"))]
    await asyncio.sleep(TEN_WINDOW_S + 0.1)
    assert session.calls == [("rate", (10, "person"))]  # and no late 1 after it


async def test_a_lone_1_is_a_rating_of_1_once_the_window_has_passed() -> None:
    keys, session, _ = keyboard()
    keys.feed("1")
    assert session.calls == []
    await asyncio.sleep(TEN_WINDOW_S + 0.1)
    assert session.calls == [("rate", (1, "person"))]
    keys.feed("1")
    keys.feed("5")  # another key ends the wait: 1, then 5
    assert session.calls[1:] == [("rate", (1, "person")), ("rate", (5, "person"))]
