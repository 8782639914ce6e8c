"""Durable appends off the event loop: one writer thread, in order, fsync where asked (S10).

The journal and the MQTT outbox must survive a crash, but an fsync can take from milliseconds
to seconds (SD cards, a busy disk); on the event loop that would delay a stop. They hand their
lines to this thread instead and the loop never touches the disk.

Everything we write is a person's health data (ratings, history), so everything we create is
user-only whatever the umask: `private_dir()` for directories (0700), `open_private()` and
`replace_private()` for files (0600). Other stores (SQLite, config files) use the same helpers.

A failing disk (full, read-only, gone) never raises into the caller: the writer logs one warning
per file per problem, then counts the lines it could not write; `health(path)` reports them.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import queue
import stat
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

_LOGGER = logging.getLogger(__name__)

PRIVATE_FILE_MODE = 0o600  # owner read/write: ratings and history are nobody else's business
PRIVATE_DIR_MODE = 0o700  # owner only: other users cannot even list the session names
_NOT_OURS = 0o077  # group and other permission bits


# --- private files and directories ------------------------------------------------------------


def tighten(path: Path) -> None:
    """Take group and other permissions off an existing file or directory that we own.

    Older versions created 0755 directories and 0644 files. Only bits are removed (a directory
    its owner made 0500 stays read-only), and someone else's file is left as it is.
    """
    st = os.stat(path)
    if st.st_uid == os.geteuid() and st.st_mode & _NOT_OURS:
        os.chmod(path, stat.S_IMODE(st.st_mode) & ~_NOT_OURS)


def private_dir(path: Path) -> Path:
    """Make sure `path` is a directory only its owner can use, and return it.

    Directories it creates (`path` and any missing parents) are 0700 whatever the umask; an
    existing `path` is tightened (see `tighten`). Existing parents are left alone: they may be
    shared (`$HOME`, `/tmp`, a `$MASSAGER_DATA_DIR` the user chose).

    Raises:
        OSError: the directory cannot be created or tightened.
    """
    missing: list[Path] = []
    probe = path
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    for folder in reversed(missing):
        try:
            os.mkdir(folder, PRIVATE_DIR_MODE)
        except FileExistsError:
            continue  # made by someone else meanwhile: only `path` itself is tightened
        os.chmod(folder, PRIVATE_DIR_MODE)  # mkdir's mode went through the umask
    tighten(path)
    if not path.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(path))
    return path


def open_private(path: Path, flags: int) -> int:
    """`os.open(path, flags)` for our own data: a new file is 0600, an existing one tightened.

    O_CREAT is implied. The file must be a regular file: a FIFO or a device under our name is
    refused without blocking (O_NONBLOCK), a symlink is not followed. Returns the descriptor.

    Raises:
        OSError: as `os.open`, or EINVAL for something that is not a regular file.
    """
    flags |= os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
    fd = os.open(path, flags, PRIVATE_FILE_MODE)
    try:
        st = os.fstat(fd)
        regular = stat.S_ISREG(st.st_mode)
        if regular and stat.S_IMODE(st.st_mode) != PRIVATE_FILE_MODE:
            os.fchmod(fd, PRIVATE_FILE_MODE)  # the umask, or an older version's 0644
    except BaseException:
        os.close(fd)
        raise
    if not regular:
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file", str(path))
    return fd


def replace_private(path: Path, data: bytes, *, sync: bool = True) -> None:
    """Atomically make `path` hold `data`, as a 0600 file (temp file, fsync, `os.replace`).

    A crash leaves either the old or the new content, never a mix. Blocking: call it off the
    event loop (the durable writer's `replace` does).

    Raises:
        OSError: nothing was replaced.
    """
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, PRIVATE_FILE_MODE)  # mkstemp's 0600 is also narrowed by the umask
        _write_all(fd, data)
        if sync:
            os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(temp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    if sync:
        _sync_dir(path.parent)


def _sync_dir(folder: Path) -> None:
    """Make a rename durable (best effort: some file systems cannot fsync a directory)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    """Write every byte of `data` (os.write may write less than asked, e.g. on a full disk)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


# --- the writer thread ------------------------------------------------------------------------


@dataclass
class FileHealth:
    """What became of the writes to one file (exact after `DurableWriter.flush()`)."""

    written: int = 0  # writes (lines) that reached the file
    lost: int = 0  # writes that did not: counted, logged once per problem
    problems: frozenset[int] = field(default_factory=frozenset)  # errnos warned about


class DurableWriter:
    """Writes files on a background thread, in order; `flush()` waits for everything queued.

    `append`, `replace`, `close`, `call` and `flush` are for any thread (the event loop).
    The `*_now` methods do the work and run on the writer thread only: use them inside `call`.
    """

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Callable[[], object]] = queue.SimpleQueue()
        self._fds: dict[Path, int] = {}
        self._health: dict[Path, FileHealth] = {}
        self._abandoned: set[Path] = set()
        self._lock = threading.Lock()  # guards _health for readers on other threads
        self._thread = threading.Thread(target=self._run, name="durable-writer", daemon=True)
        self._thread.start()

    def append(self, path: Path, text: str, *, sync: bool) -> None:
        """Append `text` (whole lines) to `path`, created 0600; fsync it if `sync`."""
        data = text.encode()
        self._queue.put(lambda: self.append_now(path, data, sync=sync))

    def replace(self, path: Path, text: str) -> None:
        """Overwrite `path` with `text` atomically, 0600 and fsynced, after earlier writes."""
        data = text.encode()
        self._queue.put(lambda: self._replace_now(path, data))

    def close(self, path: Path) -> None:
        """Close the writer's descriptor for `path` once earlier writes are done."""
        self._queue.put(lambda: self.close_now(path))

    def call(self, work: Callable[[], object]) -> None:
        """Run `work` on the writer thread after everything queued before it."""
        self._queue.put(work)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything queued so far is written (and fsynced where asked)."""
        done = threading.Event()
        self._queue.put(done.set)
        return done.wait(timeout)

    def health(self, path: Path) -> FileHealth:
        """A copy of `path`'s counts so far; exact after `flush()`."""
        with self._lock:
            return replace(self._health.get(path) or FileHealth())

    # --- on the writer thread ---

    def append_now(
        self, path: Path, data: bytes, *, sync: bool, best_effort: bool = False
    ) -> int | None:
        """Append `data` whole or not at all; the offset it starts at, or None if lost.

        A `best_effort` write (a spare copy) is neither counted nor warned about.
        """
        self._on_writer_thread()
        if path in self._abandoned:
            self._lost(path, None, best_effort=best_effort)
            return None
        start = -1
        try:
            fd = self._fds.get(path)
            if fd is None:
                fd = self._fds[path] = open_private(path, os.O_WRONLY | os.O_APPEND)
            start = os.lseek(fd, 0, os.SEEK_END)
            _write_all(fd, data)
            if sync:
                os.fsync(fd)
        except OSError as exc:
            if start >= 0:  # take back a torn line: truncating needs no free space
                with contextlib.suppress(OSError):
                    os.ftruncate(self._fds[path], start)
            self._lost(path, exc, best_effort=best_effort)
            return None
        self._count(path)
        return start

    def write_at_now(self, path: Path, offset: int, data: bytes, *, sync: bool) -> bool:
        """Overwrite bytes already in `path` at `offset` (no new space needed); False if lost."""
        self._on_writer_thread()
        if path in self._abandoned:
            self._lost(path, None)
            return False
        try:
            # A descriptor of its own: pwrite on an O_APPEND descriptor appends on Linux.
            fd = open_private(path, os.O_WRONLY)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.pwrite(fd, view, offset + len(data) - len(view)) :]
                if sync:
                    os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            self._lost(path, exc)
            return False
        self._count(path)
        return True

    def close_now(self, path: Path) -> None:
        self._on_writer_thread()
        if (fd := self._fds.pop(path, None)) is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def abandon_now(self, path: Path, exc: OSError | None) -> None:
        """`path` cannot be written at all: warn (once); later writes are only counted."""
        self._on_writer_thread()
        self._abandoned.add(path)
        self._lost(path, exc, count=False)

    def _replace_now(self, path: Path, data: bytes) -> None:
        self.close_now(path)  # an append descriptor would still point at the old file
        try:
            replace_private(path, data)
        except OSError as exc:
            self._lost(path, exc)
        else:
            self._count(path)

    def _lost(
        self,
        path: Path,
        exc: OSError | None,
        *,
        best_effort: bool = False,
        count: bool = True,
    ) -> None:
        """Count a write that failed; warn about each problem once per file."""
        if best_effort:
            _LOGGER.debug("spare copy not written to %s: %s", path, exc)
            return
        problem = -1 if exc is None else (exc.errno or 0)
        with self._lock:
            health = self._health.setdefault(path, FileHealth())
            health.lost += count
            first = exc is not None and problem not in health.problems
            health.problems |= {problem}
        if first:
            _LOGGER.warning(
                "cannot write %s: %s (further failures like this are counted, not logged)",
                path,
                exc,
            )

    def _count(self, path: Path) -> None:
        with self._lock:
            self._health.setdefault(path, FileHealth()).written += 1

    def _on_writer_thread(self) -> None:
        if threading.current_thread() is not self._thread:
            raise RuntimeError("DurableWriter *_now methods run on the writer thread only")

    def _run(self) -> None:
        while True:
            work = self._queue.get()
            try:
                work()
            except Exception:  # a bug in one job must not stop every later write
                _LOGGER.exception("durable writer: a queued job failed")


