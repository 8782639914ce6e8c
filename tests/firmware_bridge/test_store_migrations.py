"""Every migration, run on a database the previous schema made, keeps its rows and works.

Each case builds a database at schema N-1 with the migrations up to N-1, writes rows the way
the code of that schema did (plain SQL: the old code is gone), then opens it with today's
`Store` and reads them back. A new migration without a case fails `test_every_migration_...`.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from firmware_bridge.journal import Journal
from firmware_bridge.person.facts import Calibration, Screening, SessionFacts
from firmware_bridge.store import SCHEMA_VERSION, Store, journal_import, migrations
from tests.firmware_bridge.test_store import START, sample

T0 = "2026-03-02T19:30:00.000000+00:00"  # how schema 1 stores times
FILLED = SessionFacts(
    id="done",
    started_at=START,
    profile="heel-spur",
    device="AA:BB:CC:DD:EE:01",
    ceiling=0.45,
    cap=4,
    planned_s=900.0,
    duration_s=900.0,
    stop_reason="completed",
    before=3,
    after=2,
    morning=2,
    peak_rating=4,
    ratings=((10.0, 4, "person"), (20.0, 1, "remote")),
)


def at_version(path: Path, version: int) -> sqlite3.Connection:
    """A database at schema `version`, made by the migrations up to it."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA foreign_keys = ON")
    migrations.migrate(db, path, target=version)
    assert migrations.schema_version(db) == version
    return db


def columns(db: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in db.execute(f"PRAGMA table_info({table})")]


