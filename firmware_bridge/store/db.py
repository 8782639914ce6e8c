"""A person's history in one SQLite database: screenings, calibrations, sessions, check-ins.

The methods block (SQLite, fsync): async code calls them with `asyncio.to_thread`. One
connection per store, usable from any thread (`check_same_thread=False`) and serialised by a
lock: `to_thread` runs each call on whichever worker is free, and a lock is all one SQLite
connection needs for that. Opening per call would repeat the file checks, the pragmas and the
schema check on every rating; other processes (a second terminal) are WAL's business.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from firmware_bridge.journal import ENV_DATA_DIR, data_dir
from firmware_bridge.person.facts import Calibration, RatingSource, Screening, SessionFacts
from firmware_bridge.record import Sample
from firmware_bridge.store import files, journal_import, rows
from firmware_bridge.store.errors import StoreCorruptError, StoreError, UnknownSessionError
from firmware_bridge.store.migrations import migrate

_LOGGER = logging.getLogger(__name__)

FILE_NAME = "history.sqlite3"
# How long a call waits for another process's write (a `massager history` beside a running
# session) before giving up with "database is locked": writes here take milliseconds.
BUSY_TIMEOUT_S = 5.0
MORNING_AFTER = dt.timedelta(hours=6)  # a check-in this soon after the start is not "next morning"
_CORRUPT = frozenset({"SQLITE_CORRUPT", "SQLITE_NOTADB"})


def default_path() -> Path:
    """`<data dir>/history.sqlite3`, beside the journal ($MASSAGER_DATA_DIR moves both)."""
    return data_dir() / FILE_NAME


class Store:
    """One person-history database; `Store.open()` it, `close()` it (or use `with`).

    Every method blocks: from async code, `await asyncio.to_thread(store.add_rating, ...)`.
    """

    def __init__(self, db: sqlite3.Connection, path: Path) -> None:
        """Use `Store.open()`: it checks the file and brings the schema up to date."""
        self.path = path
        self._db: sqlite3.Connection | None = db
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: Path | None = None) -> Self:
        """Open (creating if new, migrating if older) the database at `path` or the default.

        Args:
            path: the database file; default `default_path()`.

        Raises:
            StoreError: the file cannot be used; its one-line message names it and why
                (StoreCorruptError: damaged or not a database; StoreVersionError: newer schema).
        """
        own_folder = path is None and not os.environ.get(ENV_DATA_DIR)
        path = path or default_path()
        files.prepare(path, own_folder=own_folder)
        try:
            db = sqlite3.connect(
                path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise _store_error(path, exc) from exc
        try:
            # WAL: a reader (history, report) never waits for a running session's writes.
            mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            db.execute("PRAGMA foreign_keys = ON")
            # FULL: screenings, calibrations and check-ins are nowhere else (not in the journal).
            db.execute("PRAGMA synchronous = FULL")
            found = migrate(db, path)
            files.tighten_sidecars(path)
        except sqlite3.Error as exc:
            db.close()
            raise _store_error(path, exc) from exc
        except OSError as exc:  # a -wal or -shm file that cannot be made user-only
            db.close()
            raise StoreError(f"{path}: {exc.strerror or exc}", path=path) from exc
        except BaseException:
            db.close()
            raise
        if mode != "wal":  # e.g. a file system without shared memory: still correct, slower
            _LOGGER.debug("history database %s: journal mode %s, not wal", path, mode)
        _LOGGER.debug("history database %s opened (schema %d on opening)", path, found)
        return cls(db, path)

    def close(self) -> None:
        """Close the database (idempotent); SQLite folds the WAL back into the file."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- people, screenings, calibrations ---

    def ensure_person(self, name: str) -> None:
        """Add the person if they are new (writing methods also do this for their person)."""
        with self._transaction() as db:
            rows.person_id(db, name)

    def people(self) -> list[str]:
        """Everyone with a history, in the order they were added."""
        with self._transaction(write=False) as db:
            return [name for (name,) in db.execute("SELECT name FROM people ORDER BY id")]

    def add_screening(self, person: str, screening: Screening) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO screenings (person_id, at, answers, source, clinician_cleared,"
                " sessions_at) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    rows.person_id(db, person),
                    rows.to_text(screening.at),
                    json.dumps(dict(screening.answers), sort_keys=True),
                    screening.source,
                    int(screening.clinician_cleared),
                    screening.sessions_at,
                ),
            )

    def screenings(self, person: str) -> list[Screening]:
        """The person's screenings, oldest first."""
        with self._transaction(write=False) as db:
            found = db.execute(
                "SELECT at, answers, source, clinician_cleared, sessions_at FROM screenings"
                " JOIN people ON people.id = person_id WHERE name = ? ORDER BY at, screenings.id",
                (person,),
            ).fetchall()
        return [
            Screening(
                at=rows.from_text(at),
                answers={str(k): bool(v) for k, v in json.loads(answers).items()},
                source=source,
                clinician_cleared=bool(cleared),
                sessions_at=sessions_at,
            )
            for at, answers, source, cleared, sessions_at in found
        ]

    def latest_screening(self, person: str) -> Screening | None:
        found = self.screenings(person)
        return found[-1] if found else None

    def add_calibration(self, person: str, calibration: Calibration) -> None:
        if not 0 <= calibration.ceiling <= 1:
            raise ValueError(f"a ceiling is a fraction 0-1, got {calibration.ceiling!r}")
        with self._transaction() as db:
            db.execute(
                "INSERT INTO calibrations (person_id, device, ceiling, at) VALUES (?, ?, ?, ?)",
                (
                    rows.person_id(db, person),
                    calibration.device,
                    calibration.ceiling,
                    rows.to_text(calibration.at),
                ),
            )

    def calibrations(self, person: str) -> list[Calibration]:
        """Every calibration of the person, all devices, oldest first (the latest one wins)."""
        return self._calibrations(person, None)

    def calibration(self, person: str, device: str) -> Calibration | None:
        """The person's ceiling on `device`: their latest calibration of it."""
        found = self._calibrations(person, device)
        return found[-1] if found else None

    def _calibrations(self, person: str, device: str | None) -> list[Calibration]:
        with self._transaction(write=False) as db:
            found = db.execute(
                "SELECT device, ceiling, at FROM calibrations JOIN people ON people.id = person_id"
                " WHERE name = ? AND (? IS NULL OR device = ?) ORDER BY at, calibrations.id",
                (person, device, device),
            ).fetchall()
        return [Calibration(device, ceiling, rows.from_text(at)) for device, ceiling, at in found]

    # --- remembered devices ---

    def remember_device(
        self,
        person: str,
        address: str,
        *,
        name: str | None = None,
        description: str | None = None,
        at: dt.datetime | None = None,
    ) -> None:
        """Record that `person` used the massager at `address` (now, or `at`)."""
        if not address.strip():
            raise ValueError("a device address must not be empty")
        with self._transaction() as db:
            db.execute(
                "INSERT INTO devices (person_id, address, name, description, last_used)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (person_id, address) DO UPDATE SET"
                " name = excluded.name, description = excluded.description,"
                " last_used = excluded.last_used",
                (
                    rows.person_id(db, person),
                    address.upper(),
                    name,
                    description,
                    rows.to_text(at or rows.now()),
                ),
            )

    def devices(self, person: str) -> list[rows.RememberedDevice]:
        """The person's massagers, the last used first."""
        with self._transaction(write=False) as db:
            found = db.execute(
                "SELECT address, devices.name, description, last_used FROM devices"
                " JOIN people ON people.id = person_id WHERE people.name = ?"
                " ORDER BY last_used DESC, address",
                (person,),
            ).fetchall()
        return [
            rows.RememberedDevice(address, name, description, rows.from_text(last_used))
            for address, name, description, last_used in found
        ]

    def forget_devices(self, person: str, address: str | None = None) -> int:
        """Forget one of the person's massagers (or all, `address=None`); how many went."""
        with self._transaction() as db:
            cursor = db.execute(
                "DELETE FROM devices WHERE person_id = (SELECT id FROM people WHERE name = ?)"
                " AND (? IS NULL OR address = ?)",
                (person, address and address.upper(), address and address.upper()),
            )
            return int(cursor.rowcount)

    # --- sessions ---

    def begin_session(self, person: str, facts: SessionFacts, journal_file: str | None) -> None:
        """Record a session as it starts: until `finish_session`, it reads as interrupted.

        `journal_file` is its journal's file name (how `import_journal` recognises it).
        """
        with self._transaction() as db:
            rows.insert_session(db, rows.person_id(db, person), facts, journal_file)

    def add_samples(self, session_id: str, samples: Sequence[Sample]) -> None:
        """Store per-second samples in one transaction (a second stored already is kept)."""
        with self._transaction() as db:
            self._known(db, session_id)
            rows.add_samples(db, session_id, samples)

    def add_rating(self, session_id: str, t: float, nrs: int, source: RatingSource) -> None:
        """A rating during the session at session time `t`; the peak rating follows it."""
        with self._transaction() as db:
            self._known(db, session_id)
            rows.add_ratings(db, session_id, [(t, nrs, source)])

    def finish_session(
        self,
        session_id: str,
        *,
        duration_s: float,
        stop_reason: str,
        peak_rating: int | None = None,
        after: int | None = None,
    ) -> None:
        """Record how it ended; `peak_rating` None keeps the highest rating recorded."""
        rows.check_nrs(peak_rating, "peak_rating")
        rows.check_nrs(after, "after")
        with self._transaction() as db:
            self._known(db, session_id)
            db.execute(
                "UPDATE sessions SET duration_s = ?, stop_reason = ?,"
                " peak_nrs = coalesce(?, peak_nrs), after_nrs = coalesce(?, after_nrs)"
                " WHERE id = ?",
                (duration_s, str(stop_reason), peak_rating, after, session_id),
            )

    def set_before(self, session_id: str, nrs: int) -> None:
        """How the foot felt before the session."""
        rows.check_nrs(nrs, "before")
        with self._transaction() as db:
            self._known(db, session_id)
            db.execute("UPDATE sessions SET before_nrs = ? WHERE id = ?", (nrs, session_id))

    def set_after(self, session_id: str, nrs: int) -> None:
        """How the foot felt right after the session."""
        rows.check_nrs(nrs, "after")
        with self._transaction() as db:
            self._known(db, session_id)
            db.execute("UPDATE sessions SET after_nrs = ? WHERE id = ?", (nrs, session_id))

    def record_checkin(self, person: str, nrs: int, at: dt.datetime) -> SessionFacts | None:
        """Record a next-morning rating given at `at`; the session it went to, or None.

        It goes to the person's latest real (not simulated) session started before `at`, if
        that started on the same local calendar day as `at` or the day before and has no
        check-in yet, and at least `MORNING_AFTER` (6 h) after it started. Never to an older
        session: a rating of how the foot feels now says nothing about a session days ago,
        and S12 must not read it as if it did.
        """
        rows.check_nrs(nrs, "check-in")
        given = rows.to_text(at)
        with self._transaction() as db:
            last = db.execute(
                "SELECT sessions.id, started_at, morning_nrs FROM sessions"
                " JOIN people ON people.id = person_id"
                " WHERE name = ? AND simulated = 0 AND started_at < ?"
                " ORDER BY started_at DESC, sessions.rowid DESC LIMIT 1",
                (person, given),
            ).fetchone()
            if last is None or last[2] is not None:
                return None
            started = rows.from_text(last[1])
            days = (at.astimezone().date() - started.astimezone().date()).days
            if days > 1 or at - started < MORNING_AFTER:  # a night in between, not a minute
                return None
            db.execute(
                "UPDATE sessions SET morning_nrs = ?, morning_at = ? WHERE id = ?",
                (nrs, given, last[0]),
            )
            return rows.load_sessions(db, "sessions.id = ?", (last[0],))[0]

    def sessions(self, person: str, limit: int | None = None) -> list[SessionFacts]:
        """The person's sessions (the latest `limit` if given), oldest first, with ratings."""
        with self._transaction(write=False) as db:
            return rows.load_sessions(
                db,
                "sessions.id IN (SELECT sessions.id FROM sessions"
                " JOIN people ON people.id = person_id WHERE name = ?"
                " ORDER BY started_at DESC, sessions.rowid DESC LIMIT ?)",
                (person, -1 if limit is None else max(0, limit)),  # LIMIT -1: no limit
            )

    def session(self, session_id: str) -> SessionFacts | None:
        with self._transaction(write=False) as db:
            found = rows.load_sessions(db, "sessions.id = ?", (session_id,))
        return found[0] if found else None

    def journal_file(self, session_id: str) -> str | None:
        """The name of the session's journal file (in `<data dir>/sessions`), if it has one."""
        with self._transaction(write=False) as db:
            row = db.execute(
                "SELECT journal_file FROM sessions WHERE id = ?", (session_id,)
            ).fetchone()
        return None if row is None or row[0] is None else str(row[0])

    def samples(self, session_id: str) -> list[Sample]:
        """The session's samples in time order."""
        with self._transaction(write=False) as db:
            found = db.execute(  # S608: constant columns, the id is a parameter
                f"SELECT {rows.SAMPLE_COLUMNS} FROM samples WHERE session_id = ?"  # noqa: S608
                " ORDER BY elapsed_s",
                (session_id,),
            ).fetchall()
        return [rows.sample_from_row(row) for row in found]

    def import_journal(self, person_for_unknown: str, directory: Path | None = None) -> int:
        """Complete the database from the journal; returns how many sessions it added or changed.

        Adds every journaled session the database lacks (a killed one with its samples and no
        stop reason), completes interrupted ones whose journal has their summary, and adds
        samples and ratings the journal has and the database lost. Idempotent. Files without
        `session_id`/`person` in their header (older versions) count as `person_for_unknown`'s,
        with the file name as the session id.
        """
        folder = (directory or data_dir()) / "sessions"
        with self._transaction(write=False) as db:
            done = journal_import.imported(db)
        changed = 0
        for path in journal_import.journal_files(folder):
            if journal_import.up_to_date(path, done):
                continue  # finished in the database, or read before and unchanged since
            found = journal_import.read(path, person_for_unknown)
            if found is None:
                continue  # unreadable: logged; the journal itself is left as it is
            with self._transaction() as db:  # one per file: a bad file spoils nothing else
                changed += journal_import.merge(db, found)
        return changed

    # --- plumbing ---

    @contextlib.contextmanager
    def _transaction(self, *, write: bool = True) -> Iterator[sqlite3.Connection]:
        """Hold the lock, run one transaction, and turn SQLite's errors into StoreError."""
        with self._lock:
            if self._db is None:
                raise StoreError(f"{self.path}: the store is closed", path=self.path)
            db = self._db
            try:
                # IMMEDIATE takes the write lock up front: no deadlock-prone lock upgrade.
                db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                try:
                    yield db
                    db.execute("COMMIT")
                except BaseException:
                    if db.in_transaction:  # also when COMMIT itself failed (busy, disk full)
                        with contextlib.suppress(sqlite3.Error):
                            db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise _store_error(self.path, exc) from exc

    def _known(self, db: sqlite3.Connection, session_id: str) -> None:
        if db.execute("SELECT 1 FROM sessions WHERE id = ?", (session_id,)).fetchone() is None:
            raise UnknownSessionError(
                f"{self.path}: no session {session_id!r}; begin_session() records one first",
                path=self.path,
                session_id=session_id,
            )


def _store_error(path: Path, exc: sqlite3.Error) -> StoreError:
    """SQLite's error as ours, one line naming the file."""
    name = getattr(exc, "sqlite_errorname", "")
    if name in _CORRUPT:
        return StoreCorruptError(f"{path} is damaged ({exc}); {files.MOVE_ASIDE}", path=path)
    if name in {"SQLITE_BUSY", "SQLITE_LOCKED"}:
        return StoreError(
            f"{path} is busy: another massager process kept it locked for over "
            f"{BUSY_TIMEOUT_S:g} s ({exc})",
            path=path,
        )
    return StoreError(f"{path}: {exc}", path=path)
