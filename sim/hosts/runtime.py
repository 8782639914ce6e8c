"""Runs a `Firmware` model in real (or scaled) time for a transport host to expose over BLE.

The transport host (tier 1 in-memory, tier 2 bumble GATT) hands it control writes and gives it
three hooks: send a telemetry notification, update the battery level, drop the link.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import secrets
from collections.abc import Callable

from firmware_bridge.protocol import CONTROL_CHAR_UUID, SERVICE_UUID, ScaledClock
from firmware_bridge.protocol.description import ZONE_NAMES, Description
from firmware_bridge.protocol.timebase import Clock
from sim.firmware import (
    REMOTE_TERMINATED_REASON,
    Action,
    BatteryLevel,
    Disconnect,
    FaultPlan,
    Firmware,
    Notify,
)
from sim.foot import Foot

_LOGGER = logging.getLogger(__name__)

MIN_REAL_WATCHDOG_S = 0.5  # faster than real time, the watchdog still allows this much real
# time: a loaded two-core CI machine stalls the loop for tens of ms and, now and then, for more
# than 250 ms (seen in CI at --speed 300), which must not read as a dead controller (at 1x, the
# default, the firmware's 1.5 s applies exactly)
DEFAULT_NAME = "FootMassager-SIM"


def random_static_address() -> str:
    """A BLE static random address (top two bits set), different for every simulated device.

    Two `massager run --sim` sessions on one broker must not share a device id, which is
    derived from the address.
    """
    while True:
        value = secrets.randbits(46)
        if 0 < value < (1 << 46) - 1:  # all-zero and all-one random parts are reserved
            raw = (0b11 << 46 | value).to_bytes(6, "big")
            return ":".join(f"{byte:02X}" for byte in raw)


class SimulatedMassager:
    """A firmware model plus the timing and fault plumbing every host shares."""

    def __init__(
        self,
        *,
        name: str = DEFAULT_NAME,
        address: str | None = None,
        firmware: Firmware | None = None,
        plan: FaultPlan | None = None,
        foot: Foot | None = None,
        clock: Clock | None = None,
        description: Description | None = None,
    ) -> None:
        """`description`: impersonate that model (its GATT layout, advertisement, encoding)."""
        if description is not None and description.driver == "protocol-v1":
            description = None  # our own protocol is what the firmware model speaks
        self.description = description
        self.name = name if description is None or name != DEFAULT_NAME else _name_for(description)
        self.address = address or random_static_address()
        self.firmware = firmware or (
            Firmware(plan=plan or FaultPlan())
            if description is None
            else _impersonating_firmware(description, plan or FaultPlan())
        )
        self.foot = foot or Foot()
        self.clock: Clock = clock or ScaledClock()
        if self.clock.speed > 1:
            self.firmware.watchdog_floor_s = MIN_REAL_WATCHDOG_S * self.clock.speed
        self._last_write_t = float("-inf")  # clock time of the last write taken (impersonation)
        self.connected = False
        self.reachable = True  # False: out of radio range (no advertising, connects fail)
        self.connections = 0
        self.on_notify: Callable[[bytes], None] | None = None
        self.on_battery: Callable[[int], None] | None = None
        self.on_disconnect: Callable[[int], None] | None = None
        self._wake = asyncio.Event()
        self._ticker: asyncio.Task[None] | None = None
        self._pending: set[asyncio.TimerHandle] = set()

    @property
    def running(self) -> bool:
        """True while the firmware's timers run (between `start` and `close`)."""
        return self._ticker is not None

    @property
    def plan(self) -> FaultPlan:
        return self.firmware.plan

    @property
    def control_uuid(self) -> str:
        """The characteristic every command is written to."""
        gatt = self.description.gatt if self.description else None
        return gatt.write if gatt else CONTROL_CHAR_UUID

    @property
    def advertised_services(self) -> list[str]:
        if self.description is None:
            return [SERVICE_UUID]
        return list(self.description.match.services)

    @property
    def manufacturer_data(self) -> dict[int, bytes]:
        match = self.description.match if self.description else None
        if match is None or match.manufacturer_id is None:
            return {}
        return {match.manufacturer_id: bytes.fromhex(match.manufacturer_prefix) + b"\x01"}

    @property
    def has_battery_service(self) -> bool:
        gatt = self.description.gatt if self.description else None
        return gatt.battery if gatt else True

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Power on: run the firmware's timers until `close`."""
        if self._ticker is None:
            self._ticker = asyncio.create_task(self._tick_loop(), name=f"sim-tick {self.name}")

    async def close(self) -> None:
        for handle in self._pending:
            handle.cancel()
        self._pending.clear()
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None

    def attach(self) -> None:
        """A central connected."""
        self.connected = True
        self.connections += 1

    def detach(self) -> None:
        """The link is gone (either side); the firmware keeps running, watchdog included."""
        self.connected = False
        for handle in self._pending:
            handle.cancel()
        self._pending.clear()
        self.firmware.link_lost(self.clock.now())
        self._wake.set()

    # -- inputs from the host --------------------------------------------------------------

    def write(self, data: bytes, *, with_response: bool | None = None) -> None:
        """A write to the control characteristic arrived (after any slow-write delay).

        `with_response`: True for an ATT Write Request, False for a Write Command, None if the
        host cannot tell; the firmware records it with the frame.
        """
        now = self.clock.now()
        if self.description is None:
            actions = self.firmware.receive(bytes(data), now, with_response=with_response)
        else:
            # A simple device ignores what it cannot parse (or, if the plan says so, what came
            # too soon after the last write): no NACK, nothing changes.
            crowded = now - self._last_write_t < self.plan.drop_crowded_s
            motors = {} if crowded else self.description.levels_from(bytes(data)) or {}
            if motors:
                self._last_write_t = now  # the parser is busy after a write it took
            raw = bytes(data)
            actions = self.firmware.drive(motors, now, raw=raw, with_response=with_response)
        self._dispatch(actions)
        self._wake.set()

    def press_button(self) -> None:
        """Someone pressed the device's stop button."""
        self._dispatch(self.firmware.press_button(self.clock.now()))
        self._wake.set()

    def drop_link(self, reason: int = REMOTE_TERMINATED_REASON) -> None:
        """Peripheral-initiated disconnect (or, with reason 0x08, the user walked out of range)."""
        self._dispatch([Disconnect(reason)])

    def rating(self) -> int:
        """What the virtual user would say right now, 0-10."""
        self._dispatch(self.firmware.tick(self.clock.now()))  # what falls due is still sent
        return self.foot.rate(self.zone_vibration(), self.clock.now())

    def zone_vibration(self) -> tuple[float, ...]:
        """Amplitude per foot zone (heel, arch, forefoot): a motor shakes every zone it plays."""
        motors = self.firmware.vibration()
        output = self.description.output if self.description else None
        if output is None:
            return motors
        zones = [0.0] * len(ZONE_NAMES)
        for motor, played in enumerate(output.motors):
            for zone in played:
                index = ZONE_NAMES.index(zone)
                zones[index] = max(zones[index], motors[motor])
        return tuple(zones)

    # -- internals -----------------------------------------------------------------------

    async def _tick_loop(self) -> None:
        while True:
            now = self.clock.now()
            self._dispatch(self.firmware.tick(now))
            delay = self.clock.real_seconds(self.firmware.next_deadline() - self.clock.now())
            self._wake.clear()
            # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancel that races
            # with the wake-up, and close() would then wait forever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(delay, 0.0005)):
                    await self._wake.wait()

    def _dispatch(self, actions: list[Action]) -> None:
        loop = asyncio.get_running_loop()
        for action in actions:
            match action:
                case Notify(data=data, delay_s=delay_s):
                    if not self.connected or self.on_notify is None:
                        continue
                    if delay_s > 0:
                        handle = loop.call_later(self.clock.real_seconds(delay_s), self._send, data)
                        self._pending.add(handle)
                    else:
                        self.on_notify(data)
                case BatteryLevel(percent=percent):
                    if self.connected and self.on_battery is not None:
                        self.on_battery(percent)
                case Disconnect(reason=reason):
                    if self.connected and self.on_disconnect is not None:
                        _LOGGER.debug("%s: dropping link (reason 0x%02x)", self.name, reason)
                        self.on_disconnect(reason)

    def _send(self, data: bytes) -> None:
        now = asyncio.get_running_loop().time()
        self._pending = {h for h in self._pending if h.when() > now}
        if self.connected and self.on_notify is not None:
            self.on_notify(data)


def _name_for(description: Description) -> str:
    """An advertised name the description's own name globs accept (else the default)."""
    for glob in description.match.names:
        name = glob.replace("*", "SIM").replace("?", "S")
        if "[" not in name:
            return name
    return DEFAULT_NAME


def _impersonating_firmware(description: Description, plan: FaultPlan) -> Firmware:
    """The firmware model set up as the described device: its motors, levels and timeout."""
    output = description.output
    if output is None:
        raise ValueError(f"{description.id}: nothing to impersonate")
    watchdog = description.timing.watchdog_s or None
    if watchdog is None:
        plan = dataclasses.replace(plan, no_watchdog=True)  # nothing on this device zeroes it
    return Firmware(
        zones=len(output.motors),
        max_level=output.max_level,
        has_heat=False,
        plan=plan,
        default_watchdog_s=watchdog,
    )
