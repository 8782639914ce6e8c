"""The store's errors: one line each, naming the database file and what to do about it."""

from __future__ import annotations

from pathlib import Path

from firmware_bridge.errors import MassagerError


class StoreError(MassagerError):
    """The history database cannot be used as it is; the message names the file and why."""

    def __init__(self, message: str, *, path: Path | None = None) -> None:
        super().__init__(message)
        self.path = path


class StoreCorruptError(StoreError):
    """The file is not a usable SQLite database (damaged, truncated, not a database at all).

    Nothing is deleted: move the file aside (or restore a backup) and a new history starts.
    """


class StoreVersionError(StoreError):
    """The database was written by a newer firmware-bridge; upgrade to use it (never downgraded)."""

    def __init__(self, message: str, *, path: Path, found: int, known: int) -> None:
        super().__init__(message, path=path)
        self.found = found
        self.known = known


class UnknownSessionError(StoreError, LookupError):
    """No session with this id is in the database (begin_session() was not called for it)."""

    def __init__(self, message: str, *, path: Path, session_id: str) -> None:
        super().__init__(message, path=path)
        self.session_id = session_id
