"""The person's history store: what goes in comes back out, per person, from any thread."""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from firmware_bridge.errors import MassagerError
from firmware_bridge.journal import data_dir
from firmware_bridge.person.facts import Calibration, Screening, SessionFacts
from firmware_bridge.record import Sample
from firmware_bridge.store import Store, StoreError, UnknownSessionError, default_path

START = dt.datetime(2026, 3, 2, 19, 30, tzinfo=dt.UTC)


def sample(t: float, *, nrs: int | None = 2, paused: bool = False) -> Sample:
    return Sample(
        elapsed_s=t,
        remaining_s=900 - t,
        segment="warm-up" if t < 60 else "swell",
        intensity=0.25,
        applied=0.2,
        zones=(0.25, 0.125, 0.0),
        nrs=nrs,
        battery=87,
        temperature_c=31.5,
        stale=t == 3,
        paused=paused,
    )


def facts(session_id: str = "s1", *, at: dt.datetime = START, **changes: Any) -> SessionFacts:
    base = SessionFacts(
        id=session_id,
        started_at=at,
        profile="heel-spur",
        device="AA:BB:CC:DD:EE:01",
        ceiling=0.45,
        cap=4,
        planned_s=900.0,
    )
    return replace(base, **changes)


def count(store: Store, table: str) -> int:
    """Rows in `table`, read through a connection of its own (what is really on the disk)."""
    with sqlite3.connect(store.path) as db:
        return int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # noqa: S608


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "history.sqlite3") as opened:
        yield opened


def test_the_default_database_sits_beside_the_journal() -> None:
    with Store.open() as store:
        assert store.path == default_path() == data_dir() / "history.sqlite3"
        store.ensure_person("ana")
    assert Store.open().people() == ["ana"]


def test_store_errors_are_massager_errors() -> None:
    assert issubclass(StoreError, MassagerError)
    assert issubclass(UnknownSessionError, StoreError)


def test_people_are_added_once_in_order(store: Store) -> None:
    for name in ("ana", "ben", "ana"):
        store.ensure_person(name)
    store.add_calibration("cleo", Calibration("simulator", 0.3, START))  # writers add them too
    assert store.people() == ["ana", "ben", "cleo"]
    assert count(store, "people") == 3
    with pytest.raises(ValueError, match="non-empty"):
        store.ensure_person("  ")


def test_screenings_come_back_oldest_first_per_person(store: Store) -> None:
    later = Screening(
        START + dt.timedelta(days=30),
        {"wounds": False, "neuropathy": True},
        "interactive",
        clinician_cleared=True,
        sessions_at=12,
    )
    first = Screening(START, {"wounds": False, "neuropathy": False}, "file")
    store.add_screening("ana", later)
    store.add_screening("ana", first)
    store.add_screening("ben", Screening(START, {"wounds": True}, "none-apply"))
    assert store.screenings("ana") == [first, later]
    assert store.latest_screening("ana") == later
    assert store.latest_screening("nobody") is None
    assert store.screenings("nobody") == []
    assert "nobody" not in store.people()  # reading does not add anyone


def test_the_latest_calibration_per_device_wins(store: Store) -> None:
    left, right = "AA:BB:CC:DD:EE:01", "AA:BB:CC:DD:EE:02"
    old = Calibration(left, 0.5, START)
    new = Calibration(left, 0.4, START + dt.timedelta(days=3))
    other = Calibration(right, 0.6, START + dt.timedelta(days=1))
    for calibration in (new, other, old):  # stored out of order: time decides, not insertion
        store.add_calibration("ana", calibration)
    store.add_calibration("ben", Calibration(left, 0.9, START + dt.timedelta(days=9)))
    assert store.calibration("ana", left) == new
    assert store.calibration("ana", right) == other
    assert store.calibration("ana", "simulator") is None
    assert store.calibrations("ana") == [old, other, new]
    with pytest.raises(ValueError, match="0-1"):
        store.add_calibration("ana", Calibration(left, 1.5, START))


