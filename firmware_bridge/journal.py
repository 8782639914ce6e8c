"""The local journal: every session's record written as it happens, one JSON line per entry.

`<data dir>/sessions/<UTC time>-<profile>.jsonl` (0600, in a 0700 directory): a header, a
reserved summary slot, then events (fsynced: they are what matters if the process dies) and
per-second samples, then the summary. The data dir is `$MASSAGER_DATA_DIR`, else the platform's
user data directory. Writing happens on the durable writer thread, never on the event loop, and
never raises: `Journal.status` says afterwards whether everything reached the disk.

The slot is there for a full disk. It is written (and fsynced) when the file is created, while
there is room; at the end the summary overwrites it in place, which needs no new space, so
`history()` can tell a finished session from an interrupted one even when nothing else could be
written. The summary is also appended at the end (where readers before the slot look for it).
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

from platformdirs import user_data_dir

from firmware_bridge.durable import json_object, private_dir, read_start, tighten, writer
from firmware_bridge.record import Event, Sample, SessionRecord

ENV_DATA_DIR = "MASSAGER_DATA_DIR"

# Bytes reserved near the start of each journal for the summary. A summary is ~0.4 KiB plus
# ~25 bytes per rating: 8 KiB holds one rating a minute for five hours. Longer ones are appended.
SLOT_BYTES = 8192
_SLOT_LINE = b'{"kind":"slot"}'.ljust(SLOT_BYTES - 1) + b"\n"

# How much of one journal file `history()` reads. A 30-minute session is ~0.5 MB (1,800 samples
# of ~250 bytes); 64 MiB is many hours of that, yet a stray huge file cannot exhaust memory.
# Beyond it the file's start is read: the header and the slot's summary are there.
MAX_JOURNAL_BYTES = 64 * 1024 * 1024

JournalStatus = Literal["ok", "degraded", "off"]


def data_dir() -> Path:
    return Path(os.environ.get(ENV_DATA_DIR) or user_data_dir("firmware-bridge", appauthor=False))


class Journal:
    """Appends one session to its file. Failures to write are counted, never raised (S10)."""

    def __init__(self, profile: str, *, directory: Path | None = None, header: dict[str, Any]):
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        self.directory = (directory or data_dir()) / "sessions"
        self.path = self.directory / f"{stamp}-{profile}.jsonl"
        self._open = True
        # The platform's data dir is ours to tighten; a directory the user named may be shared.
        self._own_root = directory is None and not os.environ.get(ENV_DATA_DIR)
        # Set on the writer thread: whether the file exists, and where its summary slot is.
        self._created: bool | None = None
        self._slot: int | None = None
        first = _line({"kind": "header", "profile": profile, **header})
        writer().call(lambda: self._create(first))

    @property
    def status(self) -> JournalStatus:
        """How the file fared: "ok", "degraded" (`lines_lost` lines missing) or "off" (no file).

        Exact once `flush()` or `close()` returned; before that it tells what is known so far.
        """
        if self._created is False:
            return "off"
        return "degraded" if self.lines_lost else "ok"

    @property
    def lines_lost(self) -> int:
        """Lines (header, events, samples, summary) that could not be written."""
        return writer().health(self.path).lost

    def event(self, event: Event) -> None:
        self._write({"kind": "event", "type": event.type, "t": event.t, **event.detail}, sync=True)

    def sample(self, sample: Sample) -> None:
        self._write({"kind": "sample", **asdict(sample)}, sync=False)

    def close(
        self, record: SessionRecord, extra: dict[str, Any] | None = None, *, wait: bool = True
    ) -> None:
        """Write the summary; with `wait`, block (up to 5 s) until the file is complete.

        On the event loop pass `wait=False` and await `asyncio.to_thread(journal.flush)`.
        """
        if not self._open:
            return
        self._open = False
        summary = record.summary()
        summary.pop("events", None)
        entry = {"kind": "summary", **summary, **(extra or {})}
        writer().call(lambda: self._finish(entry))
        if wait:
            writer().flush()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every line so far is written (blocking: not on the event loop)."""
        return writer().flush(timeout)

    def _write(self, entry: dict[str, Any], *, sync: bool) -> None:
        if self._open:  # written and fsynced by the durable writer thread, off the event loop
            writer().append(self.path, _line(entry).decode(), sync=sync)

    def _create(self, first: bytes) -> None:
        """On the writer thread: a private directory, the header, the fsynced summary slot."""
        w = writer()
        try:
            private_dir(self.directory)
            if self._own_root:
                tighten(self.directory.parent)  # older versions made it 0755
        except OSError as exc:
            w.abandon_now(self.path, exc)
            self._created = False
            return
        if w.append_now(self.path, first, sync=False) is None:
            w.abandon_now(self.path, None)  # warned already; later lines are only counted
            self._created = False
            return
        self._slot = w.append_now(self.path, _SLOT_LINE, sync=True)
        self._created = True

    def _finish(self, entry: dict[str, Any]) -> None:
        """On the writer thread, after every line before it: the summary, in the slot if it fits."""
        w = writer()
        if lost := w.health(self.path).lost:
            entry |= {"journal": "degraded", "journal_lines_lost": lost}
        line = _line(entry)
        in_slot = (
            self._slot is not None
            and len(line) <= SLOT_BYTES
            and w.write_at_now(
                self.path, self._slot, line[:-1].ljust(SLOT_BYTES - 1) + b"\n", sync=True
            )
        )
        # The copy at the end is spare when the slot has the summary: not counted if lost.
        w.append_now(self.path, line, sync=True, best_effort=in_slot)
        w.close_now(self.path)


