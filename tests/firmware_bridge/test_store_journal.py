"""Completing the database from the journal: killed sessions appear, nothing is added twice."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from firmware_bridge.device import StopReason
from firmware_bridge.journal import Journal
from firmware_bridge.record import Event, SessionRecord
from firmware_bridge.store import Store
from tests.firmware_bridge.test_store import count, facts, sample

ROOT = Path(__file__).resolve().parents[2]
STARTED = "2026-03-02T19:30:00+00:00"
KILL_AFTER_SAMPLES = 5  # enough to show samples survive; the session has ~750 to go
RUN = ("run", "relax", "--sim", "--speed", "20", "--mqtt", "off")
CLI_DEADLINE_S = 30.0  # start-up plus five simulated seconds at --speed 20, with room to spare


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "history.sqlite3") as opened:
        yield opened


def journal(
    root: Path,
    *,
    header: dict[str, Any],
    seconds: int,
    stop: StopReason | None,
    profile: str = "relax",
) -> Journal:
    """A journal written by the real Journal class: closed with a summary unless `stop` is None.

    (Journal names files by the second and profile: two in one second need two profiles.)
    """
    log = Journal(profile, directory=root, header=header)
    log.event(Event("session_started", 0.05, {"profile": "relax", "limit_s": 600.0, "cap": 3}))
    for t in range(seconds):
        log.sample(sample(float(t)))
        if t == 2:
            log.event(Event("discomfort", 2.0, {"nrs": 2, "source": "person"}))
    if stop is None:
        assert log.flush()
        return log
    record = SessionRecord(profile="relax", cap=3, started_at=STARTED, stop_reason=stop)
    record.duration_s = float(seconds)
    record.add_rating(2.0, 2, "person")
    record.add_rating(4.004, 5, "remote")
    log.close(record, {"speed": 1.0, "session_id": header.get("session_id", "ignored")})
    return log


def test_an_old_journal_becomes_a_session_of_the_unknown_person(
    store: Store, tmp_path: Path
) -> None:
    log = journal(
        tmp_path, header={"device": {"address": "AA:01"}}, seconds=8, stop=StopReason.USER_STOP
    )
    assert store.import_journal("ana", tmp_path) == 1
    (session,) = store.sessions("ana")
    assert session.id == log.path.stem  # no session_id in older headers: the file name
    assert (session.profile, session.device, session.cap, session.ceiling) == (
        "relax",
        "AA:01",
        3,
        0.3,
    )
    assert (session.stop_reason, session.duration_s, session.planned_s) == ("user_stop", 8.0, 600.0)
    assert session.started_at == dt.datetime.fromisoformat(STARTED)
    assert session.ratings == ((2.0, 2, "person"), (4.0, 5, "remote"))  # the summary's
    assert session.peak_rating == 5
    assert not session.simulated
    assert store.samples(session.id) == [sample(float(t)) for t in range(8)]


def test_a_header_names_the_session_and_its_person(store: Store, tmp_path: Path) -> None:
    header = {"session_id": "abc123", "person": "ben", "simulated": True, "ceiling": 0.55}
    journal(tmp_path, header=header, seconds=3, stop=StopReason.COMPLETED)
    assert store.import_journal("ana", tmp_path) == 1
    assert store.people() == ["ben"]
    got = store.session("abc123")
    assert got is not None
    assert (got.device, got.simulated, got.ceiling) == ("simulator", True, 0.55)


def test_importing_twice_adds_nothing(store: Store, tmp_path: Path) -> None:
    journal(tmp_path, header={"session_id": "a"}, seconds=4, stop=StopReason.COMPLETED)
    journal(tmp_path, header={"session_id": "b"}, seconds=6, stop=None, profile="calm")
    assert store.import_journal("ana", tmp_path) == 2
    counts = [count(store, table) for table in ("sessions", "samples", "ratings", "people")]
    assert counts == [2, 10, 3, 1]  # a: two summary ratings; b: its discomfort event
    assert store.import_journal("ana", tmp_path) == 0
    assert [count(store, t) for t in ("sessions", "samples", "ratings", "people")] == counts


def test_a_killed_session_is_interrupted_with_what_the_journal_kept(
    store: Store, tmp_path: Path
) -> None:
    journal(tmp_path, header={"session_id": "k", "person": "ana"}, seconds=6, stop=None)
    assert store.import_journal("nobody", tmp_path) == 1
    got = store.session("k")
    assert got is not None
    assert (got.stop_reason, got.duration_s, got.peak_rating) == (None, 5.0, 2)
    assert got.ratings == ((2.0, 2, "person"),)  # from the discomfort event
    assert len(store.samples("k")) == 6


def test_a_session_begun_in_the_database_is_completed_from_its_journal(
    store: Store, tmp_path: Path
) -> None:
    """The process died after the journal's summary but before finish_session()."""
    log = journal(tmp_path, header={"session_id": "s1"}, seconds=10, stop=StopReason.COMPLETED)
    store.begin_session("ana", facts(), log.path.name)
    store.add_samples("s1", [sample(float(t)) for t in range(4)])  # the last batch was lost
    store.add_rating("s1", 4.004, 5, "remote")  # the journal's summary has it as 4.0
    assert store.import_journal("someone", tmp_path) == 1
    got = store.session("s1")
    assert got is not None
    assert (got.stop_reason, got.duration_s, got.profile) == ("completed", 10.0, "heel-spur")
    assert got.ratings == ((2.0, 2, "person"), (4.004, 5, "remote"))
    assert store.samples("s1") == [sample(float(t)) for t in range(10)]
    assert store.people() == ["ana"]  # the row's person, not the unknown one


