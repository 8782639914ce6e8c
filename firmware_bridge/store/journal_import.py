"""Completing the database from the journal, the record that survives a crash.

A journal file is read the way `journal.history()` reads it (bounded by `MAX_JOURNAL_BYTES`,
never opening a FIFO, skipping lines that are not JSON objects), and everything in it that the
database lacks is added: the session, its samples, its ratings, its outcome. What the journal
does not say (older headers carry no ceiling or session limit) is filled with the defaults the
session ran under, named below.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from firmware_bridge.durable import json_object, read_start
from firmware_bridge.journal import MAX_JOURNAL_BYTES
from firmware_bridge.person.facts import RatingSource, SessionFacts
from firmware_bridge.record import Sample
from firmware_bridge.store import rows

_LOGGER = logging.getLogger(__name__)
_T = TypeVar("_T")

DEFAULT_CAP = 4  # the cap every version ran with unless told otherwise ("moderate, never severe")
DEFAULT_PLANNED_S = 15 * 60.0  # the default session limit, 15 min, when the journal omits it
SIMULATOR_DEVICE = "simulator"  # the device key of sessions played on the simulator
_STAMP = "%Y%m%dT%H%M%SZ"  # the UTC start time that begins every journal file's name
_STAMP_CHARS = 16


@dataclass(frozen=True, slots=True)
class JournaledSession:
    """One journal file, read: whose it is, the session, its samples."""

    file: str
    size: int  # bytes the file had when read: an unchanged file is not read again
    person: str
    facts: SessionFacts
    samples: list[Sample]
    closed: bool  # the summary was written: the session ended (stop_reason says how)


def journal_files(folder: Path) -> list[Path]:
    """The journal files in `folder`, oldest first (their names start with the UTC time)."""
    try:
        names = sorted(item.name for item in os.scandir(folder) if item.name.endswith(".jsonl"))
    except FileNotFoundError:
        return []
    except OSError as exc:
        _LOGGER.warning("journal folder %s cannot be read: %s", folder, exc.strerror or exc)
        return []
    return [folder / name for name in names]


def imported(db: sqlite3.Connection) -> dict[str, tuple[bool, int | None]]:
    """Journal file name -> (its session is finished, bytes it had when last imported)."""
    return {
        name: (bool(finished), size)
        for name, finished, size in db.execute(
            "SELECT journal_file, stop_reason IS NOT NULL, journal_bytes FROM sessions"
            " WHERE journal_file IS NOT NULL"
        )
    }


def up_to_date(path: Path, done: Mapping[str, tuple[bool, int | None]]) -> bool:
    """Whether the database already has all `path` can give it."""
    if path.name not in done:
        return False
    finished, size = done[path.name]
    if finished:
        return True  # the database knows more than the journal (before, after, check-in)
    try:
        return os.stat(path).st_size == size
    except OSError:
        return False  # let read() report it


def read(path: Path, person_for_unknown: str) -> JournaledSession | None:
    """The session in one journal file, or None (logged) if it cannot be read or is not one."""
    try:
        size = os.stat(path).st_size
        data, truncated = read_start(path, MAX_JOURNAL_BYTES)
    except OSError as exc:
        _LOGGER.warning("journal %s cannot be read: %s", path, exc.strerror or exc)
        return None
    header: dict[str, Any] = {}
    summary: dict[str, Any] = {}
    started: dict[str, Any] = {}
    samples: list[Sample] = []
    heard: list[tuple[float, int, RatingSource]] = []
    closed = False
    for raw in data.split(b"\n"):
        item = json_object(raw) if raw.strip() else None
        if item is None:
            continue  # not ours, or a torn last line after a crash
        kind = item.get("kind")
        if kind == "header":
            header |= item
        elif kind == "summary":  # from the slot or the end: the same summary
            summary |= item
            closed = True
        elif kind == "sample" and (sample := _sample(item)) is not None:
            samples.append(sample)
        elif kind == "event" and item.get("type") == "session_started" and not started:
            started = item
        elif kind == "event" and item.get("type") == "discomfort":
            heard += _ratings([item])
    if not header:
        _LOGGER.warning("journal %s has no header: not imported", path)
        return None
    if header.get("part_of"):  # another massager of a session whose lead journal is the record
        return None
    if truncated:
        _LOGGER.warning("journal %s is larger than %d bytes: read in part", path, MAX_JOURNAL_BYTES)
    facts = _facts(
        path, header=header, summary=summary, started=started, samples=samples, heard=heard
    )
    person = _text(header.get("person")) or person_for_unknown
    return JournaledSession(path.name, size, person, facts, samples, closed)


def merge(db: sqlite3.Connection, found: JournaledSession) -> int:
    """Add what the database lacks of `found`; 1 if the session was added or changed, else 0."""
    facts = found.facts
    row = db.execute(
        "SELECT stop_reason IS NOT NULL, duration_s FROM sessions WHERE id = ?", (facts.id,)
    ).fetchone()
    changed = False
    if row is None:
        rows.insert_session(db, rows.person_id(db, found.person), facts, found.file)
        rows.add_samples(db, facts.id, found.samples)
        changed = True
    elif not row[0]:  # in the database as interrupted: the journal may know how it ended
        if found.closed:  # the summary's outcome, unless the row says so already
            outcome = {"reason": facts.stop_reason, "played": facts.duration_s, "id": facts.id}
            changed = (
                db.execute(
                    "UPDATE sessions SET stop_reason = :reason, duration_s = :played,"
                    " after_nrs = coalesce(after_nrs, :after) WHERE id = :id"
                    " AND (stop_reason IS NOT :reason OR duration_s IS NOT :played)",
                    outcome | {"after": facts.after},
                ).rowcount
                > 0
            )
        elif facts.duration_s is not None and (row[1] is None or row[1] < facts.duration_s):
            db.execute(
                "UPDATE sessions SET duration_s = ? WHERE id = ?", (facts.duration_s, facts.id)
            )
            changed = True
        changed |= rows.add_samples(db, facts.id, found.samples) > 0
        changed |= rows.add_ratings(db, facts.id, facts.ratings) > 0
    # A finished session is left alone: the database has what the journal has, and more.
    db.execute(
        "UPDATE sessions SET journal_file = coalesce(journal_file, ?), journal_bytes = ?"
        " WHERE id = ?",
        (found.file, found.size, facts.id),
    )
    return int(changed)


def _facts(
    path: Path,
    *,
    header: Mapping[str, Any],
    summary: Mapping[str, Any],
    started: Mapping[str, Any],
    samples: list[Sample],
    heard: list[tuple[float, int, RatingSource]],
) -> SessionFacts:
    """The session as the journal tells it; older files' gaps filled with the defaults."""
    speed = _number(summary.get("speed"))
    # The header says whether the built-in simulated person played; older headers do not, and
    # then a faster clock (--speed) can only have been the simulator's demo.
    said = header.get("simulated")
    simulated = said if isinstance(said, bool) else speed is not None and speed != 1.0
    cap = _first(
        _nrs(header.get("cap")), _nrs(summary.get("cap")), _nrs(started.get("cap")), DEFAULT_CAP
    )
    ceiling = _number(header.get("ceiling"))
    if ceiling is None or not 0 <= ceiling <= 1:
        ceiling = cap / 10  # the governor's ceiling when no personal one was set
    played = max((s.elapsed_s for s in samples), default=None)
    summed = _number(summary.get("duration_s"))  # the session clock's, when it ended
    facts = SessionFacts(
        id=_text(header.get("session_id")) or path.stem,
        started_at=_first(
            _time(header.get("started_at")), _time(summary.get("started_at")), _stamp(path)
        ),
        profile=_text(header.get("profile"))
        or _text(summary.get("profile"))
        or path.stem[_STAMP_CHARS + 1 :]
        or path.stem,
        device=_device(header, simulated=simulated),
        ceiling=ceiling,
        cap=cap,
        planned_s=_first(
            _number(header.get("planned_s")), _number(started.get("limit_s")), DEFAULT_PLANNED_S
        ),
        duration_s=played if summed is None else summed,
        stop_reason=_text(summary.get("stop_reason")),
        before=_nrs(header.get("before")),
        after=_nrs(summary.get("after")),
        simulated=simulated,
    )
    ratings = _ratings(summary["ratings"]) if isinstance(summary.get("ratings"), list) else heard
    return replace(facts, ratings=tuple(sorted(ratings)))


