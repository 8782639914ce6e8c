"""Devices as data: descriptions of how to find and drive each model, and their drivers.

`match()` picks the description for an advertisement; `transport_for()` builds the transport
the link drives: `BleakTransport` for protocol v1, `SimpleWriteTransport` for the simple-write
families. Shipped descriptions live in `firmware_bridge/devices/library/`; a person's own in
`devices/` beside config.toml.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from firmware_bridge.devices.catalog import (
    by_id,
    catalog,
    load_description_file,
    load_text,
    match,
    shipped,
    user_devices_dir,
)
from firmware_bridge.protocol import BATTERY_SERVICE_UUID
from firmware_bridge.protocol.description import Description, DescriptionError

if TYPE_CHECKING:
    from bleak.backends.client import BaseBleakClient
    from bleak.backends.device import BLEDevice

    from firmware_bridge.protocol.timebase import Clock
    from firmware_bridge.transport import BleakTransport

__all__ = [
    "Description",
    "DescriptionError",
    "by_id",
    "catalog",
    "load_description_file",
    "load_text",
    "match",
    "shipped",
    "transport_for",
    "user_devices_dir",
]


def transport_for(
    device: BLEDevice,
    description: Description | None,
    *,
    backend: type[BaseBleakClient] | None = None,
    backend_kwargs: dict[str, Any] | None = None,
    clock: Clock | None = None,
) -> BleakTransport:
    """The transport for `device` as `description` says (None: protocol v1)."""
    # bleak only when a device is opened: `devices validate` and `scan --help` stay quick
    from firmware_bridge.devices.simple import SimpleWriteTransport  # noqa: PLC0415
    from firmware_bridge.transport import BleakTransport  # noqa: PLC0415

    kwargs = dict(backend_kwargs or {})
    if description is not None and description.pairing:
        kwargs.setdefault("pair", True)  # bond before use: the device refuses writes otherwise
    if description is None or description.driver == "protocol-v1":
        return BleakTransport(device, backend=backend, backend_kwargs=kwargs)
    if description.gatt is None:
        raise DescriptionError(description.id, ["gatt: a simple-write description needs it"])
    services = [description.gatt.service]
    if description.gatt.battery:
        services.append(BATTERY_SERVICE_UUID)
    kwargs.setdefault("services", services)  # discover only these: faster, and macOS needs it
    return SimpleWriteTransport(
        device, description, backend=backend, backend_kwargs=kwargs, clock=clock
    )
