"""The massager's GATT layout, shared by both hosts so tier 1 and tier 2 look the same."""

from __future__ import annotations

from dataclasses import dataclass

from firmware_bridge.protocol import (
    BATTERY_LEVEL_CHAR_UUID,
    BATTERY_SERVICE_UUID,
    CONTROL_CHAR_UUID,
    SERVICE_UUID,
    TELEMETRY_CHAR_UUID,
)
from firmware_bridge.protocol.description import Description


@dataclass(frozen=True, slots=True)
class CharacteristicSpec:
    uuid: str
    properties: tuple[str, ...]  # bleak's property names
    handle: int  # value handle; a CCCD (if notify) sits at handle + 1


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    uuid: str
    handle: int
    characteristics: tuple[CharacteristicSpec, ...]


LAYOUT = (
    ServiceSpec(
        SERVICE_UUID,
        1,
        (
            CharacteristicSpec(CONTROL_CHAR_UUID, ("write-without-response", "write"), 3),
            CharacteristicSpec(TELEMETRY_CHAR_UUID, ("read", "notify"), 5),
        ),
    ),
    ServiceSpec(
        BATTERY_SERVICE_UUID,
        7,
        (CharacteristicSpec(BATTERY_LEVEL_CHAR_UUID, ("read", "notify"), 9),),
    ),
)


def layout_for(description: Description | None) -> tuple[ServiceSpec, ...]:
    """The GATT layout of the described model (protocol v1's for None): its write
    characteristic, with "write" only when the model takes Write Requests, and the Battery
    Service when it has one."""
    if description is None or description.gatt is None or description.output is None:
        return LAYOUT
    gatt = description.gatt
    properties: tuple[str, ...] = ("write-without-response",)
    if description.output.with_response:
        properties += ("write",)
    services = [ServiceSpec(gatt.service, 1, (CharacteristicSpec(gatt.write, properties, 3),))]
    if gatt.battery:
        services.append(
            ServiceSpec(
                BATTERY_SERVICE_UUID,
                5,
                (CharacteristicSpec(BATTERY_LEVEL_CHAR_UUID, ("read", "notify"), 7),),
            )
        )
    return tuple(services)
