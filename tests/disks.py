"""Disks for tests: user-only modes under any umask, a real (or simulated) full disk, a
read-only directory, and a spy on fsync. Registered as a plugin in tests/conftest.py, so the
fixtures `umask`, `fresh_writer`, `disk` and `read_only_dir` are available to every test.

`SmallDisk` is a real full disk where the sandbox allows it: a 64 KiB tmpfs mounted for the
test (root on Linux). Elsewhere it simulates one: the writer thread's `os.write` returns a short
count and then raises ENOSPC, which is what the kernel does.
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


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    with read_only(tmp_path) as made:
        yield made
