"""A person's history in SQLite: screenings, calibrations, sessions, samples, ratings, check-ins.

```python
from firmware_bridge.store import Store

with Store.open() as store:  # <data dir>/history.sqlite3, made user-only
    store.import_journal(person_for_unknown="alice")  # complete it from the journal
    for session in store.sessions("alice", limit=10):
        print(session.started_at, session.profile, session.stop_reason)
```

The methods block: from async code call them with `asyncio.to_thread`.
"""

from __future__ import annotations

from firmware_bridge.store.db import FILE_NAME, Store, default_path
from firmware_bridge.store.errors import (
    StoreCorruptError,
    StoreError,
    StoreVersionError,
    UnknownSessionError,
)
from firmware_bridge.store.migrations import LATEST as SCHEMA_VERSION

__all__ = [
    "FILE_NAME",
    "SCHEMA_VERSION",
    "Store",
    "StoreCorruptError",
    "StoreError",
    "StoreVersionError",
    "UnknownSessionError",
    "default_path",
]
