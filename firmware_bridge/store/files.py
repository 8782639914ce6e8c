"""The database file on disk: user-only modes, and refusing what is not a database.

Everything is checked with `os.stat` and a 100-byte read before SQLite opens the file: SQLite
would block forever opening a FIFO, and reports a truncated database only when a query reaches
a missing page, long after opening. A file that is wrong is reported, never deleted or replaced.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from firmware_bridge.durable import open_private, private_dir, tighten
from firmware_bridge.store.errors import StoreCorruptError, StoreError

HEADER_BYTES = 100  # SQLite's database header: magic, page size, page count
_MAGIC = b"SQLite format 3\x00"
_MIN_PAGE_BYTES = 512  # SQLite's page size is a power of two from 512 to 65536 bytes
_BIG_PAGE = 1  # the header stores 65536 as 1: it does not fit in its two bytes
# SQLite makes these beside the database with its permissions; we check them anyway.
SIDECAR_SUFFIXES = ("-wal", "-shm", "-journal")
MOVE_ASIDE = "move it aside (nothing was changed) and a new history starts"


def prepare(path: Path, *, own_folder: bool) -> None:
    """Make sure `path` can be given to SQLite: a private folder, a 0600 regular file.

    `own_folder`: the folder is the platform's data directory, ours to make user-only; a folder
    the user named may be shared, so it is only created (0700) when missing, never changed.

    Raises:
        StoreError: the folder or file cannot be made, or `path` is not a database file.
    """
    try:
        if own_folder or not path.parent.exists():
            private_dir(path.parent)
    except OSError as exc:
        raise StoreError(
            f"{path.parent}: cannot make the folder: {_reason(exc)}", path=path
        ) from exc
    try:
        info = os.stat(path)  # follows a symlink: the file it points to is what SQLite opens
    except FileNotFoundError:
        _create(path)
        return
    except OSError as exc:
        raise StoreError(f"{path}: cannot be read: {_reason(exc)}", path=path) from exc
    if not stat.S_ISREG(info.st_mode):
        raise StoreError(
            f"{path} is {_kind(info.st_mode)}, not a history database; {MOVE_ASIDE}", path=path
        )
    try:
        tighten(path)  # an older version's, or a copy made under umask 022
    except OSError as exc:
        raise StoreError(f"{path}: cannot make it user-only: {_reason(exc)}", path=path) from exc
    check_header(path)


def check_header(path: Path) -> None:
    """Raise StoreCorruptError unless `path` is empty or starts like a whole SQLite database."""
    try:
        # O_NONBLOCK: were it swapped for a FIFO since the stat, open must not wait for a writer.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            info = os.fstat(fd)
            head = os.read(fd, HEADER_BYTES) if stat.S_ISREG(info.st_mode) else b""
        finally:
            os.close(fd)
    except OSError as exc:
        raise StoreError(f"{path}: cannot be read: {_reason(exc)}", path=path) from exc
    if not stat.S_ISREG(info.st_mode):
        raise StoreError(f"{path} is {_kind(info.st_mode)}, not a history database", path=path)
    if info.st_size == 0:
        return  # a new database: SQLite writes the header with the first table
    if len(head) < HEADER_BYTES or not head.startswith(_MAGIC):
        raise StoreCorruptError(
            f"{path} is not an SQLite database (its first bytes are something else); {MOVE_ASIDE}",
            path=path,
        )
    page = int.from_bytes(head[16:18], "big")
    page = 65536 if page == _BIG_PAGE else page
    if page < _MIN_PAGE_BYTES or page & (page - 1):
        raise StoreCorruptError(
            f"{path} has a damaged header (page size {page}); {MOVE_ASIDE}", path=path
        )
    # The page count is trustworthy only when the change counter matches "version valid for"
    # (SQLite's file format, section 1.3.7); WAL changes live in -wal until a checkpoint.
    pages = int.from_bytes(head[28:32], "big")
    if pages and head[24:28] == head[92:96] and info.st_size < pages * page:
        raise StoreCorruptError(
            f"{path} is truncated ({info.st_size} of the {pages * page} bytes its header "
            f"records); {MOVE_ASIDE}",
            path=path,
        )


def tighten_sidecars(path: Path) -> None:
    """Make the -wal, -shm (and rollback -journal) files beside `path` user-only, if present."""
    for suffix in SIDECAR_SUFFIXES:
        with contextlib.suppress(FileNotFoundError):  # SQLite removes them on a clean close
            tighten(path.with_name(path.name + suffix))


def _create(path: Path) -> None:
    """A new, empty 0600 file whatever the umask: SQLite would make it 0644."""
    try:
        os.close(open_private(path, os.O_RDWR))
    except OSError as exc:
        raise StoreError(f"{path}: cannot create it: {_reason(exc)}", path=path) from exc


def _kind(mode: int) -> str:
    """What a non-regular file is, in words."""
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)
