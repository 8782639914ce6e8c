"""`massager sim serve --record FILE`: one JSON line per change of the levels on the motors.

Each line is `{"ts": <Unix time, s>, "t": <device time, s>, "levels": [...], "cause": "..."}`
with the cause from `AppliedLevels.cause` (set, stop, watchdog, timer, button, reboot, ...);
the first line is the power-on state, cause `power_on`. Lines are handed to the kernel with
`os.write` as the change happens (no buffer in this process), so another process tailing the file
sees each change at once, and a killed simulator loses nothing it recorded.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from types import TracebackType

from firmware_bridge.protocol.timebase import Clock
from sim.firmware import AppliedLevels, Firmware

FILE_MODE = 0o600  # the record says when someone's massage ran: user-only, like the journal


class LevelRecorder:
    """Writes `firmware`'s applied-levels changes to `path`, one JSON line each."""

    def __init__(self, path: str | Path, firmware: Firmware, clock: Clock) -> None:
        """Create (or truncate) `path` user-only; raises OSError if it cannot be written."""
        self.path = Path(path)
        self._firmware = firmware
        self._clock = clock
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)
        self._fd: int | None = os.open(self.path, flags, FILE_MODE)
        os.fchmod(self._fd, FILE_MODE)  # an existing file keeps its mode on open: set it
        firmware.on_applied = self.record
        now = clock.now()
        self._write(now, firmware.levels, "power_on")

    def record(self, entry: AppliedLevels) -> None:
        """Firmware hook: one line for one change."""
        self._write(entry.t, entry.levels, entry.cause)

    def close(self) -> None:
        if self._firmware.on_applied == self.record:
            self._firmware.on_applied = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> LevelRecorder:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _write(self, t: float, levels: tuple[int, ...], cause: str) -> None:
        if self._fd is None:
            return
        # `t` is device time; the watchdog's zero is recorded at its expiry even when the event
        # loop only got to it later, so the wall time is derived from how long ago `t` was.
        ts = time.time() - self._clock.real_seconds(self._clock.now() - t)
        line = {"ts": round(ts, 6), "t": round(t, 6), "levels": list(levels), "cause": cause}
        os.write(self._fd, (json.dumps(line) + "\n").encode())


__all__ = ["FILE_MODE", "LevelRecorder"]