def test_a_session_reads_as_interrupted_until_it_is_finished(store: Store) -> None:
    store.begin_session("ana", facts(), "20260302T193000Z-heel-spur.jsonl")
    assert store.session("s1") == facts()  # stop_reason None: a killed run shows as this
    store.set_before("s1", 3)
    store.add_rating("s1", 30.0, 2, "person")
    store.add_rating("s1", 95.5, 5, "remote")
    store.add_rating("s1", 61.0, 3, "simulated")
    store.finish_session("s1", duration_s=898.5, stop_reason="completed", after=1)
    assert store.session("s1") == facts(
        duration_s=898.5,
        stop_reason="completed",
        before=3,
        after=1,
        peak_rating=5,  # not given: the highest rating recorded
        ratings=((30.0, 2, "person"), (61.0, 3, "simulated"), (95.5, 5, "remote")),
    )
    store.finish_session("s1", duration_s=898.5, stop_reason="completed", peak_rating=4)
    finished = store.session("s1")
    assert finished is not None
    assert (finished.peak_rating, finished.after) == (4, 1)  # given wins; after is kept
    assert store.session("nope") is None


def test_samples_round_trip_in_time_order_and_a_second_is_stored_once(store: Store) -> None:
    store.begin_session("ana", facts(), None)
    first = [sample(float(t), nrs=None if t % 2 else 3, paused=t == 5) for t in range(10, 0, -1)]
    store.add_samples("s1", first)
    store.add_samples("s1", [sample(9.0), sample(11.0)])  # 9 s again: already there
    assert store.samples("s1") == [*sorted(first, key=lambda s: s.elapsed_s), sample(11.0)]
    assert count(store, "samples") == 11
    assert store.samples("nope") == []


def test_writing_to_a_session_never_begun_is_refused(store: Store) -> None:
    writes: list[Callable[[], None]] = [
        lambda: store.add_samples("ghost", [sample(1.0)]),
        lambda: store.add_rating("ghost", 1.0, 2, "person"),
        lambda: store.finish_session("ghost", duration_s=1.0, stop_reason="completed"),
        lambda: store.set_before("ghost", 2),
    ]
    for write in writes:
        with pytest.raises(UnknownSessionError, match="ghost") as caught:
            write()
        assert caught.value.session_id == "ghost"
    assert count(store, "samples") + count(store, "ratings") == 0


@pytest.mark.parametrize("nrs", [-1, 11, 2.5, True])
def test_ratings_outside_0_to_10_are_refused(store: Store, nrs: object) -> None:
    store.begin_session("ana", facts(), None)
    with pytest.raises(ValueError, match="0-10"):
        store.add_rating("s1", 1.0, nrs, "person")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="0-10"):
        store.set_before("s1", nrs)  # type: ignore[arg-type]
    assert count(store, "ratings") == 0


def test_a_rating_source_must_be_known_and_times_must_be_aware(store: Store) -> None:
    store.begin_session("ana", facts(), None)
    with pytest.raises(ValueError, match="source"):
        store.add_rating("s1", 1.0, 2, "neighbour")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timezone"):
        store.begin_session("ana", facts("s2", at=dt.datetime(2026, 3, 2, 19, 30)), None)
    assert store.sessions("ana") == [facts()]


def test_sessions_are_per_person_oldest_first_and_limit_takes_the_latest(store: Store) -> None:
    for day in (3, 1, 2, 4):
        at = START + dt.timedelta(days=day)
        store.begin_session("ana", facts(f"a{day}", at=at), None)
        store.add_rating(f"a{day}", 10.0, day, "person")
    store.begin_session("ben", facts("b1"), None)
    assert [s.id for s in store.sessions("ana")] == ["a1", "a2", "a3", "a4"]
    assert [s.id for s in store.sessions("ana", limit=2)] == ["a3", "a4"]
    assert [s.ratings for s in store.sessions("ana", limit=2)] == [
        ((10.0, 3, "person"),),
        ((10.0, 4, "person"),),
    ]
    assert store.sessions("ana", limit=0) == []
    assert [s.id for s in store.sessions("ben")] == ["b1"]
    assert store.sessions("nobody") == []


