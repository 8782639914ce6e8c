"""Home Assistant MQTT discovery: one device-based payload per massager (HA 2024.11+).

Published retained to `homeassistant/device/<id>/config`; an empty retained payload removes the
device. Entities read the contract topics (docs/mqtt.md) directly, so HA needs nothing
from us but this one message. Entity ids come from `default_entity_id` (`object_id` stops
working in HA 2026.4). Only the least-privilege commands are exposed (S8): stop and a 0-10
discomfort rating; nothing here can raise output.
"""

from __future__ import annotations

import re
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from firmware_bridge.telemetry.topics import Topics

__all__ = ["discovery_payload", "discovery_topic", "removal_payload"]

ORIGIN_NAME = "firmware-bridge"
DISCOVERY_QOS = 1  # HA subscribes to our topics and publishes stop/discomfort with this QoS
_NOT_ENTITY_ID = re.compile(r"[^a-z0-9_]+")


def _origin_version() -> str:
    try:
        return version("firmware-bridge")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "unknown"


def _slug(text: str) -> str:
    """An entity-id-safe slug: HA entity ids allow only lowercase letters, digits and `_`."""
    return _NOT_ENTITY_ID.sub("_", text.lower()).strip("_") or "massager"


def discovery_topic(topics: Topics) -> str:
    """Where the device's discovery payload is published (retained)."""
    return topics.ha_discovery


def removal_payload() -> bytes:
    """Published retained to the discovery topic, an empty payload removes the device from HA."""
    return b""


def discovery_payload(
    topics: Topics,
    *,
    name: str,
    model: str,
    firmware: str | None,
    manufacturer: str = "firmware-bridge",
) -> dict[str, Any]:
    """The device-based discovery payload: the device, its origin and all its entities.

    Args:
        topics: the device's contract topics (prefix and device id).
        name: the device name HA shows (entity names are prefixed with it).
        model: device model, e.g. the advertised BLE name.
        firmware: the device's firmware version, if known.
        manufacturer: shown in HA's device page.
    """
    device_id = topics.device_id
    slug = _slug(device_id)
    device: dict[str, Any] = {
        "identifiers": [f"firmware_bridge_{device_id}"],
        "name": name,
        "mf": manufacturer,
        "mdl": model,
    }
    if firmware:
        device["sw"] = firmware

    def entity(platform: str, key: str, label: str, **options: Any) -> dict[str, Any]:
        return {
            "p": platform,
            "unique_id": f"firmware_bridge_{device_id}_{key}",
            "default_entity_id": f"{platform}.{slug}_{key}",
            "name": label,
            **options,
        }

    def telemetry(key: str, label: str, template: str, **options: Any) -> dict[str, Any]:
        return entity(
            "sensor", key, label, state_topic=topics.telemetry, value_template=template, **options
        )

    def state(key: str, label: str, template: str, **options: Any) -> dict[str, Any]:
        return entity(
            "sensor", key, label, state_topic=topics.state, value_template=template, **options
        )

    # Telemetry fractions (0-1) become percent. A null field renders "None", which HA's numeric
    # sensors and numbers treat as "unknown" rather than an error.
    components = {
        "intensity": telemetry(
            "intensity",
            "Commanded intensity",
            "{{ (value_json.intensity * 100) | round(1) }}",
            unit_of_measurement="%",
            state_class="measurement",
            icon="mdi:vibrate",
        ),
        "applied": telemetry(
            "applied",
            "Applied intensity",
            "{{ (value_json.applied * 100) | round(1) }}",
            unit_of_measurement="%",
            state_class="measurement",
            icon="mdi:vibrate",
        ),
        "battery": telemetry(
            "battery",
            "Battery",
            "{{ value_json.battery }}",
            unit_of_measurement="%",
            device_class="battery",
            state_class="measurement",
        ),
        "temperature": telemetry(
            "temperature",
            "Contact temperature",
            "{{ value_json.temperature_c }}",
            unit_of_measurement="°C",
            device_class="temperature",
            state_class="measurement",
        ),
        "remaining": telemetry(
            "remaining",
            "Remaining time",
            "{{ value_json.remaining_s | round(0) }}",
            unit_of_measurement="s",
            device_class="duration",
        ),
        "rating": telemetry(
            "rating",
            "Last discomfort rating",
            "{{ value_json.nrs }}",
            state_class="measurement",
            icon="mdi:emoticon-neutral-outline",
        ),
        "segment": telemetry("segment", "Segment", "{{ value_json.segment }}"),
        "state": state(
            "state",
            "State",
            "{{ value_json.state }}",
            device_class="enum",
            options=["idle", "running", "paused", "stopped", "link_lost", "fault"],
        ),
        "profile": state("profile", "Profile", "{{ value_json.profile or 'none' }}"),
        "stop_reason": state(
            "stop_reason", "Stop reason", "{{ value_json.stop_reason or 'none' }}"
        ),
        # After a stop: did the device acknowledge zero? "none" until the first stop.
        "stop_confirmed": state(
            "stop_confirmed",
            "Stop confirmed",
            # Absent from the JSON until the first stop (payloads leave out nulls).
            "{% set c = value_json.stop_confirmed | default(none) %}"
            "{{ 'none' if c is none else ('yes' if c else 'no') }}",
            device_class="enum",
            options=["yes", "no", "none"],
            icon="mdi:check-decagram",
        ),
        "stop": entity(
            "button",
            "stop",
            "Stop",
            command_topic=topics.command("stop"),
            payload_press="stop",
            icon="mdi:stop-circle",
        ),
        "discomfort": entity(
            "number",
            "discomfort",
            "Report discomfort (0-10)",
            command_topic=topics.command("discomfort"),
            command_template="{{ value | int }}",
            state_topic=topics.telemetry,
            value_template="{{ value_json.nrs }}",
            min=0,
            max=10,
            step=1,
            mode="box",
            icon="mdi:emoticon-sad-outline",
        ),
    }
    return {
        "dev": device,
        "o": {"name": ORIGIN_NAME, "sw": _origin_version()},
        "cmps": components,
        "availability_topic": topics.availability,
        "payload_available": "online",
        "payload_not_available": "offline",
        "qos": DISCOVERY_QOS,
    }
