"""A bleak backend over a bumble central: bleak's front end on any bumble HCI transport.

Production: `open_central("usb:0")` (a USB dongle, `serial:`, `tcp-client:`...) and pass the
`Device` it yields as `central=` to `BumbleBleakScanner` / `BumbleBleakClient` through bleak's
`backend=` seam. Tests reach the tier-2 simulator the same way. Import this module lazily: it
imports bumble.
"""

from firmware_bridge.transport.bumble_backend.central import open_central
from firmware_bridge.transport.bumble_backend.client import BumbleBleakClient
from firmware_bridge.transport.bumble_backend.convert import (
    ATT_HEADER,
    DEFAULT_MTU,
    OPERATION_TIMEOUT_S,
    BumbleDeviceDetails,
)
from firmware_bridge.transport.bumble_backend.scanner import BumbleBleakScanner

__all__ = [
    "ATT_HEADER",
    "DEFAULT_MTU",
    "OPERATION_TIMEOUT_S",
    "BumbleBleakClient",
    "BumbleBleakScanner",
    "BumbleDeviceDetails",
    "open_central",
]
