"""The live screen's output, written from a thread: a terminal that stops reading never stalls
the control loop.

A terminal stops reading when the person presses Ctrl-S, when an ssh connection stalls, or
when a test harness looks away; a write to it then blocks once the pty buffer (a few KB) is
full. Written on the event loop, that would stall the control loop, its heartbeats (the
device's watchdog then zeroes the motors, S4) and the device-silence check (a fault stop).
Here the loop only appends to a list; this thread does the blocking, and while it is busy the
screen skips redraws rather than queue them.
"""

from __future__ import annotations

import io
import threading
from typing import IO

DRAIN_S = 2.0  # real seconds to wait, at the end, for a terminal to take the last frame


class ScreenWriter(io.TextIOBase):
    """A text stream for rich's Console: `write` never blocks; a daemon thread writes."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self._pending: list[str] = []
        self._writing = False
        self._closed = False
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="screen writer", daemon=True)
        self._thread.start()

    @property
    def busy(self) -> bool:
        """True while earlier output has not reached the terminal yet."""
        with self._changed:
            return bool(self._pending) or self._writing

    def write(self, text: str) -> int:
        with self._changed:
            self._pending.append(text)
            self._changed.notify_all()
        return len(text)

    def flush(self) -> None:
        """Nothing to do here: the thread flushes after every batch."""

    def isatty(self) -> bool:
        return self.stream.isatty()

    def fileno(self) -> int:
        return self.stream.fileno()

    def drain(self, timeout: float = DRAIN_S) -> bool:
        """Stop taking output and wait (bounded) until what was written reached the terminal."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()
            return self._changed.wait_for(
                lambda: not self._pending and not self._writing, timeout=timeout
            )

    def _run(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: bool(self._pending) or self._closed)
                if not self._pending:
                    return
                batch = "".join(self._pending)
                self._pending.clear()
                self._writing = True
            try:
                self.stream.write(batch)
                self.stream.flush()
            except (OSError, ValueError):  # the terminal went away (SIGHUP stops the session)
                pass
            finally:
                with self._changed:
                    self._writing = False
                    self._changed.notify_all()
