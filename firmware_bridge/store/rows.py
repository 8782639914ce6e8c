"""Rows to facts and back: the SQL the store and the journal import share.

Times are stored as UTC ISO-8601 text with microseconds ("2026-11-30T19:05:00.000000+00:00"):
fixed width, so text order is time order, and readable in any SQLite shell. The functions take
a connection whose caller holds the store's lock and an open transaction.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast, get_args

from firmware_bridge.person.facts import RatingSource, SessionFacts
from firmware_bridge.record import Sample

RATING_SOURCES: frozenset[str] = frozenset(get_args(RatingSource))
NRS_MAX = 10  # ratings are 0-10 (0 nothing, 10 the worst imaginable)
RATING_T_SLACK_S = 0.01  # the journal's summary rounds rating times to 0.01 s

SESSION_COLUMNS = (
    "id, started_at, profile, device, ceiling, cap, planned_s, duration_s, stop_reason,"
    " before_nrs, after_nrs, morning_nrs, peak_nrs, simulated"
)
SAMPLE_COLUMNS = (
    "elapsed_s, remaining_s, segment, intensity, applied, zones, nrs, battery, temperature_c,"
    " stale, paused"
)


@dataclass(frozen=True)
class RememberedDevice:
    """A massager a person used: `massager run` tries the latest first (schema 4)."""

    address: str
    name: str | None
    description: str | None  # the device description's id; None: our protocol, undescribed
    last_used: dt.datetime


def to_text(at: dt.datetime) -> str:
    """A timezone-aware time as stored; naive times are refused (whose local time?)."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"time {at.isoformat()} has no timezone; pass an aware datetime")
    return at.astimezone(dt.UTC).isoformat(timespec="microseconds")


def from_text(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).astimezone(dt.UTC)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def check_nrs(nrs: int | None, what: str) -> int | None:
    """`nrs` if it is None or a 0-10 integer; ValueError otherwise."""
    if nrs is not None and (
        isinstance(nrs, bool) or not isinstance(nrs, int) or not 0 <= nrs <= NRS_MAX
    ):
        raise ValueError(f"{what} must be an integer 0-{NRS_MAX}, got {nrs!r}")
    return nrs


def check_source(source: str) -> str:
    if source not in RATING_SOURCES:
        raise ValueError(f"rating source must be one of {sorted(RATING_SOURCES)}, got {source!r}")
    return source


def as_source(value: object) -> RatingSource | None:
    """`value` if it names who gave a rating, else None."""
    return cast(RatingSource, value) if isinstance(value, str) and value in RATING_SOURCES else None