_writer: DurableWriter | None = None
_lock = threading.Lock()


def writer() -> DurableWriter:
    """The process's one durable writer (started on first use)."""
    global _writer  # noqa: PLW0603 - one thread per process, created lazily
    with _lock:
        if _writer is None:
            _writer = DurableWriter()
        return _writer


# --- reading back what we wrote (journals, outboxes): bounded, never blocking -----------------


def read_start(path: Path, max_bytes: int) -> tuple[bytes, bool]:
    """Up to `max_bytes` of whole lines from the start of `path`, and whether there was more.

    Never opens a FIFO or device (that could block the caller forever) and never follows a
    symlink. Raises OSError (EINVAL for anything that is not a regular file).
    """
    if not stat.S_ISREG(os.lstat(path).st_mode):  # a FIFO would block an open(); don't open it
        raise OSError(errno.EINVAL, "not a regular file", str(path))
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    with open(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # swapped since the lstat
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        data = handle.read(max_bytes + 1)
    if len(data) <= max_bytes:
        return data, False
    return data[: data.rfind(b"\n", 0, max_bytes) + 1], True


def json_object(raw: bytes) -> dict[str, Any] | None:
    """A line as a JSON object, or None (not UTF-8, not JSON, nested too deep, not an object)."""
    try:
        item = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None
    return item if isinstance(item, dict) else None
