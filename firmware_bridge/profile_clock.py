"""Where a session is in its profile when the person may pause it. Pure: time is passed in.

A pause stops the profile's clock, not the session's: the profile picks up where it was left
on resume, while the session limit (S7) keeps counting real session time, so pausing can
never stretch a session past its limit.
"""

from __future__ import annotations


class ProfileClock:
    """Profile time = session time minus the time spent paused."""

    def __init__(self, started_at: float) -> None:
        self.started_at = started_at
        self.paused_s = 0.0  # completed pauses, session seconds
        self.paused_at: float | None = None  # start of the pause under way, if any

    @property
    def paused(self) -> bool:
        return self.paused_at is not None

    def at(self, now: float) -> float:
        """Seconds into the profile at session-clock time `now`."""
        current = 0.0 if self.paused_at is None else max(0.0, now - self.paused_at)
        return max(0.0, now - self.started_at - self.paused_s - current)

    def pause(self, now: float) -> None:
        if self.paused_at is None:
            self.paused_at = now

    def resume(self, now: float) -> float:
        """End the pause; returns how long it lasted (0 if there was none)."""
        if self.paused_at is None:
            return 0.0
        lasted = max(0.0, now - self.paused_at)
        self.paused_s += lasted
        self.paused_at = None
        return lasted
