"""The public API: open a massager, real or simulated, and play sessions on it.

`simulated()` and `connect()` are async context managers that yield a `Massager`; its
`play()` runs a profile to the end and `session()` gives a `Session` to run, rate and stop.
Everything a session does goes through the safety governor; leaving the `async with` block,
however it is left, writes zero to the device before disconnecting. The package docstring
(`firmware_bridge`) has a complete example.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from firmware_bridge import compose
from firmware_bridge.device import MassagerLink, StopReason, StopResult
from firmware_bridge.journal import Journal, history
from firmware_bridge.protocol import ScaledClock
from firmware_bridge.record import Event, Sample, SessionRecord
from firmware_bridge.runner import Session
from firmware_bridge.safety import DEFAULT_CAP, DEFAULT_SESSION_S, SafetySettings
from profiles.loader import resolve
from profiles.model import Profile

if TYPE_CHECKING:  # the simulator's types, for annotations only: `sim` loads when it is used
    from sim.firmware import FaultPlan
    from sim.foot import Foot
    from sim.hosts import SimulatedMassager

SIM_SCAN_TIMEOUT_S = 5.0  # the simulator advertises every 20 ms: found at once or not at all
SCAN_TIMEOUT_S = 10.0  # a real massager may advertise slowly (every 1-2 s) to save battery
MAX_SPEED = 1000.0  # beyond this the simulated clock outruns the 20 Hz control loop


def load_profile(name_or_path: str | Path) -> Profile:
    """A built-in profile by name (`"heel-spur"`) or a profile TOML file.

    Raises `profiles.loader.ProfileError` (a ValueError) with one line per problem, each
    naming the file and field.
    """
    return resolve(str(name_or_path))


def read_history(directory: Path | None = None) -> list[dict[str, Any]]:
    """Past sessions from the journal, oldest first, one dict per session.

    Keys: `profile`, `started_at`, `stop_reason`, `duration_s`, `max_intensity`, `cap`,
    `closed` (the summary was written; False for a session that was killed), `file`.
    A file that could not be read is an entry with an `error`; this never raises for what it
    finds. `directory` defaults to the user's data directory (or `$MASSAGER_DATA_DIR`).
    """
    return history(directory)


class Massager:
    """An open connection to one massager. Get one from `connect()` or `simulated()`."""

    def __init__(
        self,
        link: MassagerLink,
        *,
        simulator: SimulatedMassager | None = None,
        person: bool = True,
    ) -> None:
        self.link = link
        self.simulator = simulator
        self._person = person  # with a simulator: its virtual person rates discomfort
        self.session_now: Session | None = None  # the session playing now, if any

    @property
    def name(self) -> str:
        """The name the massager advertises."""
        return str(self.link.transport.name)

    @property
    def address(self) -> str:
        """Its Bluetooth address."""
        device = getattr(self.link.transport, "device", None)
        return str(getattr(device, "address", ""))

    @property
    def failsafe(self) -> str:
        """`"watchdog"` when the device zeroes itself if the controller goes silent, or
        `"none"` (output is then limited further)."""
        return self.link.failsafe

    def session(
        self,
        profile: str | Path | Profile,
        *,
        cap: int = DEFAULT_CAP,
        max_minutes: float = DEFAULT_SESSION_S / 60,
        settings: SafetySettings | None = None,
        on_sample: Callable[[Sample], None] | None = None,
        on_event: Callable[[Event], None] | None = None,
        journal: bool = False,
    ) -> Session:
        """A session of `profile` on this massager, ready to `await session.run()`.

        Args:
            profile: a built-in name, a TOML file or a `Profile` built in code.
            cap: upper bound on the 0-10 discomfort scale; output never exceeds cap/10 of the
                device maximum (default 4, "moderate, never severe").
            max_minutes: the session limit (default 15); no value can exceed 30.
            settings: every safety setting at once (instead of `cap` and `max_minutes`).
            on_sample: called with a `Sample` every second of session time.
            on_event: called with every `Event` (segment, discomfort, limit, stop, ...).
            journal: also write the session to the local journal, so `read_history()` and
                `massager history` list it.

        The simulated person (see `simulated()`) rates discomfort every 30 s of session time.
        """
        chosen = profile if isinstance(profile, Profile) else load_profile(profile)
        safety = settings or SafetySettings(cap=cap, max_session_s=max_minutes * 60)
        record_to = None
        if journal:
            # A simulated massager's sessions belong to the simulated person: never a real
            # person's course. A real one's go to the default person (the OS user).
            simulated = self.simulator is not None
            header: dict[str, Any] = {
                "device": {"name": self.name, "address": self.address},
                "session_id": secrets.token_hex(6),
                "simulated": simulated,
            }
            if simulated:
                header |= {"person": "simulated-person", "device_key": "simulator"}
            record_to = Journal(chosen.name, header=header)

        def sample(s: Sample) -> None:
            if record_to is not None:
                record_to.sample(s)
            if on_sample is not None:
                on_sample(s)

        def event(e: Event) -> None:
            if record_to is not None:
                record_to.event(e)
            if on_event is not None:
                on_event(e)

        person = self.simulator.rating if self.simulator is not None and self._person else None
        session = _JournaledSession(
            self.link,
            chosen,
            safety,
            rating_source=person,
            on_sample=sample,
            on_event=event,
            journal=record_to,
        )
        self.session_now = session
        return session

    async def play(self, profile: str | Path | Profile, **options: Any) -> SessionRecord:
        """Play `profile` to the end (or until something stops it); returns its record.

        Takes the same options as `session()`.
        """
        return await self.session(profile, **options).run()

    async def stop(self, reason: StopReason = StopReason.USER_STOP) -> StopResult:
        """Stop now: the playing session if there is one, else the device. Zero goes to the
        device ahead of anything else; the result says whether the device confirmed it."""
        if self.session_now is not None:
            return await self.session_now.stop(reason)
        return await self.link.stop(reason)


class _JournaledSession(Session):
    """A session that closes its journal file (if any) when it ends."""

    def __init__(self, *args: Any, journal: Journal | None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._journal = journal

    async def run(self) -> SessionRecord:
        try:
            return await super().run()
        finally:
            if self._journal is not None:
                self._journal.close(self.record, wait=False)
                await asyncio.to_thread(self._journal.flush)


@asynccontextmanager
async def connect(
    *,
    address: str | None = None,
    name: str | None = None,
    hci: str | None = None,
    scan_timeout: float = SCAN_TIMEOUT_S,
) -> AsyncIterator[Massager]:
    """Find and connect to a real massager; leaving the block writes zero and disconnects.

    Args:
        address: connect to this Bluetooth address.
        name: connect to the massager advertising this name.
        hci: a bumble HCI transport instead of the OS Bluetooth stack: `"usb:0"` (a USB
            dongle), `"serial:/dev/ttyACM0"`, `"tcp-client:host:port"`.
        scan_timeout: seconds to look for it.

    With neither `address` nor `name`, the first massager advertising the massager service
    is used. Raises `BluetoothUnavailableError` when there is no Bluetooth stack or adapter,
    `DeviceNotFoundError` when nothing matched in time.
    """
    async with (
        compose.open_hardware(
            address=address, name=name, hci=hci, scan_timeout=scan_timeout
        ) as transport,
        MassagerLink(transport) as link,
    ):
        yield Massager(link)


@asynccontextmanager
async def simulated(
    *,
    tier: str = "memory",
    speed: float = 1.0,
    faults: FaultPlan | None = None,
    person: Foot | bool = True,
) -> AsyncIterator[Massager]:
    """A simulated massager, connected through the same BLE code path as a real one.

    Args:
        tier: `"memory"` (an in-memory Bluetooth backend: fast, the default) or `"bumble"`
            (a GATT peripheral on a virtual Bluetooth link: real HCI, L2CAP and ATT).
        speed: run the simulator and every timer this many times faster than real time
            (0.1-1000). `speed=60` plays a 15-minute routine in 15 seconds.
        faults: a `sim.FaultPlan` (dropped, garbled or delayed frames, a disconnect, a
            silent device, no watchdog, ...).
        person: the simulated person who rates discomfort every 30 s of session time:
            `True` (the default virtual foot), a `sim.Foot` of your own, or `False` for none.

    `massager.simulator` is the simulated device, with its own record of what reached the
    motors (`massager.simulator.firmware.applied`).
    """
    if not 0.1 <= speed <= MAX_SPEED:
        raise ValueError(f"speed must be 0.1-{MAX_SPEED:g}, got {speed:g}")
    foot = person if person is not True and person is not False else None
    clock = ScaledClock(speed)
    async with compose.open_simulator(
        tier, clock=clock, plan=faults, foot=foot, scan_timeout=SIM_SCAN_TIMEOUT_S
    ) as setup:
        link = MassagerLink(setup.transport, clock=clock)
        async with link:
            yield Massager(link, simulator=setup.massager, person=person is not False)


__all__ = ["Massager", "connect", "load_profile", "read_history", "simulated"]
