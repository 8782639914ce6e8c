"""Numbered schema migrations: `PRAGMA user_version` is the schema number.

Migration N turns a database at schema N-1 into schema N; `MIGRATIONS[N - 1]` is it. They run
in order, in one transaction, when a store opens an older database. Add new ones at the end and
never edit a released one: databases made by it exist on people's disks.

Statements run one by one with `execute`: `executescript` would commit the open transaction
first, and a failed migration must leave the database exactly as it was.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path

from firmware_bridge.store.errors import StoreVersionError

Migration = Callable[[sqlite3.Connection], None]


def _run(db: sqlite3.Connection, statements: Sequence[str]) -> None:
    for statement in statements:
        db.execute(statement)


def _first_schema(db: sqlite3.Connection) -> None:
    """1: people, screenings, calibrations, sessions with their samples and ratings."""
    _run(db, SCHEMA_1)


def _checkin_time(db: sqlite3.Connection) -> None:
    """2: when a next-morning check-in was given (NULL for those recorded before)."""
    _run(db, ["ALTER TABLE sessions ADD COLUMN morning_at TEXT"])


def _journal_bookkeeping(db: sqlite3.Connection) -> None:
    """3: how much of each journal file was imported, so unchanged files are not read again."""
    _run(
        db,
        [
            "ALTER TABLE sessions ADD COLUMN journal_bytes INTEGER",
            "CREATE INDEX sessions_by_journal ON sessions(journal_file)",
        ],
    )


def _remembered_devices(db: sqlite3.Connection) -> None:
    """4: each person's massagers, the last used first: `massager run` tries it before others."""
    _run(
        db,
        [
            """CREATE TABLE devices (
                person_id INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
                address TEXT NOT NULL,
                name TEXT,
                description TEXT,
                last_used TEXT NOT NULL,
                PRIMARY KEY (person_id, address)
            )""",
        ],
    )


# Ratings are 0-10 (S6); CHECKs keep a bug elsewhere from storing what the rules cannot read.
SCHEMA_1 = (
    """CREATE TABLE people (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        created_at TEXT NOT NULL
    )""",
    """CREATE TABLE screenings (
        id INTEGER PRIMARY KEY,
        person_id INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
        at TEXT NOT NULL,
        answers TEXT NOT NULL,
        source TEXT NOT NULL,
        clinician_cleared INTEGER NOT NULL CHECK (clinician_cleared IN (0, 1)),
        sessions_at INTEGER NOT NULL CHECK (sessions_at >= 0)
    )""",
    "CREATE INDEX screenings_by_person ON screenings(person_id, at)",
    """CREATE TABLE calibrations (
        id INTEGER PRIMARY KEY,
        person_id INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
        device TEXT NOT NULL,
        ceiling REAL NOT NULL CHECK (ceiling BETWEEN 0 AND 1),
        at TEXT NOT NULL
    )""",
    "CREATE INDEX calibrations_by_device ON calibrations(person_id, device, at)",
    """CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        person_id INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
        started_at TEXT NOT NULL,
        profile TEXT NOT NULL,
        device TEXT NOT NULL,
        ceiling REAL NOT NULL CHECK (ceiling BETWEEN 0 AND 1),
        cap INTEGER NOT NULL CHECK (cap BETWEEN 0 AND 10),
        planned_s REAL NOT NULL,
        duration_s REAL,
        stop_reason TEXT,
        before_nrs INTEGER CHECK (before_nrs BETWEEN 0 AND 10),
        after_nrs INTEGER CHECK (after_nrs BETWEEN 0 AND 10),
        morning_nrs INTEGER CHECK (morning_nrs BETWEEN 0 AND 10),
        peak_nrs INTEGER CHECK (peak_nrs BETWEEN 0 AND 10),
        simulated INTEGER NOT NULL CHECK (simulated IN (0, 1)),
        journal_file TEXT
    )""",
    "CREATE INDEX sessions_by_person ON sessions(person_id, started_at)",
    # One row per second of session time; the key makes a second imported twice one row.
    """CREATE TABLE samples (
        session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
        elapsed_s REAL NOT NULL,
        remaining_s REAL NOT NULL,
        segment TEXT NOT NULL,
        intensity REAL NOT NULL,
        applied REAL NOT NULL,
        zones TEXT NOT NULL,
        nrs INTEGER,
        battery INTEGER,
        temperature_c REAL,
        stale INTEGER NOT NULL,
        paused INTEGER NOT NULL,
        PRIMARY KEY (session_id, elapsed_s)
    ) WITHOUT ROWID""",
    """CREATE TABLE ratings (
        id INTEGER PRIMARY KEY,
        session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
        t REAL NOT NULL,
        nrs INTEGER NOT NULL CHECK (nrs BETWEEN 0 AND 10),
        source TEXT NOT NULL CHECK (source IN ('person', 'remote', 'simulated'))
    )""",
    "CREATE INDEX ratings_by_session ON ratings(session_id, t)",
)

MIGRATIONS: tuple[Migration, ...] = (
    _first_schema,
    _checkin_time,
    _journal_bookkeeping,
    _remembered_devices,
)
LATEST = len(MIGRATIONS)


def schema_version(db: sqlite3.Connection) -> int:
    """The database's schema number (0 for a new, empty file)."""
    row = db.execute("PRAGMA user_version").fetchone()
    return int(row[0])


def migrate(db: sqlite3.Connection, path: Path, *, target: int = LATEST) -> int:
    """Bring the database to schema `target` in one transaction; returns the version found.

    `db` must be in autocommit mode (isolation_level=None). A schema newer than this code knows
    is refused (StoreVersionError), never downgraded: the newer program's data would be lost.
    Tests pass a lower `target` to build the databases older versions made.
    """
    found = _known(schema_version(db), path)
    if found >= target:
        return found
    # IMMEDIATE: take the write lock before reading the version, so two processes opening an
    # old database at once cannot both apply the same migration.
    db.execute("BEGIN IMMEDIATE")
    try:
        found = _known(schema_version(db), path)  # another process may have moved it on
        for step in MIGRATIONS[found:target]:
            step(db)
        if found < target:
            db.execute(f"PRAGMA user_version = {int(target)}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return found


def _known(found: int, path: Path) -> int:
    """`found`, if this code knows that schema."""
    if found > LATEST:
        raise StoreVersionError(
            f"{path} has history schema {found}, newer than this firmware-bridge knows "
            f"({LATEST}); upgrade firmware-bridge to use it",
            path=path,
            found=found,
            known=LATEST,
        )
    return found