def indexes(db: sqlite3.Connection) -> set[str]:
    return {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type='index'")}


def write_schema_1_rows(db: sqlite3.Connection) -> None:
    """A person with a screening, a calibration, a finished and an interrupted session."""
    db.execute("INSERT INTO people (id, name, created_at) VALUES (1, 'ana', ?)", (T0,))
    db.execute(
        "INSERT INTO screenings (person_id, at, answers, source, clinician_cleared, sessions_at)"
        " VALUES (1, ?, ?, 'interactive', 1, 0)",
        (T0, json.dumps({"neuropathy": True, "wounds": False})),
    )
    db.execute(
        "INSERT INTO calibrations (person_id, device, ceiling, at)"
        " VALUES (1, 'AA:BB:CC:DD:EE:01', 0.45, ?)",
        (T0,),
    )
    done: tuple[object, ...] = ("done", 1, T0, "heel-spur", "AA:BB:CC:DD:EE:01", 0.45, 4)
    done += (900.0, 900.0, "completed", 3, 2, 2, 4, 0, "20260302T193000Z-heel-spur.jsonl")
    killed: tuple[object, ...] = ("killed", 1, "2026-03-03T19:30:00.000000+00:00", "relax")
    killed += ("simulator", 0.4, 4, 900.0, None, None, None, None, None, None, 1)
    killed += ("20260303T193000Z-relax.jsonl",)
    db.executemany(
        "INSERT INTO sessions (id, person_id, started_at, profile, device, ceiling, cap,"
        " planned_s, duration_s, stop_reason, before_nrs, after_nrs, morning_nrs, peak_nrs,"
        " simulated, journal_file) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [done, killed],
    )
    for session_id in ("done", "killed"):
        for t in range(3):
            db.execute(
                "INSERT INTO samples VALUES (?, ?, ?, 'warm-up', 0.25, 0.2, '[0.25,0.125,0.0]',"
                " 2, 87, 31.5, 0, 0)",
                (session_id, float(t), 900.0 - t),
            )
    db.execute(
        "INSERT INTO ratings (session_id, t, nrs, source) VALUES ('done', 10.0, 4, 'person')"
    )
    db.execute(
        "INSERT INTO ratings (session_id, t, nrs, source) VALUES ('done', 20.0, 1, 'remote')"
    )


def schema_1_rows_survived(store: Store) -> None:
    assert store.people() == ["ana"]
    assert store.screenings("ana") == [
        Screening(START, {"neuropathy": True, "wounds": False}, "interactive", True, 0)
    ]
    assert store.calibration("ana", "AA:BB:CC:DD:EE:01") == Calibration(
        "AA:BB:CC:DD:EE:01", 0.45, START
    )
    done, killed = store.sessions("ana")
    assert done == FILLED
    assert (killed.id, killed.stop_reason, killed.simulated) == ("killed", None, True)
    assert [s.elapsed_s for s in store.samples("killed")] == [0.0, 1.0, 2.0]
    assert store.samples("done") == [sample(float(t), nrs=2) for t in range(3)]


# --- one case per migration -------------------------------------------------------------------


def case_1(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """From an empty file (schema 0) to the first schema: everything can be written."""
    at_version(path, 0).close()
    db = at_version(path, 1)
    assert {"people", "screenings", "calibrations", "sessions", "samples", "ratings"} <= {
        name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")
    }
    write_schema_1_rows(db)
    db.close()
    with Store.open(path) as store:
        schema_1_rows_survived(store)


def case_2(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """2 adds when a check-in was given: old check-ins keep their rating, new ones get a time."""
    db = at_version(path, 1)
    write_schema_1_rows(db)
    migrations.migrate(db, path, target=2)
    assert "morning_at" in columns(db, "sessions")
    assert db.execute("SELECT morning_at FROM sessions WHERE id = 'done'").fetchone() == (None,)
    db.close()
    with Store.open(path) as store:
        schema_1_rows_survived(store)
        evening = dt.datetime.now(dt.UTC) - dt.timedelta(
            hours=10
        )  # last evening: a night before the check-in
        store.begin_session(
            "ana", replace(FILLED, id="new", started_at=evening, morning=None), None
        )
        at = dt.datetime.now(dt.UTC)
        got = store.record_checkin("ana", 3, at)
        assert got is not None
        assert (got.id, got.morning) == ("new", 3)
    with sqlite3.connect(path) as raw:
        stored = raw.execute("SELECT morning_at FROM sessions WHERE id = 'new'").fetchone()[0]
    assert dt.datetime.fromisoformat(stored) == at


def case_3(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """3 remembers how much of each journal was imported: an unchanged file is read once."""
    db = at_version(path, 2)
    write_schema_1_rows(db)
    db.execute("UPDATE sessions SET morning_at = ? WHERE id = 'done'", (T0,))
    migrations.migrate(db, path, target=3)
    assert "journal_bytes" in columns(db, "sessions")
    assert "sessions_by_journal" in indexes(db)
    db.close()
    # The interrupted session's journal: header and five samples, never closed.
    root = path.parent / "data"
    log = Journal("relax", directory=root, header={"session_id": "killed", "person": "ana"})
    for t in range(5):
        log.sample(sample(float(t), nrs=2))
    assert log.flush()
    log.path.rename(log.path.with_name("20260303T193000Z-relax.jsonl"))
    reads: list[str] = []
    real_read = journal_import.read

    def counted(found: Path, person: str) -> journal_import.JournaledSession | None:
        reads.append(found.name)
        return real_read(found, person)

    monkeypatch.setattr(journal_import, "read", counted)
    with Store.open(path) as store:
        schema_1_rows_survived(store)
        assert store.import_journal("ana", root) == 1  # seconds 3 and 4 were missing
        assert len(store.samples("killed")) == 5
        assert store.import_journal("ana", root) == 0
    assert reads == ["20260303T193000Z-relax.jsonl"]  # its size is recorded: read once


def case_4(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """4 remembers each person's massagers: none at first, then the last used first."""
    db = at_version(path, 3)
    write_schema_1_rows(db)
    migrations.migrate(db, path, target=4)
    assert columns(db, "devices") == ["person_id", "address", "name", "description", "last_used"]
    db.close()
    with Store.open(path) as store:
        schema_1_rows_survived(store)
        assert store.devices("ana") == []
        early = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
        store.remember_device("ana", "aa:bb:cc:dd:ee:01", name="Foot", at=early)
        store.remember_device("ana", "AA:BB:CC:DD:EE:02", description="single-byte")
        store.remember_device("bo", "AA:BB:CC:DD:EE:03")
        got = store.devices("ana")
        assert [(d.address, d.name, d.description) for d in got] == [
            ("AA:BB:CC:DD:EE:02", None, "single-byte"),
            ("AA:BB:CC:DD:EE:01", "Foot", None),
        ]
        store.remember_device("ana", "AA:BB:CC:DD:EE:01", name="Foot")  # used again: first
        assert store.devices("ana")[0].address == "AA:BB:CC:DD:EE:01"
        assert store.forget_devices("ana", "aa:bb:cc:dd:ee:02") == 1
        assert store.forget_devices("ana") == 1
        assert store.devices("ana") == []
        assert [d.address for d in store.devices("bo")] == ["AA:BB:CC:DD:EE:03"]


CASES: dict[int, Callable[[Path, pytest.MonkeyPatch], None]] = {
    1: case_1,
    2: case_2,
    3: case_3,
    4: case_4,
}


def test_every_migration_has_a_case() -> None:
    assert (
        sorted(CASES)
        == list(range(1, SCHEMA_VERSION + 1))
        == list(range(1, len(migrations.MIGRATIONS) + 1))
    )


@pytest.mark.parametrize("version", sorted(CASES))
def test_a_migration_works_on_the_previous_schemas_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, version: int
) -> None:
    path = tmp_path / "history.sqlite3"
    CASES[version](path, monkeypatch)
    with sqlite3.connect(path) as db:
        assert migrations.schema_version(db) == SCHEMA_VERSION
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert db.execute("PRAGMA foreign_key_check").fetchall() == []


def test_a_failing_migration_leaves_the_database_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "history.sqlite3"
    db = at_version(path, SCHEMA_VERSION)
    write_schema_1_rows(db)
    db.close()

    def broken(db: sqlite3.Connection) -> None:
        db.execute("ALTER TABLE sessions ADD COLUMN half_done TEXT")
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(migrations, "MIGRATIONS", (*migrations.MIGRATIONS, broken))
    monkeypatch.setattr(migrations, "LATEST", SCHEMA_VERSION + 1)
    db = sqlite3.connect(path, isolation_level=None)
    with pytest.raises(sqlite3.OperationalError):
        migrations.migrate(db, path, target=SCHEMA_VERSION + 1)
    assert migrations.schema_version(db) == SCHEMA_VERSION
    assert "half_done" not in columns(db, "sessions")
    assert not db.in_transaction
    db.close()
    monkeypatch.undo()
    with Store.open(path) as store:
        schema_1_rows_survived(store)


def test_opening_an_up_to_date_database_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite3"
    Store.open(path).close()
    with sqlite3.connect(path) as db:
        schema = db.execute("SELECT sql FROM sqlite_master ORDER BY name").fetchall()
    Store.open(path).close()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT sql FROM sqlite_master ORDER BY name").fetchall() == schema
        assert migrations.schema_version(db) == SCHEMA_VERSION
