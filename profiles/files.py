"""Reading small user files (profiles, config) safely: bounded, never blocking, one-line errors."""

from __future__ import annotations

import os
import stat
import tomllib
from pathlib import Path
from typing import Any

# Opening a FIFO for reading waits for a writer and a tty may wait for carrier; non-blocking
# returns at once so fstat can refuse them. Windows has no O_NONBLOCK and no FIFOs to wait on.
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
READ_CHUNK_BYTES = 64 * 1024  # bytes per read(); the caller's max_bytes bounds the total
_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a named pipe"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


class InputFileError(ValueError):
    """A user file could not be read; the message is one line: `path: problem`."""

    def __init__(self, path: str | Path, problem: str) -> None:
        shown = os.fspath(path)
        if not shown.isprintable():  # a newline in a file name must not split the line
            shown = repr(shown)
        self.path = shown
        self.problem = problem
        super().__init__(f"{shown}: {problem}")


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "another kind of file")


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    remaining = limit
    while remaining > 0:
        chunk = os.read(fd, min(remaining, READ_CHUNK_BYTES))
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def read_text_file(path: str | Path, *, max_bytes: int, what: str) -> str:
    """Read a UTF-8 text file of at most `max_bytes`, refusing FIFOs, devices and directories.

    Args:
        path: the file to read.
        max_bytes: the largest size accepted, in bytes.
        what: what the file should be, with its article, for messages ("a profile").

    Raises:
        InputFileError: one line naming the file and the problem (missing, unreadable, not a
            regular file, too large, not UTF-8).
    """
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        raise InputFileError(path, f"cannot open: {exc.strerror or exc}") from exc
    except ValueError as exc:  # an embedded NUL byte or an unencodable name
        raise InputFileError(path, f"cannot open: {exc}") from exc
    try:
        # Checked on the open descriptor, not the name, so the file cannot be swapped in between.
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise InputFileError(path, f"not a regular file (it is {_kind(info.st_mode)})")
        if info.st_size > max_bytes:
            raise InputFileError(
                path, f"file is {info.st_size:,} bytes; {what} is at most {max_bytes:,}"
            )
        # st_size is 0 for /proc-like files and a file can grow after fstat: read one byte over.
        raw = _read_at_most(fd, max_bytes + 1)
    except OSError as exc:
        raise InputFileError(path, f"cannot read: {exc.strerror or exc}") from exc
    finally:
        os.close(fd)
    if len(raw) > max_bytes:
        raise InputFileError(
            path, f"file is over {max_bytes:,} bytes; {what} is at most {max_bytes:,}"
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputFileError(path, f"not UTF-8 text (byte {exc.start})") from exc


# Real profiles nest a few levels (profile, segments, repeat, segments, zones); tomllib recurses per
# level and runs out of stack a few hundred down, so only a crafted file gets there. That is caught
# as RecursionError rather than pre-checked in the text: tomllib is pure Python and keeps no state
# between calls, so unwinding leaves nothing broken, while counting brackets correctly would mean
# re-lexing TOML strings and comments (`label = "[[[["`). The cause keeps no traceback: a thousand
# frames tell the person nothing and would print as thousands of lines wherever it is logged.
NESTED_TOO_DEEPLY = "nested too deeply (arrays or tables hundreds of levels inside each other)"


def parse_toml(text: str) -> dict[str, Any]:
    """TOML text as a dict; every failure a ValueError whose message is one short problem."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"not valid TOML: {exc}") from exc
    except RecursionError as exc:
        raise ValueError(NESTED_TOO_DEEPLY) from exc.with_traceback(None)
    except ValueError as exc:  # tomllib lets int()'s 4,300-digit limit out as a bare ValueError
        raise ValueError("not valid TOML: a number too long to read") from exc
