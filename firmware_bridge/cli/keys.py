"""One key, one action during a session: cbreak mode (no Enter, no echo), always restored.

space, s or q stop (S3: latched, straight to the device); 0-9 rate discomfort and x is 10 (a
"1" followed by "0" within `TEN_WINDOW_S` is also 10, so a typed "10" never lands as "1, 0");
"-" lowers this session's cap by one; p pauses and resumes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
import termios
import tty
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from firmware_bridge.device import StopReason

if TYPE_CHECKING:
    from firmware_bridge.group import SessionGroup
    from firmware_bridge.runner import Session

_LOGGER = logging.getLogger(__name__)

STOP_KEYS = frozenset(" sq")
TEN_WINDOW_S = 0.6  # real seconds: "1" then "0" this close together is a rating of 10
READ_BYTES = 64  # one read takes what is waiting: a key, a paste, an escape sequence
KEY_HELP = "space/s stop · 0-9, x=10 rate · - lower cap · p pause/resume"
# Escape sequences (arrows, function keys, bracketed paste markers) are not keys to us: F5
# arrives as ESC [ 1 5 ~ and must not rate 1 and then 5.
_ESCAPES = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|O.|.)?", re.DOTALL)


def keys_in(data: bytes) -> str:
    """The keys in what one read returned: escape sequences and control bytes dropped."""
    text = _ESCAPES.sub("", data.decode("utf-8", errors="ignore"))
    return "".join(ch for ch in text if ch.isprintable()).lower()


def interactive(fd: int) -> bool:
    """True when `fd` is a terminal this process may read (the foreground job's)."""
    try:
        return os.isatty(fd) and os.tcgetpgrp(fd) == os.getpgrp()
    except OSError:
        return False


@contextlib.contextmanager
def cbreak(fd: int) -> Iterator[None]:
    """Keys arrive one at a time without Enter or echo; the terminal's own mode comes back on
    every way out (normal end, Ctrl-C, an exception). Ctrl-C still signals (ISIG stays on)."""
    saved = termios.tcgetattr(fd)
    tty.setcbreak(fd, termios.TCSANOW)
    try:
        yield
    finally:
        restore(fd, saved)


def restore(fd: int, saved: list[Any]) -> None:
    """Put the terminal's mode back, dropping keys typed but not read (not for the shell)."""
    # A job moved to the background gets SIGTTOU (and stops) for changing the terminal's
    # mode; ignoring it for the call lets the mode be restored anyway.
    previous = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
    try:
        termios.tcsetattr(fd, termios.TCSAFLUSH, saved)
    except (termios.error, OSError) as exc:  # the terminal is gone (SIGHUP): nothing to restore
        _LOGGER.debug("terminal mode not restored: %s", exc)
    finally:
        signal.signal(signal.SIGTTOU, previous)


class Keyboard:
    """Turns key presses into session actions; `said` gets a short line to show for each."""

    def __init__(self, session: Session | SessionGroup, said: Callable[[str], None]) -> None:
        self.session = session
        self.said = said
        self._pending_one: asyncio.TimerHandle | None = None

    def feed(self, keys: str) -> None:
        """Act on keys in the order pressed; a stop anywhere among them wins at once."""
        if any(key in STOP_KEYS for key in keys):
            self._cancel_pending()
            self.session.request_stop(StopReason.USER_STOP)  # latched before this returns
            return  # the stop's own event says when the device confirmed zero
        for key in keys:
            self._key(key)

    def close(self) -> None:
        """No more keys: a "1" still waiting for a "0" is dropped with the session."""
        self._cancel_pending()

    def _key(self, key: str) -> None:
        if self._pending_one is not None:
            self._cancel_pending()
            if key == "0":
                self._rate(10)
                return
            self._rate(1)
        if key == "1":
            loop = asyncio.get_running_loop()
            self._pending_one = loop.call_later(TEN_WINDOW_S, self._one_alone)
        elif key.isdigit():
            self._rate(int(key))
        elif key == "x":
            self._rate(10)
        elif key == "-":
            self._lower_cap()
        elif key == "p":
            self._pause_or_resume()
        else:
            self.said(f"key {key!r} does nothing; the keys are below")

    def _one_alone(self) -> None:
        self._pending_one = None
        self._rate(1)

    def _cancel_pending(self) -> None:
        if self._pending_one is not None:
            self._pending_one.cancel()
            self._pending_one = None

    def _rate(self, rating: int) -> None:
        governor = self.session.governor
        if governor is None or governor.stopped:
            self.said("the session is not running: rating not taken")
            return
        decision = self.session.report_discomfort(rating, source="person")
        self.said(f"you rated {rating}: {decision.value}")

    def _lower_cap(self) -> None:
        cap = self.session.lower_cap()
        self.said("the session is not running" if cap is None else f"cap lowered to {cap}")

    def _pause_or_resume(self) -> None:
        governor = self.session.governor
        if governor is None or governor.stopped:
            self.said("the session is not running")
        elif governor.paused:
            self.session.resume()
            self.said("resumed: rising again from zero")
        else:
            self.session.pause()
            self.said("p resumes")


@contextlib.contextmanager
def one_key_input(fd: int, keyboard: Keyboard) -> Iterator[None]:
    """Read keys from the terminal `fd` in cbreak mode for as long as the block runs."""
    loop = asyncio.get_running_loop()

    def readable() -> None:
        try:
            data = os.read(fd, READ_BYTES)
        except OSError:
            data = b""
        if not data:  # the terminal went away (SIGHUP stops the session): stop reading
            loop.remove_reader(fd)
            return
        keyboard.feed(keys_in(data))

    with cbreak(fd):
        loop.add_reader(fd, readable)
        try:
            yield
        finally:
            loop.remove_reader(fd)
            keyboard.close()
