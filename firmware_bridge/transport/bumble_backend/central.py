"""Opening a bumble central on an HCI transport (a USB dongle, serial, TCP)."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from bumble import core, hci
from bumble.device import Device
from bumble.transport import open_transport

from firmware_bridge.transport.bumble_backend.convert import (
    DISCONNECT_TIMEOUT_S,
)


@asynccontextmanager
async def open_central(
    hci_moniker: str, *, name: str = "firmware-bridge", address: str | None = None
) -> AsyncIterator[Device]:
    """A powered-on bumble central on an HCI transport (`usb:0`, `serial:...`, `tcp-client:...`)."""
    transport = await open_transport(hci_moniker)
    try:
        own = hci.Address(address) if address else hci.Address.generate_static_address()
        device = Device.with_hci(name, own, transport.source, transport.sink)
        await device.power_on()
        try:
            yield device
        finally:
            await asyncio.shield(_power_down(device))
    finally:
        await transport.close()


async def _power_down(device: Device) -> None:
    """Disconnect every link (waiting for the events), stop scanning, power off."""
    for connection in list(device.connections.values()):
        with contextlib.suppress(core.BaseBumbleError, hci.HCI_Error, TimeoutError):
            async with asyncio.timeout(DISCONNECT_TIMEOUT_S):
                await connection.disconnect()
    if device.is_scanning:
        await device.stop_scanning()
    await device.power_off()
