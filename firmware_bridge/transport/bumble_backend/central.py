"""Opening a bumble central on an HCI transport (a USB dongle, serial, TCP)."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from bumble import core, hci
from bumble.device import Device
from bumble.transport import open_transport

from firmware_bridge.errors import DeviceConnectionError
from firmware_bridge.transport.bumble_backend.convert import (
    DISCONNECT_TIMEOUT_S,
)

POWER_ON_TIMEOUT_S = 10.0  # a controller answers HCI Reset in ms; a silent peer never will


@asynccontextmanager
async def open_central(
    hci_moniker: str, *, name: str = "firmware-bridge", address: str | None = None
) -> AsyncIterator[Device]:
    """A powered-on bumble central on an HCI transport (`usb:0`, `serial:...`, `tcp-client:...`).

    Raises DeviceConnectionError, one line with advice, when the transport cannot be opened or
    the controller behind it does not answer.
    """
    try:
        transport = await open_transport(hci_moniker)
    except Exception as exc:  # usb1, serial, socket and bumble errors alike: all one line
        raise DeviceConnectionError(hci_problem(hci_moniker, exc)) from exc
    try:
        own = hci.Address(address) if address else hci.Address.generate_static_address()
        device = Device.with_hci(name, own, transport.source, transport.sink)
        try:
            async with asyncio.timeout(POWER_ON_TIMEOUT_S):
                await device.power_on()
        except (TimeoutError, core.BaseBumbleError, hci.HCI_Error) as exc:
            raise DeviceConnectionError(
                f"--hci {hci_moniker}: no Bluetooth controller answered there ({exc!r})"
            ) from exc
        try:
            yield device
        finally:
            await asyncio.shield(_power_down(device))
    finally:
        await transport.close()


def hci_problem(moniker: str, exc: BaseException) -> str:
    """One line saying why `moniker` did not open, with what to check."""
    scheme = moniker.split(":", 1)[0]
    reason = str(exc) or type(exc).__name__
    advice = {
        "usb": "is a Bluetooth dongle plugged in, and may this user open it (udev rules)?",
        "serial": "check the device path and that no other program holds it",
        "tcp-client": "is an HCI server listening there?",
        "tcp-server": "is the port free?",
    }.get(scheme, "see `massager run --help` for the transports (usb:0, serial:PATH, ...)")
    if isinstance(exc, ValueError) and "scheme" in reason:
        reason = f"unknown transport {scheme!r}"
    return f"--hci {moniker}: cannot open the Bluetooth transport: {reason}; {advice}"


async def _power_down(device: Device) -> None:
    """Disconnect every link (waiting for the events), stop scanning, power off."""
    for connection in list(device.connections.values()):
        with contextlib.suppress(core.BaseBumbleError, hci.HCI_Error, TimeoutError):
            async with asyncio.timeout(DISCONNECT_TIMEOUT_S):
                await connection.disconnect()
    if device.is_scanning:
        await device.stop_scanning()
    await device.power_off()
