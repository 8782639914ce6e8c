"""The Transport seam: what the device link needs from a BLE connection."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class Transport(Protocol):
    """A connection to one massager's control and telemetry characteristics.

    Implementations deliver notifications and link loss through the three callbacks, from the
    event loop, never re-entrantly inside `write`.
    """

    name: str
    on_frame: Callable[[bytes], None] | None  # telemetry characteristic notification
    on_battery: Callable[[int], None] | None  # Battery Level notification, percent
    on_disconnect: Callable[[], None] | None  # link lost without our asking

    @property
    def is_connected(self) -> bool: ...

    @property
    def max_frame_size(self) -> int:
        """Largest write-without-response this connection carries in one packet."""
        ...

    @property
    def supports_write_with_response(self) -> bool: ...

    async def connect(self) -> None: ...

    async def disconnect(self) -> None: ...

    async def write(self, data: bytes, *, response: bool) -> None: ...
