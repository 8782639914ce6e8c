"""Telemetry: MQTT topics, payloads, broker settings (publisher and journal build on these)."""

from firmware_bridge.telemetry.mqtt import BrokerSettings, BrokerURLError, make_client
from firmware_bridge.telemetry.payloads import EventPayload, StatePayload, TelemetryPayload
from firmware_bridge.telemetry.topics import DEFAULT_PREFIX, Topics, all_devices

__all__ = [
    "DEFAULT_PREFIX",
    "BrokerSettings",
    "BrokerURLError",
    "EventPayload",
    "StatePayload",
    "TelemetryPayload",
    "Topics",
    "all_devices",
    "make_client",
]
