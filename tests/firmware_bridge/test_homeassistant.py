"""Home Assistant device-based discovery: payload shape, templates, and a retained round trip."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import jinja2
import pytest
from pydantic import BaseModel

from firmware_bridge.telemetry.homeassistant import (
    discovery_payload,
    discovery_topic,
    removal_payload,
)
from firmware_bridge.telemetry.mqtt import make_client
from firmware_bridge.telemetry.payloads import StatePayload, TelemetryPayload
from firmware_bridge.telemetry.topics import Topics
from tests.brokers import Mosquitto, mosquitto, mosquitto_factory

__all__ = ["mosquitto", "mosquitto_factory"]  # the shared broker fixtures, used by name

ENTITY_ID = re.compile(r"^[a-z_]+\.[a-z0-9_]+$")  # HA: domain.object, lowercase and underscores
TOPICS = Topics("foot-1")


def payload(topics: Topics = TOPICS, firmware: str | None = "2.3.1") -> dict[str, Any]:
    return discovery_payload(topics, name="Foot massager", model="FM-200", firmware=firmware)


def test_device_origin_and_availability() -> None:
    config = payload()
    assert config["dev"] == {
        "identifiers": ["firmware_bridge_foot-1"],
        "name": "Foot massager",
        "mf": "firmware-bridge",
        "mdl": "FM-200",
        "sw": "2.3.1",
    }
    assert config["o"]["name"] == "firmware-bridge"
    assert config["o"]["sw"]
    assert config["availability_topic"] == "massager/foot-1/availability"
    assert (config["payload_available"], config["payload_not_available"]) == ("online", "offline")
    assert config["qos"] == 1
    assert "sw" not in payload(firmware=None)["dev"]
    json.dumps(config)  # serialisable as is


def test_every_component_has_ids_and_no_object_id() -> None:
    components = payload()["cmps"]
    assert len(components) >= 10
    for key, component in components.items():
        assert "object_id" not in component, key
        assert "obj_id" not in component, key
        assert component["unique_id"].startswith("firmware_bridge_foot-1_"), key
        assert ENTITY_ID.match(component["default_entity_id"]), key
        assert component["default_entity_id"].startswith(f"{component['p']}.foot_1_"), key
        assert component["name"], key
    unique_ids = [c["unique_id"] for c in components.values()]
    entity_ids = [c["default_entity_id"] for c in components.values()]
    assert len(set(unique_ids)) == len(unique_ids)
    assert len(set(entity_ids)) == len(entity_ids)
    assert components["intensity"]["default_entity_id"] == "sensor.foot_1_intensity"


def test_entity_ids_are_valid_for_any_device_id() -> None:
    components = payload(Topics("Kitchen-Massager_2", prefix="home/feet"))["cmps"]
    assert components["battery"]["default_entity_id"] == "sensor.kitchen_massager_2_battery"
    assert components["stop"]["command_topic"] == "home/feet/Kitchen-Massager_2/cmd/stop"


def test_commands_are_exactly_the_contract_topics() -> None:
    components = payload()["cmps"]
    commanding = {k: c for k, c in components.items() if "command_topic" in c}
    assert set(commanding) == {"stop", "discomfort"}  # S8: nothing that can raise output
    stop, rating = commanding["stop"], commanding["discomfort"]
    assert (stop["p"], stop["command_topic"], stop["payload_press"]) == (
        "button",
        TOPICS.command("stop"),
        "stop",
    )
    assert stop["command_topic"] == "massager/foot-1/cmd/stop"
    assert rating["p"] == "number"
    assert rating["command_topic"] == "massager/foot-1/cmd/discomfort"
    assert rating["command_template"] == "{{ value | int }}"
    assert (rating["min"], rating["max"], rating["step"], rating["mode"]) == (0, 10, 1, "box")
    assert not any(c.get("retain") for c in components.values())  # commands are never retained


def test_sensors_read_real_payload_fields() -> None:
    """Every value_template names fields of the payload model its state topic carries."""
    models: dict[str, type[BaseModel]] = {
        TOPICS.telemetry: TelemetryPayload,
        TOPICS.state: StatePayload,
    }
    sensors = {k: c for k, c in payload()["cmps"].items() if "state_topic" in c}
    assert {
        "intensity",
        "applied",
        "battery",
        "temperature",
        "remaining",
        "rating",
        "state",
        "stop_reason",
    } <= set(sensors)
    for key, sensor in sensors.items():
        fields = re.findall(r"value_json\.(\w+)", sensor["value_template"])
        assert fields, key
        assert set(fields) <= set(models[sensor["state_topic"]].model_fields), key
    units = {k: (c.get("unit_of_measurement"), c.get("device_class")) for k, c in sensors.items()}
    assert units["intensity"] == ("%", None)
    assert units["applied"] == ("%", None)
    assert units["battery"] == ("%", "battery")
    assert units["temperature"] == ("°C", "temperature")
    assert units["remaining"] == ("s", "duration")


def test_templates_render_percent_and_unknown() -> None:
    """Render the templates with Jinja2 (what HA uses) against real payloads."""
    environment = jinja2.Environment(autoescape=False)  # noqa: S701 - numbers for HA, not HTML
    sample = TelemetryPayload(
        intensity=0.35,
        applied=0.333,
        cap=4,
        nrs=None,
        battery=None,
        temperature_c=31.25,
        rssi=None,
        elapsed_s=5,
        remaining_s=95.4,
        segment="warm-up",
    )
    state = StatePayload(state="stopped", profile="heel-spur", stop_reason=None)
    values = {
        TOPICS.telemetry: json.loads(sample.model_dump_json()),
        TOPICS.state: json.loads(state.model_dump_json(exclude_none=True)),  # as published
    }
    rendered = {
        key: environment.from_string(c["value_template"]).render(
            value_json=values[c["state_topic"]]
        )
        for key, c in payload()["cmps"].items()
        if "state_topic" in c
    }
    assert rendered["intensity"] == "35.0"
    assert rendered["applied"] == "33.3"
    assert rendered["remaining"] == "95.0"
    assert rendered["battery"] == "None"  # HA's numeric sensors read "None" as unknown
    assert rendered["rating"] == "None"
    assert rendered["discomfort"] == "None"  # the number's default payload_reset
    assert rendered["state"] == "stopped"
    assert rendered["stop_reason"] == "none"
    assert rendered["stop_confirmed"] == "none"  # no stop yet: the field is left out
    command = payload()["cmps"]["discomfort"]["command_template"]
    assert environment.from_string(command).render(value=7.0) == "7"
    confirmed = payload()["cmps"]["stop_confirmed"]["value_template"]
    for value, shown in ((True, "yes"), (False, "no")):
        after = StatePayload(state="stopped", stop_reason="remote_stop", stop_confirmed=value)
        as_sent = json.loads(after.model_dump_json(exclude_none=True))  # what the broker carries
        assert environment.from_string(confirmed).render(value_json=as_sent) == shown


def test_discovery_topic_and_removal() -> None:
    assert discovery_topic(TOPICS) == "homeassistant/device/foot-1/config"
    assert discovery_topic(Topics("x", prefix="other")) == "homeassistant/device/x/config"
    assert removal_payload() == b""


async def test_retained_discovery_round_trip(mosquitto: Mosquitto) -> None:
    config = payload()
    topic = discovery_topic(TOPICS)
    async with make_client(mosquitto.settings, identifier="test-ha-publisher") as publisher:
        await publisher.publish(topic, json.dumps(config), qos=1, retain=True)
    async with make_client(mosquitto.settings, identifier="test-ha-reader") as reader:
        await reader.subscribe(topic, qos=1)
        async with asyncio.timeout(2):
            message = await anext(aiter(reader.messages))
    assert message.retain
    assert isinstance(message.payload, bytes)
    assert json.loads(message.payload) == config

    async with make_client(mosquitto.settings, identifier="test-ha-remover") as publisher:
        await publisher.publish(topic, removal_payload(), qos=1, retain=True)
    async with make_client(mosquitto.settings, identifier="test-ha-late") as late:
        await late.subscribe(topic, qos=1)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await anext(aiter(late.messages))  # the retained config is gone
