"""Opening a bumble central on an HCI transport (a USB dongle, serial, TCP)."""

import asyncio
import contextlib
import logging
import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from bumble import core, hci
from bumble.device import Device
from bumble.transport import open_transport
from bumble.transport.common import Transport

from firmware_bridge.errors import DeviceConnectionError
from firmware_bridge.transport.bumble_backend.convert import (
    DISCONNECT_TIMEOUT_S,
)

_LOGGER = logging.getLogger(__name__)
_LOST: weakref.WeakSet[Device] = weakref.WeakSet()  # centrals whose controller went away

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
        lost = _watch_transport(hci_moniker, transport, device)
        try:
            yield device
        finally:
            if not lost():  # a controller that went away answers nothing: each command waits
                await asyncio.shield(_power_down(device))
    finally:
        await transport.close()


# bumble's transport schemes (bumble.transport.open_transport), and whether each needs a spec
# after the colon (`usb:0`, `serial:/dev/ttyUSB0`, `tcp-client:HOST:PORT`).
SCHEMES: dict[str, bool] = {
    "serial": True,
    "udp": True,
    "tcp-client": True,
    "tcp-server": True,
    "ws-client": True,
    "ws-server": True,
    "pty": False,
    "file": True,
    "vhci": False,
    "hci-socket": False,
    "usb": True,
    "pyusb": True,
    "android-emulator": False,
    "android-netsim": False,
    "unix": True,
    "unix-client": True,
    "unix-server": True,
}
EXAMPLES = "usb:0, serial:/dev/ttyUSB0, tcp-client:127.0.0.1:9000, hci-socket:0"


def moniker_problem(moniker: str) -> str | None:
    """Why `moniker` is not an HCI transport moniker at all (bad input, exit 2), or None.

    Only the syntax: whether the dongle, port or server is there is `open_central`'s business.
    """
    scheme, _, spec = moniker.partition(":")
    if scheme not in SCHEMES:
        return f"--hci {moniker}: unknown transport {scheme!r}; use one of {EXAMPLES}"
    if SCHEMES[scheme] and not spec.strip():
        return f"--hci {moniker}: {scheme} needs a value after the colon, e.g. {EXAMPLES}"
    return None


def hci_problem(moniker: str, exc: BaseException) -> str:
    """One line saying why `moniker` did not open, with what to check."""
    scheme = moniker.split(":", 1)[0]
    reason = str(exc) or type(exc).__name__
    advice = {
        "usb": "is a Bluetooth dongle plugged in, and may this user open it (Linux: a udev "
        "rule; Windows: the WinUSB driver, e.g. with Zadig)?",
        "pyusb": "is a Bluetooth dongle plugged in, and may this user open it (udev rules)?",
        "serial": "check the device path and that no other program holds it",
        "tcp-client": "start the other side first (`massager sim serve` prints its port)",
        "tcp-server": "is the port free?",
    }.get(scheme, f"check the moniker; transports look like {EXAMPLES}")
    if syntax := moniker_problem(moniker):
        return syntax
    if isinstance(exc, ConnectionRefusedError):
        reason = "connection refused: nothing listens there"
    elif "LIBUSB_ERROR_NOT_FOUND" in reason or "LIBUSB_ERROR_OTHER" in reason:
        reason = f"no usable USB Bluetooth dongle ({reason})"
    elif "LIBUSB_ERROR_ACCESS" in reason or isinstance(exc, PermissionError):
        reason = f"permission denied ({reason})"
    elif isinstance(exc, FileNotFoundError) or "No such file" in reason:
        reason = f"no such device ({reason})"
    return f"--hci {moniker}: cannot open the Bluetooth transport: {reason}; {advice}"


def transport_lost(central: Device) -> bool:
    """Whether the controller behind `central` went away: an HCI command would get no answer
    (bumble waits 10 s for one, then raises)."""
    return central in _LOST


def _watch_transport(moniker: str, transport: Transport, device: Device) -> Callable[[], bool]:
    """Say once, in one line, when the controller behind `moniker` goes away under us (the
    simulator process was killed, the dongle pulled, the TCP peer closed).

    Returns `lost()`: whether that happened; it ends the watch, so call it before closing the
    transport ourselves (which would otherwise read as the controller going away).
    """
    terminated = getattr(transport.source, "terminated", None)
    if not isinstance(terminated, asyncio.Future):
        return lambda: False

    def report(_: asyncio.Future[None]) -> None:
        _LOST.add(device)
        _LOGGER.warning("--hci %s: the Bluetooth controller went away (transport closed)", moniker)

    terminated.add_done_callback(report)

    def lost() -> bool:
        terminated.remove_done_callback(report)
        return terminated.done()

    return lost


async def _power_down(device: Device) -> None:
    """Disconnect every link (waiting for the events), stop scanning, power off."""
    for connection in list(device.connections.values()):
        with contextlib.suppress(core.BaseBumbleError, hci.HCI_Error, TimeoutError):
            async with asyncio.timeout(DISCONNECT_TIMEOUT_S):
                await connection.disconnect()
    if device.is_scanning:
        await device.stop_scanning()
    await device.power_off()