def _device(header: Mapping[str, Any], *, simulated: bool) -> str:
    """The device key calibrations use: its Bluetooth address, or "simulator"."""
    if key := _text(header.get("device_key")):
        return key
    if simulated:
        return SIMULATOR_DEVICE
    device = header.get("device")
    if isinstance(device, str) and device:
        return device
    if isinstance(device, dict) and (address := _text(device.get("address"))):
        return address
    return _text(header.get("device_id")) or "unknown"


def _ratings(items: list[Any]) -> list[tuple[float, int, RatingSource]]:
    """(t, nrs, source) of each well-formed rating; a rating without a source was the person's."""
    found = []
    for item in items:
        if not isinstance(item, dict):
            continue
        t, nrs = _number(item.get("t")), _nrs(item.get("nrs"))
        given = item.get("source")
        source = rows.as_source("person" if given is None else given)  # older: the person's
        if t is not None and nrs is not None and source is not None:
            found.append((t, nrs, source))
    return found


def _sample(item: Mapping[str, Any]) -> Sample | None:
    """A sample line as a Sample, or None if any field is missing or of the wrong kind."""
    elapsed, remaining = _number(item.get("elapsed_s")), _number(item.get("remaining_s"))
    intensity, applied = _number(item.get("intensity")), _number(item.get("applied"))
    segment, zones = item.get("segment"), item.get("zones")
    if elapsed is None or remaining is None or intensity is None or applied is None:
        return None
    if not isinstance(segment, str) or not isinstance(zones, list):
        return None
    levels = [_number(zone) for zone in zones]
    nrs, battery, temperature = item.get("nrs"), item.get("battery"), item.get("temperature_c")
    wrong = (
        None in levels
        or (nrs is not None and _nrs(nrs) is None)
        or (battery is not None and _int(battery) is None)
        or (temperature is not None and _number(temperature) is None)
    )
    if wrong:
        return None
    return Sample(
        elapsed_s=elapsed,
        remaining_s=remaining,
        segment=segment,
        intensity=intensity,
        applied=applied,
        zones=tuple(float(zone) for zone in zones),
        nrs=nrs,
        battery=battery,
        temperature_c=_number(temperature),
        stale=item.get("stale") is True,
        paused=item.get("paused") is True,
    )


def _first(*values: _T | None) -> _T:
    """The first value that is not None (0 is a value)."""
    return next(value for value in values if value is not None)


def _number(value: object) -> float | None:
    """A finite JSON number as float; None for anything else (bools are not numbers here)."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _nrs(value: object) -> int | None:
    number = _int(value)
    return number if number is not None and 0 <= number <= rows.NRS_MAX else None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _time(value: object) -> dt.datetime | None:
    """An ISO-8601 time with a timezone, as UTC; None if it is not one."""
    try:
        at = dt.datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None
    return at.astimezone(dt.UTC) if at is not None and at.tzinfo is not None else None


def _stamp(path: Path) -> dt.datetime:
    """The start time in the file's name; else when the file was last changed (else now)."""
    try:
        return dt.datetime.strptime(path.name[:_STAMP_CHARS], _STAMP).replace(tzinfo=dt.UTC)
    except ValueError:
        pass
    try:
        return dt.datetime.fromtimestamp(os.stat(path).st_mtime, dt.UTC)
    except OSError:
        return rows.now()
