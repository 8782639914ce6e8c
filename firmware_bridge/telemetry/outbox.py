"""A bounded on-disk outbox: events wait here, in order, until the broker has them.

Each event is appended as one JSON line and fsynced (by the durable writer thread, never on the
event loop), so it survives a dead broker and a dead process; `pop()` advances a persisted
cursor once the broker accepted the event. When the outbox is full new events are not kept: they
are counted, and the count is reported as an `events_dropped` event as soon as there is room
again. Nothing is dropped silently.

Both files are user-only (0600, in a 0700 directory). If the directory cannot be used, the
outbox still works in memory only; a failing disk is counted by the durable writer.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from pathlib import Path
from typing import Any

from firmware_bridge.durable import json_object, private_dir, read_start, tighten, writer

_LOGGER = logging.getLogger(__name__)

MAX_EVENTS = 10_000  # a 30-minute session produces a few hundred events; this is hours of outage
MAX_OUTBOX_BYTES = 32 * 2**20  # 10,000 events are about 3 MB; more is not an outbox of ours
MAX_CURSOR_BYTES = 32  # a line number


class Outbox:
    """FIFO of JSON events backed by `<dir>/outbox.jsonl` and a cursor file."""

    def __init__(self, directory: Path | None, *, max_events: int = MAX_EVENTS) -> None:
        self.max_events = max_events
        self.dropped = 0  # not yet reported
        self._pending: deque[dict[str, Any]] = deque()
        self._path: Path | None = None
        self._cursor: Path | None = None
        self._consumed = 0
        if directory is not None:
            path, cursor = directory / "outbox.jsonl", directory / "outbox.cursor"
            try:
                private_dir(directory)
                for made_before in (path, cursor):  # by an older version: 0644
                    if made_before.exists():
                        tighten(made_before)
            except OSError as exc:
                _LOGGER.warning(
                    "telemetry outbox: cannot use %s, keeping events in memory: %s", directory, exc
                )
                return
            self._path, self._cursor = path, cursor
            self._load(path, cursor)

    def __len__(self) -> int:
        return len(self._pending)

    def append(self, event: dict[str, Any]) -> bool:
        """Keep `event` (durably, when backed by a file). False if full: counted instead."""
        if len(self._pending) >= self.max_events:
            self.dropped += 1
            if self.dropped == 1:
                _LOGGER.warning(
                    "telemetry outbox full (%d events); counting drops", self.max_events
                )
            return False
        if self.dropped:
            report = {"type": "events_dropped", "count": self.dropped, "ts": event.get("ts")}
            self.dropped = 0
            self._store(report)
        self._store(event)
        return True

    def peek(self) -> dict[str, Any] | None:
        return self._pending[0] if self._pending else None

    def pop(self) -> None:
        """The head was delivered: forget it (persisting the cursor)."""
        if not self._pending:
            return
        self._pending.popleft()
        self._consumed += 1
        if self._path is None or self._cursor is None:
            return
        if not self._pending:  # all delivered: start the files afresh
            writer().replace(self._path, "")
            writer().replace(self._cursor, "0")
            self._consumed = 0
        else:
            writer().replace(self._cursor, str(self._consumed))

    def _store(self, event: dict[str, Any]) -> None:
        self._pending.append(event)
        if self._path is None:
            return
        line = json.dumps(event, separators=(",", ":")) + "\n"
        writer().append(self._path, line, sync=True)  # fsynced off the event loop

    def flush(self) -> None:
        """Wait until the outbox files reflect every append and pop (tests, shutdown)."""
        writer().flush()

    def _load(self, path: Path, cursor: Path) -> None:
        """Events a previous run could not deliver are delivered first (at most `max_events`:
        the rest are counted and reported, like any overflow)."""
        try:
            self._consumed = int(read_start(cursor, MAX_CURSOR_BYTES)[0] or 0)
        except (OSError, ValueError):
            self._consumed = 0
        try:
            data, truncated = read_start(path, MAX_OUTBOX_BYTES)
        except FileNotFoundError:
            return
        except OSError as exc:
            _LOGGER.warning("outbox: cannot read %s: %s", path, exc.strerror or exc)
            return
        damaged = 0
        for line in data.splitlines()[self._consumed :]:
            event = json_object(line)
            if event is None:
                damaged += 1
            elif len(self._pending) <= self.max_events:  # + 1: an events_dropped report
                self._pending.append(event)
            else:
                self.dropped += 1  # reported as events_dropped with the next event
        if damaged or truncated:
            _LOGGER.warning(
                "outbox: %s: skipped %d damaged lines%s",
                path,
                damaged,
                f", read only its first {MAX_OUTBOX_BYTES // 2**20} MiB" if truncated else "",
            )
