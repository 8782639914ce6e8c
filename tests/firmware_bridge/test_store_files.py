"""The database file: user-only under any umask, and a wrong file refused in one line, untouched."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import stat
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from firmware_bridge import journal
from firmware_bridge.store import (
    SCHEMA_VERSION,
    Store,
    StoreCorruptError,
    StoreError,
    StoreVersionError,
)
from tests.disks import mode
from tests.firmware_bridge.test_store import facts, sample

OPEN_DEADLINE_S = 5.0  # opening a wrong file answers at once; this only catches a hang


def populated(path: Path, sessions: int = 4) -> Path:
    """A database with a few sessions of 600 samples each (dozens of pages), closed."""
    with Store.open(path) as store:
        for n in range(sessions):
            store.begin_session("ana", facts(f"s{n}"), None)
            store.add_samples(f"s{n}", [sample(float(t)) for t in range(600)])
    return path


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def refused(path: Path) -> StoreError:
    """Open `path` on a thread with a deadline (an open that blocks fails the test)."""
    caught: list[BaseException] = []

    def attempt() -> None:
        try:
            Store.open(path).close()
        except BaseException as exc:
            caught.append(exc)

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(OPEN_DEADLINE_S)
    assert not worker.is_alive(), f"opening {path} hung"
    assert len(caught) == 1, "a wrong file was opened as if it were a database"
    assert isinstance(caught[0], StoreError), repr(caught[0])
    message = str(caught[0])
    assert str(path) in message
    assert "\n" not in message  # one line for the CLI, no traceback
    return caught[0]


# --- privacy ----------------------------------------------------------------------------------


def test_folder_database_and_wal_files_are_user_only(tmp_path: Path, umask: int) -> None:
    folder = tmp_path / "new" / "data"
    path = folder / "history.sqlite3"
    with Store.open(path) as store:
        store.begin_session("ana", facts(), None)  # writes go to the WAL while it is open
        store.add_samples("s1", [sample(1.0)])
        sidecars = [path.with_name(path.name + s) for s in ("-wal", "-shm")]
        assert all(p.exists() for p in sidecars)
        assert [mode(p) for p in (tmp_path / "new", folder)] == [0o700, 0o700]
        assert [mode(p) for p in (path, *sidecars)] == [0o600] * 3
        with sqlite3.connect(path) as db:
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert store._db is not None
        assert store._db.execute("PRAGMA foreign_keys").fetchone()[0] == 1


def test_an_older_world_readable_database_is_tightened(tmp_path: Path, umask: int) -> None:
    path = populated(tmp_path / "history.sqlite3", sessions=1)
    path.chmod(0o644)
    with Store.open(path) as store:
        assert len(store.samples("s0")) == 600
        assert mode(path) == 0o600


def test_the_platform_data_dir_is_tightened_a_chosen_one_left_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    platform, chosen = tmp_path / "platform", tmp_path / "chosen"
    for folder in (platform, chosen):
        folder.mkdir(mode=0o755)
        folder.chmod(0o755)
    monkeypatch.setattr(journal, "user_data_dir", lambda *_a, **_k: str(platform))
    monkeypatch.delenv(journal.ENV_DATA_DIR)
    Store.open().close()
    monkeypatch.setenv(journal.ENV_DATA_DIR, str(chosen))
    Store.open().close()
    assert (mode(platform), mode(chosen)) == (0o700, 0o755)
    assert (platform / "history.sqlite3").is_file()
    assert (chosen / "history.sqlite3").is_file()


# --- files that are not (whole) databases: refused, never changed -----------------------------


def random_bytes(path: Path) -> None:
    path.write_bytes(os.urandom(8192))


def short_file(path: Path) -> None:
    path.write_bytes(b"SQLite format 3\x00 and then nothing")


def truncated(path: Path) -> None:
    populated(path)
    size = path.stat().st_size
    assert size > 64 * 1024
    os.truncate(path, size // 2)


def bad_page_size(path: Path) -> None:
    populated(path, sessions=1)
    with path.open("r+b") as handle:
        handle.seek(16)
        handle.write(b"\x03\x00")  # 768: not a power of two


@pytest.mark.parametrize(
    ("make", "expected", "words"),
    [
        (random_bytes, StoreCorruptError, "is not an SQLite database"),
        (short_file, StoreCorruptError, "is not an SQLite database"),
        (truncated, StoreCorruptError, "is truncated"),
        (bad_page_size, StoreCorruptError, "damaged header"),
    ],
)
def test_a_damaged_file_is_refused_and_left_as_it_is(
    tmp_path: Path, make: Callable[[Path], None], expected: type[StoreError], words: str
) -> None:
    path = tmp_path / "history.sqlite3"
    make(path)
    before = digest(path)
    error = refused(path)
    assert isinstance(error, expected)
    assert words in str(error)
    assert "move it aside" in str(error)
    assert digest(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["history.sqlite3"]


def test_a_directory_in_its_place_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite3"
    path.mkdir()
    (path / "keep").write_text("mine")
    assert "is a directory" in str(refused(path))
    assert (path / "keep").read_text() == "mine"


def test_a_fifo_in_its_place_is_refused_without_blocking(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite3"
    os.mkfifo(path)
    assert "FIFO" in str(refused(path))
    assert stat.S_ISFIFO(os.lstat(path).st_mode)


def test_damage_found_after_opening_is_a_store_error_too(tmp_path: Path) -> None:
    """A page scribbled over inside the file: the header is fine, a query finds it."""
    path = populated(tmp_path / "history.sqlite3")
    with Store.open(path) as store:
        pages = [int(n) for (n,) in store._db.execute("SELECT rootpage FROM sqlite_master")]  # type: ignore[union-attr]
    page_size = 4096
    with path.open("r+b") as handle:
        for page in pages:
            if page > 1:  # leave the header page: the damage is inside
                handle.seek((page - 1) * page_size)
                handle.write(os.urandom(page_size))

    def read_everything(store: Store) -> None:
        for n in range(4):
            store.samples(f"s{n}")
            store.sessions("ana")

    with Store.open(path) as store:
        with pytest.raises(StoreCorruptError, match="is damaged") as caught:
            read_everything(store)
        assert "\n" not in str(caught.value)


def test_a_database_from_a_newer_version_is_refused_not_downgraded(tmp_path: Path) -> None:
    path = populated(tmp_path / "history.sqlite3", sessions=1)
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        db.execute("CREATE TABLE from_the_future (x)")
    before = digest(path)
    error = refused(path)
    assert isinstance(error, StoreVersionError)
    assert (error.found, error.known) == (SCHEMA_VERSION + 1, SCHEMA_VERSION)
    assert "upgrade firmware-bridge" in str(error)
    assert digest(path) == before
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1


def test_an_unwritable_folder_is_a_one_line_store_error(read_only_dir: Path) -> None:
    error = refused(read_only_dir / "history.sqlite3")
    assert "cannot create" in str(error)


def test_a_second_store_opens_while_the_first_has_unsaved_wal(tmp_path: Path) -> None:
    """The truncation check must not mistake a live WAL database for a damaged one."""
    path = tmp_path / "history.sqlite3"
    with Store.open(path) as first:
        for n in range(3):
            first.begin_session("ana", facts(f"s{n}"), None)
            first.add_samples(f"s{n}", [sample(float(t)) for t in range(900)])
        with Store.open(path) as second:
            assert [len(second.samples(f"s{n}")) for n in range(3)] == [900] * 3
