"""Durable appends off the event loop: one writer thread, in order, fsync where asked (S10).

The journal and the MQTT outbox must survive a crash, but an fsync can take from milliseconds
to seconds (SD cards, a busy disk); on the event loop that would delay a stop. They hand their
lines to this thread instead and the loop never touches the disk.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from pathlib import Path
from typing import IO

_LOGGER = logging.getLogger(__name__)


class DurableWriter:
    """Appends text to files on a background thread; `flush()` waits for everything queued."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[tuple[str, Path | None, str, bool, threading.Event | None]]
        self._queue = queue.SimpleQueue()
        self._handles: dict[Path, IO[str]] = {}
        self._thread = threading.Thread(target=self._run, name="durable-writer", daemon=True)
        self._thread.start()

    def append(self, path: Path, text: str, *, sync: bool) -> None:
        self._queue.put(("append", path, text, sync, None))

    def replace(self, path: Path, text: str) -> None:
        """Overwrite `path` with `text` (a cursor, or emptying a file), after earlier appends."""
        self._queue.put(("replace", path, text, True, None))

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything queued so far is written (and fsynced where asked)."""
        done = threading.Event()
        self._queue.put(("flush", None, "", False, done))
        return done.wait(timeout)

    def _run(self) -> None:
        while True:
            op, path, text, sync, done = self._queue.get()
            try:
                if op == "flush" and done is not None:
                    done.set()
                elif op == "append" and path is not None:
                    handle = self._handles.get(path)
                    if handle is None:
                        handle = self._handles[path] = path.open("a", encoding="utf-8")
                    handle.write(text)
                    handle.flush()
                    if sync:
                        os.fsync(handle.fileno())
                elif op == "replace" and path is not None:
                    if (handle := self._handles.pop(path, None)) is not None:
                        handle.close()
                    path.write_text(text, encoding="utf-8")
            except OSError as exc:
                _LOGGER.warning("cannot write %s: %s", path, exc)


_writer: DurableWriter | None = None
_lock = threading.Lock()


def writer() -> DurableWriter:
    """The process's one durable writer (started on first use)."""
    global _writer  # noqa: PLW0603 - one thread per process, created lazily
    with _lock:
        if _writer is None:
            _writer = DurableWriter()
        return _writer
