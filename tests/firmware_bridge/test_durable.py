"""The durable writer and the private-file helpers: user-only modes, failures counted, not spammed.

`SmallDisk` (also used by test_journal.py) is a real full disk where the sandbox allows it: a
64 KiB tmpfs mounted for the test (root on Linux). Elsewhere it simulates one: the writer
thread's `os.write` returns a short count and then raises ENOSPC, which is what the kernel does.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import stat
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from firmware_bridge import durable

UMASKS = [0o000, 0o022]
WRITER_THREAD = "durable-writer"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(params=UMASKS, ids=lambda m: f"umask{m:03o}")
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    try:
        yield int(request.param)
    finally:
        os.umask(old)


@pytest.fixture
def fresh_writer() -> durable.DurableWriter:
    """A writer of its own, so a test that hangs it does not hang the process's writer."""
    return durable.DurableWriter()


def warnings_about(caplog: pytest.LogCaptureFixture, path: Path) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and str(path) in r.getMessage()
    ]


# --- a small disk ---------------------------------------------------------------------------


def _mount(*args: str) -> bool:
    tool = shutil.which("mount")
    if tool is None or sys.platform != "linux" or os.geteuid() != 0:
        return False
    done = subprocess.run([tool, *args], capture_output=True, check=False)
    return done.returncode == 0


def _umount(where: Path) -> None:
    tool = shutil.which("umount")
    if tool is not None:
        subprocess.run([tool, "-l", str(where)], capture_output=True, check=False)


