"""firmware-bridge: a safe, observable asyncio controller for BLE vibrating foot massagers.

Open a massager, play a session, read what happened:

```python
import asyncio

import firmware_bridge


async def main() -> None:
    async with firmware_bridge.simulated(speed=60) as massager:
        record = await massager.play("relax", cap=3)
    print(record.stop_reason, f"{record.max_intensity:.0%}")


asyncio.run(main())
```

What `__all__` lists is the public API; the modules behind it are internal and may change.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    __version__: str
    from firmware_bridge.device import (
        DeviceLimits,
        LinkEvent,
        LinkState,
        MassagerLink,
        ReconnectPolicy,
        StopReason,
        StopResult,
    )
    from firmware_bridge.errors import (
        BluetoothUnavailableError,
        BrokerSetupError,
        ConnectionLostError,
        DeviceConnectionError,
        DeviceIdInUseError,
        DeviceNotFoundError,
        DeviceRejectedError,
        DeviceTimeoutError,
        MassagerError,
        ProtocolError,
        SafetyLimitError,
    )
    from firmware_bridge.massager import Massager, connect, load_profile, read_history, simulated
    from firmware_bridge.record import Event, Sample, SessionRecord
    from firmware_bridge.runner import Session
    from firmware_bridge.safety import Decision, SafetySettings
    from firmware_bridge.transport import BleakTransport, Transport, find_massager
    from profiles.loader import ProfileError
    from profiles.model import Profile

# Where each public name lives. Imported on first use, so `import firmware_bridge` (and the
# CLI's shell completion, which imports the package at every Tab) costs no bleak or pydantic.
_HOMES = {
    "firmware_bridge.device": (
        "DeviceLimits LinkEvent LinkState MassagerLink ReconnectPolicy StopReason StopResult"
    ),
    "firmware_bridge.errors": (
        "BluetoothUnavailableError BrokerSetupError ConnectionLostError DeviceConnectionError "
        "DeviceIdInUseError DeviceNotFoundError DeviceRejectedError DeviceTimeoutError "
        "MassagerError ProtocolError SafetyLimitError"
    ),
    "firmware_bridge.massager": "Massager connect load_profile read_history simulated",
    "firmware_bridge.record": "Event Sample SessionRecord",
    "firmware_bridge.runner": "Session",
    "firmware_bridge.safety": "Decision SafetySettings",
    "firmware_bridge.transport": "BleakTransport Transport find_massager",
    "profiles.loader": "ProfileError",
    "profiles.model": "Profile",
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names.split()}

logging.getLogger(__name__).addHandler(logging.NullHandler())


if not TYPE_CHECKING:  # type checkers see the imports above: a misspelt name is an error

    def __getattr__(name: str) -> Any:
        """Import a public name on first use (PEP 562)."""
        if name == "__version__":  # read from the installed metadata only when asked
            from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415 - 60 ms

            try:
                value: Any = version("firmware-bridge")
            except PackageNotFoundError:  # pragma: no cover - a tree that was never installed
                value = "0+unknown"
            globals()[name] = value
            return value
        home = _HOME_OF.get(name)
        if home is None:
            raise AttributeError(f"module 'firmware_bridge' has no attribute {name!r}")
        value = getattr(importlib.import_module(home), name)
        globals()[name] = value  # next time it is a plain attribute
        return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "BleakTransport",
    "BluetoothUnavailableError",
    "BrokerSetupError",
    "ConnectionLostError",
    "Decision",
    "DeviceConnectionError",
    "DeviceIdInUseError",
    "DeviceLimits",
    "DeviceNotFoundError",
    "DeviceRejectedError",
    "DeviceTimeoutError",
    "Event",
    "LinkEvent",
    "LinkState",
    "Massager",
    "MassagerError",
    "MassagerLink",
    "Profile",
    "ProfileError",
    "ProtocolError",
    "ReconnectPolicy",
    "SafetyLimitError",
    "SafetySettings",
    "Sample",
    "Session",
    "SessionRecord",
    "StopReason",
    "StopResult",
    "Transport",
    "__version__",
    "connect",
    "find_massager",
    "load_profile",
    "read_history",
    "simulated",
]