def _line(entry: dict[str, Any]) -> bytes:
    return (json.dumps(entry, default=str, separators=(",", ":")) + "\n").encode()


def history(directory: Path | None = None) -> list[dict[str, Any]]:
    """Past sessions, oldest first: header fields plus the summary (or what a crash left).

    Never raises for what it finds: a file it cannot read is an entry with an "error"; lines
    that are not JSON objects are skipped and counted in "skipped_lines". "closed" says
    whether the session's summary was written.
    """
    folder = (directory or data_dir()) / "sessions"
    try:
        names = sorted(item.name for item in os.scandir(folder) if item.name.endswith(".jsonl"))
    except FileNotFoundError:
        return []
    except OSError as exc:
        return [{"file": str(folder), "error": exc.strerror or str(exc)}]
    return [_session(folder / name) for name in names]


def _session(path: Path) -> dict[str, Any]:
    try:
        data, truncated = read_start(path, MAX_JOURNAL_BYTES)
    except OSError as exc:
        return {"file": path.name, "error": exc.strerror or str(exc)}
    header: dict[str, Any] = {}
    summary: dict[str, Any] = {}
    closed, samples, skipped = False, 0, 0
    duration: float | None = None
    for raw in data.split(b"\n"):
        if not raw.strip():
            continue
        item = json_object(raw)
        if item is None:
            skipped += 1  # not ours, or a torn last line after a crash
            continue
        kind = item.pop("kind", None)
        if kind == "header":
            header |= item
        elif kind == "summary":  # from the slot or the end: the same summary
            summary |= item
            closed = True
        elif kind == "sample":
            samples += 1
            elapsed = item.get("elapsed_s")
            if isinstance(elapsed, int | float) and not isinstance(elapsed, bool):
                duration = max(duration or 0.0, float(elapsed))
        # "slot" (no summary yet), "event" and kinds from newer versions add nothing here
    entry: dict[str, Any] = {"stop_reason": None, "samples": samples}
    if duration is not None:
        entry["duration_s"] = duration
    entry |= header | summary  # what the record says wins over what the samples suggest
    entry |= {"file": path.name, "closed": closed, "skipped_lines": skipped}
    if truncated:
        entry["truncated"] = True
    return entry
