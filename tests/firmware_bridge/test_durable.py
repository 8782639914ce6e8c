"""The durable writer and the private-file helpers: user-only modes, failures counted, not spammed.

`SmallDisk` (also used by test_journal.py) is a real full disk where the sandbox allows it: a
64 KiB tmpfs mounted for the test (root on Linux). Elsewhere it simulates one: the writer
thread's `os.write` returns a short count and then raises ENOSPC, which is what the kernel does.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

import pytest

from firmware_bridge import durable
from tests.disks import (
    WRITER_THREAD,
    SmallDisk,
    mode,
    spy_fsync,
    synced_sizes,
    warnings_about,
)


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