class SmallDisk:
    """A directory on a disk that `fill()` makes full (a real tmpfs, or a simulated one)."""

    def __init__(self, path: Path, kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
        self.path = path
        self.kind = kind
        self._full = False
        if kind == "simulated":
            real_write = os.write
            torn = {"done": False}

            def write(fd: int, data: bytes | memoryview) -> int:
                if not self._full or threading.current_thread().name != WRITER_THREAD:
                    return real_write(fd, data)
                if not torn["done"] and len(data) > 1:  # the kernel writes what fits first
                    torn["done"] = True
                    return real_write(fd, bytes(data[: len(data) // 2]))
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

            monkeypatch.setattr(os, "write", write)

    def fill(self) -> None:
        """Use up every free byte (on tmpfs: a filler file until ENOSPC)."""
        self._full = True
        if self.kind != "tmpfs":
            return
        fd = os.open(self.path / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            for chunk in (4096, 1):  # whole pages, then the last bytes
                with pytest.raises(OSError, match="No space") as full:  # noqa: PT012 - fill it
                    while True:
                        os.write(fd, b"\0" * chunk)
                assert full.value.errno == errno.ENOSPC
        finally:
            os.close(fd)


@contextlib.contextmanager
def small_disk(kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SmallDisk]:
    where = tmp_path / "disk"
    where.mkdir()
    if kind == "tmpfs":
        if not _mount("-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", str(where)):
            pytest.skip("mounting a tmpfs needs root on Linux; the simulated disk covers this")
        try:
            yield SmallDisk(where, kind, monkeypatch)
        finally:
            durable.writer().flush()
            _umount(where)
    else:
        yield SmallDisk(where, kind, monkeypatch)


@pytest.fixture(params=["tmpfs", "simulated"])
def disk(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[SmallDisk]:
    with small_disk(str(request.param), tmp_path, monkeypatch) as made:
        yield made


@contextlib.contextmanager
def read_only(tmp_path: Path) -> Iterator[Path]:
    """A directory that refuses new files: a read-only tmpfs as root, else mode 0500."""
    where = tmp_path / "ro"
    where.mkdir(mode=0o700)
    if os.geteuid() != 0:
        where.chmod(0o500)
        try:
            yield where
        finally:
            where.chmod(0o700)
        return
    if not _mount("-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", str(where)):
        pytest.skip("as root, permissions do not stop writes and a tmpfs cannot be mounted here")
    try:
        (where / "sessions").mkdir(mode=0o700)
        if not _mount("-o", "remount,ro", str(where)):
            pytest.skip("cannot remount the tmpfs read-only here")
        yield where
    finally:
        _umount(where)


# --- private directories and files ----------------------------------------------------------


def test_private_dir_creates_user_only_directories_whatever_the_umask(
    tmp_path: Path, umask: int
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o755)
    deep = shared / "a" / "b" / "c"
    assert durable.private_dir(deep) == deep
    assert [mode(p) for p in (shared / "a", shared / "a" / "b", deep)] == [0o700] * 3
    assert mode(shared) == 0o755  # an existing parent may be shared ($HOME): left alone


def test_private_dir_tightens_an_existing_directory(tmp_path: Path, umask: int) -> None:
    old = tmp_path / "sessions"
    old.mkdir()
    old.chmod(0o755)  # what older versions made
    durable.private_dir(old)
    assert mode(old) == 0o700
    old.chmod(0o500)  # tightening never adds a permission the owner took away
    durable.private_dir(old)
    assert mode(old) == 0o500
    old.chmod(0o700)


def test_private_files_are_user_only_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    fd = durable.open_private(tmp_path / "new", os.O_WRONLY)
    os.close(fd)
    assert mode(tmp_path / "new") == 0o600
    older = tmp_path / "older"
    older.write_text("kept")
    older.chmod(0o644)
    os.close(durable.open_private(older, os.O_RDONLY))
    assert mode(older) == 0o600
    assert older.read_text() == "kept"
    durable.replace_private(tmp_path / "cursor", b"7")
    assert mode(tmp_path / "cursor") == 0o600


def test_the_writer_creates_user_only_files_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    appended, replaced = tmp_path / "events.jsonl", tmp_path / "cursor"
    replaced.write_text("0")
    replaced.chmod(0o644)
    durable.writer().append(appended, "{}\n", sync=True)
    durable.writer().replace(replaced, "12")
    assert durable.writer().flush()
    assert (mode(appended), mode(replaced)) == (0o600, 0o600)
    assert replaced.read_text() == "12"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cursor", "events.jsonl"]  # no temp


def test_replace_happens_in_order_with_appends(tmp_path: Path) -> None:
    path = tmp_path / "box"
    w = durable.writer()
    w.append(path, "a\n", sync=False)
    w.replace(path, "")
    w.append(path, "b\n", sync=True)
    assert w.flush()
    assert path.read_text() == "b\n"


# --- failures: one warning per file per problem, then counted --------------------------------


def test_one_warning_per_file_per_problem_then_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, fresh_writer: durable.DurableWriter
) -> None:
    missing = tmp_path / "gone" / "a.jsonl"
    other = tmp_path / "gone" / "b.jsonl"
    for _ in range(50):
        fresh_writer.append(missing, "{}\n", sync=True)
    fresh_writer.append(other, "{}\n", sync=True)
    assert fresh_writer.flush()
    assert len(warnings_about(caplog, missing)) == 1
    assert len(warnings_about(caplog, other)) == 1
    assert fresh_writer.health(missing).lost == 50
    assert fresh_writer.health(missing).written == 0


@pytest.mark.timeout(20)
def test_a_fifo_does_not_hang_the_writer(
    tmp_path: Path, fresh_writer: durable.DurableWriter
) -> None:
    fifo = tmp_path / "outbox.jsonl"
    os.mkfifo(fifo)
    try:
        fresh_writer.append(fifo, "{}\n", sync=True)
        assert fresh_writer.flush(timeout=3)
        assert fresh_writer.health(fifo).lost == 1
    finally:  # the old writer blocked in open(): a reader releases it
        with contextlib.suppress(OSError):
            os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))


def test_the_writer_survives_a_bug_in_a_queued_call(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, fresh_writer: durable.DurableWriter
) -> None:
    def bug() -> None:
        raise RuntimeError("bug")

    fresh_writer.call(bug)
    fresh_writer.append(tmp_path / "after", "x\n", sync=False)
    assert fresh_writer.flush()
    assert (tmp_path / "after").read_text() == "x\n"
    assert any(r.levelno == logging.ERROR for r in caplog.records)


def test_a_full_disk_loses_whole_lines_never_part_of_one(
    disk: SmallDisk, caplog: pytest.LogCaptureFixture
) -> None:
    path = disk.path / "lines.jsonl"
    w = durable.writer()
    w.append(path, '{"n":-1}\n', sync=True)
    assert w.flush()
    disk.fill()
    for n in range(300):
        w.append(path, f'{{"n":{n},"pad":"{"x" * 200}"}}\n', sync=n % 10 == 0)
    assert w.flush()
    w.close(path)
    health = w.health(path)
    assert health.lost > 0
    assert health.written + health.lost == 301
    assert len(warnings_about(caplog, path)) == 1
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b""  # ends with a whole line ...
    assert all(line.startswith(b'{"n":') and line.endswith(b"}") for line in lines[:-1])


def test_fsync_runs_on_the_writer_thread_before_flush_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced = spy_fsync(monkeypatch)
    path = tmp_path / "x"
    durable.writer().append(path, "a\n", sync=True)
    assert durable.writer().flush()
    assert synced_sizes(synced, path) == [2]
    assert {thread for thread, _ in synced} == {WRITER_THREAD}


def spy_fsync(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, os.stat_result]]:
    """Record every fsync the durable module makes: which thread, which file, how big."""
    synced: list[tuple[str, os.stat_result]] = []
    real_fsync: Callable[[int], None] = os.fsync

    def recording_fsync(fd: int) -> None:
        real_fsync(fd)
        synced.append((threading.current_thread().name, os.fstat(fd)))

    monkeypatch.setattr(os, "fsync", recording_fsync)  # the module durable.py calls
    return synced


def synced_sizes(synced: list[tuple[str, os.stat_result]], path: Path) -> list[int]:
    """Sizes `path` had at each of its fsyncs."""
    now = path.stat()
    return [
        st.st_size
        for _, st in synced
        if (st.st_dev, st.st_ino) == (now.st_dev, now.st_ino) and stat.S_ISREG(st.st_mode)
    ]