def test_everything_survives_closing_and_opening_again(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite3"
    with Store.open(path) as store:
        store.begin_session("ana", facts(), "j.jsonl")
        store.add_samples("s1", [sample(float(t)) for t in range(5)])
        store.add_rating("s1", 2.0, 1, "person")
        store.add_screening("ana", Screening(START, {"wounds": False}, "file"))
    with Store.open(path) as store:
        assert len(store.samples("s1")) == 5
        assert store.session("s1") == facts(peak_rating=1, ratings=((2.0, 1, "person"),))
        assert len(store.screenings("ana")) == 1


def test_a_closed_store_says_so(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "h.sqlite3")
    store.close()
    store.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        store.people()


async def test_async_callers_use_worker_threads_concurrently(store: Store) -> None:
    """Many to_thread calls at once: the lock keeps each call's transaction whole."""
    store.begin_session("ana", facts(), None)
    store.ensure_person("ben")

    async def rate(worker: int) -> None:
        for i in range(25):
            await asyncio.to_thread(store.add_rating, "s1", worker * 100.0 + i, i % 11, "person")
            await asyncio.to_thread(store.add_samples, "s1", [sample(worker * 100.0 + i)])
            await asyncio.to_thread(store.sessions, "ana")

    async with asyncio.TaskGroup() as group:
        for worker in range(8):
            group.create_task(rate(worker), name=f"rater {worker}")
    assert (count(store, "ratings"), count(store, "samples")) == (200, 200)
    assert len((await asyncio.to_thread(store.session, "s1") or facts()).ratings) == 200


# --- next-morning check-ins -------------------------------------------------------------------


def local(day: int, hour: int) -> dt.datetime:
    """A time on the machine's own clock (check-ins count local calendar days)."""
    return dt.datetime(2026, 3, day, hour, 0).astimezone()  # local on purpose


def test_a_checkin_goes_to_last_evenings_session(store: Store) -> None:
    store.begin_session("ana", facts("mon", at=local(2, 20)), None)
    store.begin_session("ben", facts("ben-mon", at=local(2, 21)), None)
    got = store.record_checkin("ana", 2, local(3, 8))
    assert got is not None
    assert (got.id, got.morning) == ("mon", 2)
    stored = store.session("mon")
    assert stored is not None
    assert stored.morning == 2
    with sqlite3.connect(store.path) as db:  # when it was given is kept too
        at = db.execute("SELECT morning_at FROM sessions WHERE id = 'mon'").fetchone()[0]
    assert dt.datetime.fromisoformat(at) == local(3, 8)
    assert store.record_checkin("ana", 5, local(3, 9)) is None  # one check-in per session
    assert store.session("mon") == stored
    ben = store.session("ben-mon")
    assert ben is not None
    assert ben.morning is None


def test_a_checkin_never_lands_on_an_older_session(store: Store) -> None:
    store.begin_session("ana", facts("fri", at=local(6, 20)), None)
    store.begin_session("ana", facts("sat", at=local(7, 20)), None)
    assert store.record_checkin("ana", 1, local(9, 7)) is None  # Saturday is two days ago
    assert store.record_checkin("ana", 1, local(8, 7)) is not None  # the next morning
    assert store.record_checkin("ana", 1, local(8, 9)) is None  # not Friday's
    friday = store.session("fri")
    assert friday is not None
    assert friday.morning is None


def test_a_checkin_counts_the_same_day_and_skips_simulated_and_later_sessions(
    store: Store,
) -> None:
    assert store.record_checkin("ana", 1, local(2, 7)) is None  # no session yet
    store.begin_session("ana", facts("early", at=local(2, 6)), None)
    store.begin_session("ana", facts("sim", at=local(2, 21), simulated=True), None)
    store.begin_session("ana", facts("after", at=local(3, 9)), None)  # after the check-in
    got = store.record_checkin("ana", 4, local(2, 23))  # same calendar day as "early"
    assert got is not None
    assert got.id == "early"


def test_a_checkin_rating_must_be_0_to_10(store: Store) -> None:
    store.begin_session("ana", facts("mon", at=local(2, 20)), None)
    with pytest.raises(ValueError, match="0-10"):
        store.record_checkin("ana", 12, local(3, 8))