def test_a_finished_session_is_left_as_the_database_has_it(store: Store, tmp_path: Path) -> None:
    log = journal(tmp_path, header={"session_id": "s1"}, seconds=5, stop=StopReason.TIMEOUT)
    store.begin_session("ana", facts(), log.path.name)
    store.finish_session("s1", duration_s=5.0, stop_reason="completed", after=1)
    assert store.import_journal("ana", tmp_path) == 0
    got = store.session("s1")
    assert got is not None
    assert (got.stop_reason, got.after, got.ratings) == ("completed", 1, ())
    assert count(store, "samples") == 0


def test_a_journal_that_grows_is_read_again(store: Store, tmp_path: Path) -> None:
    """A session still running in another process: what it writes later is added later."""
    log = journal(tmp_path, header={"session_id": "live"}, seconds=3, stop=None)
    assert store.import_journal("ana", tmp_path) == 1
    for t in range(3, 7):
        log.sample(sample(float(t)))
    assert log.flush()
    assert store.import_journal("ana", tmp_path) == 1
    assert len(store.samples("live")) == 7
    log.close(SessionRecord(profile="relax", cap=3, stop_reason=StopReason.COMPLETED))
    assert store.import_journal("ana", tmp_path) == 1
    got = store.session("live")
    assert got is not None
    assert got.stop_reason == "completed"


def test_begin_after_an_import_of_the_same_session_keeps_what_was_imported(
    store: Store, tmp_path: Path
) -> None:
    log = journal(tmp_path, header={"session_id": "s1", "person": "ana"}, seconds=4, stop=None)
    assert store.import_journal("ana", tmp_path) == 1
    store.begin_session("ana", facts(before=2), log.path.name)  # the import got there first
    got = store.session("s1")
    assert got is not None
    assert (got.ceiling, got.planned_s, got.before) == (0.45, 900.0, 2)  # what the run knew
    assert len(store.samples("s1")) == 4


def test_files_that_are_not_journals_are_skipped_without_blocking(
    store: Store, tmp_path: Path
) -> None:
    journal(tmp_path, header={"session_id": "good"}, seconds=2, stop=StopReason.COMPLETED)
    folder = tmp_path / "sessions"
    os.mkfifo(folder / "20260101T000000Z-fifo.jsonl")
    (folder / "20260101T000001Z-noise.jsonl").write_bytes(os.urandom(2000))
    (folder / "notes.txt").write_text("not a journal")
    torn = folder / "20260101T000002Z-torn.jsonl"
    lines = [
        {"kind": "header", "profile": "torn", "session_id": "torn"},
        {"kind": "sample", "elapsed_s": "soon"},  # malformed: skipped
        {"kind": "sample"},  # empty: skipped
    ]
    good = json.dumps({"kind": "sample", **asdict(sample(1.0))})
    torn.write_text("\n".join(json.dumps(x) for x in lines) + f"\n{good}\n" + good[:40])
    assert store.import_journal("ana", tmp_path) == 2
    assert [s.id for s in store.sessions("ana")] == ["torn", "good"]
    assert store.samples("torn") == [sample(1.0)]


# --- a real process, killed ---------------------------------------------------------------


def sample_lines(path: Path) -> int:
    """Whole sample lines in a journal (a last line without its newline is torn)."""
    whole = path.read_bytes().rsplit(b"\n", 1)[0]
    return sum(1 for line in whole.split(b"\n") if b'"kind":"sample"' in line)


@pytest.mark.sim_only
@pytest.mark.timeout(90)
def test_a_sigkilled_session_appears_with_its_samples(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = os.environ | {"MASSAGER_DATA_DIR": str(data)}
    process = subprocess.Popen(
        [sys.executable, "-m", "firmware_bridge", *RUN],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + CLI_DEADLINE_S
        files: list[Path] = []
        while time.monotonic() < deadline and process.poll() is None:
            files = sorted((data / "sessions").glob("*.jsonl"))
            if files and sample_lines(files[0]) >= KILL_AFTER_SAMPLES:
                break
            time.sleep(0.05)
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        assert files, "no journal appeared"
        os.kill(process.pid, signal.SIGKILL)
        assert process.wait(10) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        if process.stderr:
            process.stderr.close()
    (path,) = files
    written = sample_lines(path)
    header = json.loads(path.read_bytes().split(b"\n", 1)[0])
    assert "summary" not in path.read_text(errors="replace")  # killed before its end
    with Store.open(data / "history.sqlite3") as store:
        assert store.import_journal("carol", data) == 1
        session_id = header.get("session_id", path.stem)
        got = store.session(session_id)
        assert got is not None
        assert got.stop_reason is None  # interrupted
        assert got.profile == "relax"
        samples = store.samples(session_id)
        assert len(samples) == written >= KILL_AFTER_SAMPLES
        assert got.duration_s == samples[-1].elapsed_s
        assert [s.id for s in store.sessions(header.get("person", "carol"))] == [session_id]
        assert store.import_journal("carol", data) == 0


def test_a_summary_without_a_stop_reason_is_merged_once(store: Store, tmp_path: Path) -> None:
    """Idempotent by content, not only because an unchanged file is skipped."""
    log = journal(tmp_path, header={"session_id": "s1"}, seconds=3, stop=None)
    store.begin_session("ana", facts(), log.path.name)
    log.close(SessionRecord(profile="relax", cap=3, duration_s=3.0))  # ended, reason unknown
    assert store.import_journal("ana", tmp_path) == 1
    with log.path.open("a") as handle:
        handle.write("\n")  # a new size: the file is read again, and has nothing new
    assert store.import_journal("ana", tmp_path) == 0
    got = store.session("s1")
    assert got is not None
    assert (got.stop_reason, got.duration_s) == (None, 3.0)
