"""The time base both ends of a link run on: real time, or `speed` times faster.

It lives in the protocol package because the protocol's timing (watchdog, heartbeat, timers) is
defined in it and because it is the one module both the controller and the simulator may import:
one instance drives both ends of a `--speed` session.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    """Seconds on a session clock; `sleep` waits that many clock seconds."""

    @property
    def speed(self) -> float: ...

    def now(self) -> float: ...

    def real_seconds(self, seconds: float) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class ScaledClock:
    """A monotonic clock running `speed` times faster than real time (1.0 = real time)."""

    def __init__(self, speed: float = 1.0) -> None:
        if not speed > 0:
            raise ValueError(f"clock speed must be > 0, got {speed}")
        self._speed = float(speed)
        self._origin = time.monotonic()

    @property
    def speed(self) -> float:
        return self._speed

    def now(self) -> float:
        return (time.monotonic() - self._origin) * self._speed

    def real_seconds(self, seconds: float) -> float:
        """How long `seconds` on this clock take in real time."""
        return max(0.0, seconds) / self._speed

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(self.real_seconds(seconds))
