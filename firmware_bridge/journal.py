"""The local journal: every session's record written as it happens, one JSON line per entry.

`<data dir>/sessions/<UTC time>-<profile>.jsonl`: a header, then events (fsynced: they are
what matters if the process dies) and per-second samples, then a summary. Writing happens on
the durable writer thread, never on the event loop. The data
dir is `$MASSAGER_DATA_DIR`, else the platform's user data directory.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from platformdirs import user_data_dir

from firmware_bridge.durable import writer
from firmware_bridge.record import Event, Sample, SessionRecord

_LOGGER = logging.getLogger(__name__)

ENV_DATA_DIR = "MASSAGER_DATA_DIR"


def data_dir() -> Path:
    return Path(os.environ.get(ENV_DATA_DIR) or user_data_dir("firmware-bridge", appauthor=False))


class Journal:
    """Appends one session to its file. Failures to write are logged, never raised (S10)."""

    def __init__(self, profile: str, *, directory: Path | None = None, header: dict[str, Any]):
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        self.directory = (directory or data_dir()) / "sessions"
        self.path = self.directory / f"{stamp}-{profile}.jsonl"
        self._open = True
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            _LOGGER.warning("journal: cannot write %s: %s", self.path, exc)
            self._open = False
        self._write({"kind": "header", "profile": profile, **header}, sync=True)

    def event(self, event: Event) -> None:
        self._write({"kind": "event", "type": event.type, "t": event.t, **event.detail}, sync=True)

    def sample(self, sample: Sample) -> None:
        self._write({"kind": "sample", **asdict(sample)}, sync=False)

    def close(self, record: SessionRecord, extra: dict[str, Any] | None = None) -> None:
        summary = record.summary()
        summary.pop("events", None)
        self._write({"kind": "summary", **summary, **(extra or {})}, sync=True)
        self._open = False
        writer().flush()

    def _write(self, entry: dict[str, Any], *, sync: bool) -> None:
        if self._open:  # written and fsynced by the durable writer thread, off the event loop
            line = json.dumps(entry, default=str, separators=(",", ":")) + "\n"
            writer().append(self.path, line, sync=sync)


def history(directory: Path | None = None) -> list[dict[str, Any]]:
    """Past sessions, oldest first: header fields plus the summary (or what a crash left)."""
    sessions = []
    folder = (directory or data_dir()) / "sessions"
    for path in sorted(folder.glob("*.jsonl")) if folder.is_dir() else []:
        entry: dict[str, Any] = {"file": path.name, "stop_reason": None, "samples": 0}
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError:
            continue
        for line in lines:
            try:
                item = json.loads(line)
            except json.JSONDecodeError:
                continue  # a torn last line after a crash
            kind = item.pop("kind", None)
            if kind in {"header", "summary"}:
                entry |= item
            elif kind == "sample":
                entry["samples"] += 1
                entry.setdefault("duration_s", 0.0)
                entry["duration_s"] = max(entry["duration_s"], item.get("elapsed_s", 0.0))
        sessions.append(entry)
    return sessions