def person_id(db: sqlite3.Connection, name: str) -> int:
    """The person's row id, adding them first if they are new."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"a person's name must be a non-empty string, got {name!r}")
    db.execute(
        "INSERT INTO people (name, created_at) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
        (name, to_text(now())),
    )
    return int(db.execute("SELECT id FROM people WHERE name = ?", (name,)).fetchone()[0])


def insert_session(
    db: sqlite3.Connection, person: int, facts: SessionFacts, journal_file: str | None
) -> None:
    """The session's row, or, if its id is there already, its start-time columns updated.

    The id can be there already when a journal import saw the session's file before its
    `begin_session`: the outcome columns the import filled in are kept.
    """
    check_nrs(facts.before, "before")
    values = (
        facts.id,
        person,
        to_text(facts.started_at),
        facts.profile,
        facts.device,
        facts.ceiling,
        facts.cap,
        facts.planned_s,
        facts.duration_s,
        facts.stop_reason,
        facts.before,
        check_nrs(facts.after, "after"),
        check_nrs(facts.morning, "morning"),
        check_nrs(facts.peak_rating, "peak_rating"),
        int(facts.simulated),
        journal_file,
    )
    db.execute(
        """INSERT INTO sessions (id, person_id, started_at, profile, device, ceiling, cap,
            planned_s, duration_s, stop_reason, before_nrs, after_nrs, morning_nrs, peak_nrs,
            simulated, journal_file)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT (id) DO UPDATE SET
            person_id = excluded.person_id, started_at = excluded.started_at,
            profile = excluded.profile, device = excluded.device, ceiling = excluded.ceiling,
            cap = excluded.cap, planned_s = excluded.planned_s, simulated = excluded.simulated,
            before_nrs = coalesce(excluded.before_nrs, before_nrs),
            journal_file = coalesce(excluded.journal_file, journal_file)""",
        values,
    )
    add_ratings(db, facts.id, facts.ratings)


def add_ratings(
    db: sqlite3.Connection, session_id: str, ratings: Iterable[tuple[float, int, str]]
) -> int:
    """Add the ratings the session does not have yet (same nrs and source within 0.01 s).

    Returns how many were added; the session's peak rating rises with them.
    """
    have = db.execute(
        "SELECT t, nrs, source FROM ratings WHERE session_id = ?", (session_id,)
    ).fetchall()
    added = 0
    for t, nrs, source in ratings:
        check_nrs(nrs, "rating")
        check_source(source)
        if any(n == nrs and s == source and abs(t0 - t) <= RATING_T_SLACK_S for t0, n, s in have):
            continue  # the same rating, from the other record (journal or live)
        db.execute(
            "INSERT INTO ratings (session_id, t, nrs, source) VALUES (?, ?, ?, ?)",
            (session_id, float(t), nrs, source),
        )
        db.execute(
            "UPDATE sessions SET peak_nrs = max(coalesce(peak_nrs, ?), ?) WHERE id = ?",
            (nrs, nrs, session_id),
        )
        have.append((float(t), nrs, source))
        added += 1
    return added


def add_samples(db: sqlite3.Connection, session_id: str, samples: Sequence[Sample]) -> int:
    """Insert the samples in one statement (a second stored already is kept); how many were new."""
    before = db.total_changes
    db.executemany(
        # S608: the columns are this module's constant, the values are parameters.
        f"INSERT OR IGNORE INTO samples (session_id, {SAMPLE_COLUMNS})"  # noqa: S608
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            (
                session_id,
                s.elapsed_s,
                s.remaining_s,
                s.segment,
                s.intensity,
                s.applied,
                json.dumps(list(s.zones)),
                s.nrs,
                s.battery,
                s.temperature_c,
                int(s.stale),
                int(s.paused),
            )
            for s in samples
        ),
    )
    return db.total_changes - before


def sample_from_row(row: Sequence[Any]) -> Sample:
    return Sample(
        elapsed_s=row[0],
        remaining_s=row[1],
        segment=row[2],
        intensity=row[3],
        applied=row[4],
        zones=tuple(float(z) for z in json.loads(row[5])),
        nrs=row[6],
        battery=row[7],
        temperature_c=row[8],
        stale=bool(row[9]),
        paused=bool(row[10]),
    )


def facts_from_row(row: Sequence[Any], ratings: Iterable[Sequence[Any]]) -> SessionFacts:
    """A `SESSION_COLUMNS` row and its (t, nrs, source) ratings as SessionFacts."""
    return SessionFacts(
        id=row[0],
        started_at=from_text(row[1]),
        profile=row[2],
        device=row[3],
        ceiling=row[4],
        cap=row[5],
        planned_s=row[6],
        duration_s=row[7],
        stop_reason=row[8],
        before=row[9],
        after=row[10],
        morning=row[11],
        peak_rating=row[12],
        simulated=bool(row[13]),
        ratings=tuple((float(t), int(nrs), source) for t, nrs, source in ratings),
    )


def load_sessions(db: sqlite3.Connection, where: str, args: Sequence[Any]) -> list[SessionFacts]:
    """Sessions matching `where` (SQL over `sessions`), oldest first, with their ratings.

    `where` is SQL written in this package (values go in `args`, never into `where`).
    """
    rows = db.execute(
        f"SELECT {SESSION_COLUMNS} FROM sessions WHERE {where}"  # noqa: S608 - see docstring
        " ORDER BY sessions.started_at, sessions.rowid",
        args,
    ).fetchall()
    if not rows:
        return []
    by_session: dict[str, list[Sequence[Any]]] = {row[0]: [] for row in rows}
    # One query for every session's ratings: sessions(limit=None) may list hundreds.
    for session_id, *rating in db.execute(
        f"SELECT r.session_id, r.t, r.nrs, r.source FROM ratings AS r"  # noqa: S608 - as above
        f" JOIN sessions ON sessions.id = r.session_id WHERE {where} ORDER BY r.t, r.id",
        args,
    ):
        if session_id in by_session:
            by_session[session_id].append(rating)
    return [facts_from_row(row, by_session[row[0]]) for row in rows]
