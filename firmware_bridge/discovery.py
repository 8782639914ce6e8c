"""Scanning for massagers: every advertisement heard, sorted into ours, described and others.

`scan()` listens for `timeout` seconds (any bleak backend: the OS stack, a bumble central, the
simulator) and returns one `Sighting` per address: massagers speaking our protocol (our service
UUID) first, then devices a device description matches (`firmware_bridge.devices.match`), then
everything else by name. `choose()` picks the one massager to use, or says why it cannot.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from bleak import BleakScanner
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, BaseBleakScanner
from bleak.exc import BleakBluetoothNotAvailableError, BleakBluetoothNotAvailableReason, BleakError

from firmware_bridge.errors import BluetoothUnavailableError, DeviceNotFoundError, MassagerError
from firmware_bridge.protocol import SERVICE_UUID

if TYPE_CHECKING:
    from firmware_bridge.devices import Description

Kind = Literal["ours", "described", "other"]
KIND_ORDER: dict[Kind, int] = {"ours": 0, "described": 1, "other": 2}
SCAN_TIMEOUT_S = 5.0  # `massager scan`: most massagers advertise every 20-1000 ms; 5 s hears all
# `massager run` without --address: stop this long after the last new massager was heard. A
# massager advertises at least once a second (often every 20-100 ms), so two seconds of silence
# means every one in range has spoken; waiting out the whole scan timeout would add ~8 s.
SETTLE_S = 2.0
NO_RSSI = -127  # dBm; HCI's "RSSI not available", sorts after every real reading

# One line of advice per reason bleak gives (bleak.exc.BleakBluetoothNotAvailableReason).
UNAVAILABLE_ADVICE: dict[BleakBluetoothNotAvailableReason, str] = {
    BleakBluetoothNotAvailableReason.NO_BLUETOOTH: "no Bluetooth adapter was found; plug one "
    "in (or use a USB dongle with --hci usb:0), and on Linux check that bluetoothd runs",
    BleakBluetoothNotAvailableReason.NO_BLE_CENTRAL_ROLE: "this Bluetooth adapter cannot act as "
    "a Bluetooth Low Energy central (a classic-only adapter); use a Bluetooth 4.0+ adapter or "
    "a USB dongle with --hci usb:0",
    BleakBluetoothNotAvailableReason.POWERED_OFF: "Bluetooth is turned off; turn it on (Linux: "
    "`rfkill unblock bluetooth` and `bluetoothctl power on`) and try again",
    BleakBluetoothNotAvailableReason.DENIED_BY_USER: "this program was refused Bluetooth access; "
    "allow it for your terminal app (macOS: System Settings > Privacy & Security > Bluetooth)",
    BleakBluetoothNotAvailableReason.DENIED_BY_SYSTEM: "the system refused Bluetooth access; on "
    "Linux add yourself to the `bluetooth` group (then log in again), elsewhere check the "
    "administrator's policy",
    BleakBluetoothNotAvailableReason.DENIED_BY_UNKNOWN: "Bluetooth access was refused; allow it "
    "for your terminal app in the system's privacy settings",
    BleakBluetoothNotAvailableReason.UNKNOWN: "Bluetooth is not available; check that it is on "
    "and that this user may use it (see `massager doctor`)",
}
SIMULATOR_HINT = (
    "no hardware? `massager run PROFILE --sim`, or firmware_bridge.simulated() from Python, "
    "uses the simulator"
)


Matcher = Callable[[str | None, Sequence[str], Mapping[int, bytes]], "Description | None"]


@dataclass(frozen=True)
class Sighting:
    """One device heard while scanning: its latest advertisement and what it is."""

    device: BLEDevice
    name: str | None
    rssi: int | None
    kind: Kind
    description: Description | None = None
    service_uuids: tuple[str, ...] = field(default=())

    @property
    def address(self) -> str:
        return self.device.address

    @property
    def is_massager(self) -> bool:
        """Ours or described: something `massager run` can drive."""
        return self.kind != "other"

    @property
    def description_id(self) -> str | None:
        return self.description.id if self.description is not None else None

    def line(self) -> str:
        """`ADDRESS  RSSI dBm  NAME  (what)` for a person."""
        rssi = f"{self.rssi:4d} dBm" if self.rssi is not None else "   ? dBm"
        what = {"ours": "massager", "described": f"described: {self.description_id}"}
        label = f"  ({what[self.kind]})" if self.kind in what else ""
        return f"{self.address}  {rssi}  {shown(self.name) or '?'}{label}"

    def as_json(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "name": self.name,
            "rssi": self.rssi,
            "kind": self.kind,
            "description": self.description_id,
            "service_uuids": list(self.service_uuids),
        }


NAME_SHOWN_MAX = 40  # characters of an advertised name printed: it is anyone's radio text


def shown(name: str | None) -> str | None:
    """An advertised name safe to print: escapes and control characters made visible, cut."""
    if name is None:
        return None
    safe = name if name.isprintable() else repr(name)[1:-1]
    return safe if len(safe) <= NAME_SHOWN_MAX else safe[:NAME_SHOWN_MAX] + "..."


def default_matcher() -> Matcher:
    """The first description of the catalog (the person's, then shipped) that fits, as
    `firmware_bridge.devices.match` picks it; the catalog is read once, not per advertisement."""
    from firmware_bridge.devices import catalog  # noqa: PLC0415 - pydantic: only when scanning

    descriptions = catalog()

    def matcher(
        name: str | None, uuids: Sequence[str], manufacturer: Mapping[int, bytes]
    ) -> Description | None:
        return next((d for d in descriptions if d.fits(name, uuids, manufacturer)), None)

    return matcher


def classify(device: BLEDevice, adv: AdvertisementData, matcher: Matcher | None = None) -> Sighting:
    """The sighting `adv` makes: ours (our service UUID), described (a description fits), other."""
    name = adv.local_name or device.name
    uuids = tuple(uuid.lower() for uuid in adv.service_uuids)
    description = None
    if matcher is not None:
        try:
            description = matcher(name, uuids, dict(adv.manufacturer_data))
        except MassagerError:  # a broken user description must not hide the other devices
            description = None
    if SERVICE_UUID in uuids:  # our service is protocol v1, whatever else a description says
        kind: Kind = "ours"
        if description is None or description.driver != "protocol-v1":
            description = _protocol_v1()
    else:
        kind = "described" if description else "other"
    rssi = adv.rssi if adv.rssi is not None and adv.rssi > NO_RSSI else None
    return Sighting(device, name, rssi, kind, description, uuids)


def _protocol_v1() -> Description | None:
    from firmware_bridge.devices import shipped  # noqa: PLC0415 - pydantic: only when scanning

    return next((d for d in shipped() if d.driver == "protocol-v1"), None)


def ordered(sightings: Sequence[Sighting]) -> list[Sighting]:
    """Ours first, then described (strongest signal first in each), then others by name."""

    def key(s: Sighting) -> tuple[int, int, str, str]:
        strength = -(s.rssi if s.rssi is not None else NO_RSSI)
        if s.kind == "other":
            return (KIND_ORDER[s.kind], 0, (s.name or "\uffff").lower(), s.address)
        return (KIND_ORDER[s.kind], strength, (s.name or "").lower(), s.address)

    return sorted(sightings, key=key)


def unavailable(exc: BaseException) -> BluetoothUnavailableError:
    """Bluetooth unusable here, as one line of advice in words."""
    if isinstance(exc, BleakBluetoothNotAvailableError):
        advice = UNAVAILABLE_ADVICE.get(exc.reason, UNAVAILABLE_ADVICE[_UNKNOWN])
        return BluetoothUnavailableError(f"{advice} ({SIMULATOR_HINT})")
    if isinstance(exc, FileNotFoundError | ConnectionRefusedError):  # the D-Bus socket
        return BluetoothUnavailableError(
            "no Bluetooth service answers (Linux: start D-Bus and bluetoothd, e.g. `systemctl "
            f"start bluetooth`), or use a USB dongle with --hci usb:0 ({SIMULATOR_HINT})"
        )
    return BluetoothUnavailableError(
        f"Bluetooth is not available here ({type(exc).__name__}: {exc}); on Linux check that "
        f"bluetoothd runs, or use a USB dongle with --hci usb:0 ({SIMULATOR_HINT})"
    )


_UNKNOWN = BleakBluetoothNotAvailableReason.UNKNOWN


async def scan(
    timeout: float = SCAN_TIMEOUT_S,  # noqa: ASYNC109 - scan duration, named as bleak names it
    *,
    backend: type[BaseBleakScanner] | None = None,
    matcher: Matcher | Literal["default"] | None = "default",
    on_count: Callable[[int], None] | None = None,
    stop_when: Callable[[Sighting], bool] | None = None,
    settle_s: float | None = None,
    **scanner_kwargs: Any,
) -> list[Sighting]:
    """Listen for `timeout` seconds; every device heard, `ordered()`.

    `on_count(n)` is called whenever the number of devices heard grows; `stop_when(sighting)`
    returning True ends the scan early (a remembered massager was heard); with `settle_s`, the
    scan ends that long after the last new massager was heard (all in range have spoken). Raises
    BluetoothUnavailableError (one line of advice) when there is no usable Bluetooth here.
    """
    match = default_matcher() if matcher == "default" else matcher
    seen: dict[str, Sighting] = {}
    done = asyncio.Event()
    last_massager: list[float] = []  # when the latest new massager was first heard

    def heard(device: BLEDevice, adv: AdvertisementData) -> None:
        sighting = classify(device, adv, match)
        new = device.address not in seen
        seen[device.address] = sighting
        if new and sighting.is_massager:
            last_massager.append(asyncio.get_running_loop().time())
        if new and on_count is not None:
            on_count(len(seen))
        if stop_when is not None and stop_when(sighting):
            done.set()

    if backend is not None:
        scanner_kwargs["backend"] = backend
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        async with BleakScanner(heard, **scanner_kwargs):
            while not done.is_set():
                until = deadline
                if settle_s is not None and last_massager:
                    until = min(until, last_massager[-1] + settle_s)
                if loop.time() >= until:
                    break
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(until - loop.time()):
                        await done.wait()
    except (BleakError, OSError) as exc:  # no BlueZ / D-Bus / adapter: OSError from the socket
        raise unavailable(exc) from exc
    return ordered(list(seen.values()))


class SeveralMassagersError(MassagerError):
    """More than one massager in range and no way to ask which: pass --address."""

    def __init__(self, message: str, candidates: Sequence[Sighting]) -> None:
        super().__init__(message)
        self.candidates = list(candidates)


def massagers(sightings: Sequence[Sighting]) -> list[Sighting]:
    return [s for s in sightings if s.is_massager]


def pick(
    sightings: Sequence[Sighting], *, preferred: Sequence[str] = (), timeout: float
) -> Sighting:
    """The massager to use: a remembered one in range (the first of `preferred`), else the only
    one. Raises DeviceNotFoundError (none) or SeveralMassagersError (which one?)."""
    candidates = massagers(sightings)
    by_address = {s.address.upper(): s for s in candidates}
    for address in preferred:
        if address.upper() in by_address:
            return by_address[address.upper()]
    if not candidates:
        raise DeviceNotFoundError(
            f"no massager found within {timeout:g} s; is it on, in range and not connected to "
            "a phone? (`massager scan` lists what is nearby)"
        )
    if len(candidates) > 1:
        listed = "\n".join(f"  {s.line()}" for s in candidates)
        raise SeveralMassagersError(
            f"{len(candidates)} massagers in range; pass --address ADDRESS to choose one:\n"
            f"{listed}",
            candidates,
        )
    if candidates[0].kind != "ours":
        # A description matches by name and advertisement only: another gadget can look the
        # same. Never drive one nobody chose; once chosen (asked, or --address) it is remembered.
        raise SeveralMassagersError(
            "one device matches a description, not our protocol; pass --address ADDRESS to "
            f"use it:\n  {candidates[0].line()}",
            candidates,
        )
    return candidates[0]
