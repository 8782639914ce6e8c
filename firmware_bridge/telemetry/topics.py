"""MQTT topic names (the contract in docs/mqtt.md): other programs subscribe to exactly these."""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_PREFIX = "massager"
HA_DISCOVERY_PREFIX = "homeassistant"
COMMANDS = ("stop", "discomfort")  # always allowed (S8); everything else needs remote control
GUARDED_COMMANDS = ("start", "intensity", "cap")  # can raise output: refused unless enabled
_DEVICE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def valid_device_id(device_id: str) -> bool:
    """A device id is one topic level: letters, digits, `-` and `_` (no `/`, `+`, `#`)."""
    return bool(_DEVICE_ID.match(device_id))


@dataclass(frozen=True)
class Topics:
    """The topics of one device under a prefix."""

    device_id: str
    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        if not valid_device_id(self.device_id):
            raise ValueError(f"device id {self.device_id!r}: use 1-64 letters, digits, '-' or '_'")
        if not self.prefix or any(c in self.prefix for c in "+#") or self.prefix.endswith("/"):
            raise ValueError(f"topic prefix {self.prefix!r} must be non-empty without + # or /$")

    @property
    def base(self) -> str:
        return f"{self.prefix}/{self.device_id}"

    @property
    def availability(self) -> str:
        return f"{self.base}/availability"  # retained online/offline, Last Will offline

    @property
    def state(self) -> str:
        return f"{self.base}/state"  # retained JSON

    @property
    def telemetry(self) -> str:
        return f"{self.base}/telemetry"  # JSON at ≥ 1 Hz while running

    @property
    def events(self) -> str:
        return f"{self.base}/events"  # QoS 1 JSON

    def command(self, name: str) -> str:
        return f"{self.base}/cmd/{name}"

    @property
    def commands(self) -> str:
        return f"{self.base}/cmd/#"

    @property
    def ha_discovery(self) -> str:
        return f"{HA_DISCOVERY_PREFIX}/device/{self.device_id}/config"


def all_devices(prefix: str = DEFAULT_PREFIX) -> dict[str, str]:
    """Wildcard subscriptions that see every device under `prefix` (for monitors)."""
    return {kind: f"{prefix}/+/{kind}" for kind in ("availability", "state", "telemetry", "events")}


def split(topic: str, prefix: str = DEFAULT_PREFIX) -> tuple[str, str] | None:
    """`massager/<id>/<kind...>` → (id, kind), or None if it is not one of ours."""
    parts = topic.split("/")
    head = prefix.split("/")
    if len(parts) < len(head) + 2 or parts[: len(head)] != head:
        return None
    return parts[len(head)], "/".join(parts[len(head) + 1 :])
