"""Driving a "simple write" device: protocol v1 on our side, level writes on the air.

`SimpleWriteTransport` is a `Transport` that answers the link's protocol-v1 frames itself and
turns intensities into the writes its `Description` spells. The link, the governor and the stop
path stay exactly the ones protocol-v1 devices get; what the device cannot do is said, not
pretended:

- CAPABILITIES carry WATCHDOG only when the device zeroes itself within 3 s of silence (then
  this transport re-sends the levels every `keepalive_s`); otherwise the link flags
  `failsafe: none` and limits output (S4).
- An ACK for a stop is sent only when the zero went out as a Write Request, which the device's
  Bluetooth stack acknowledged: a device written without response leaves the stop unconfirmed.
  A zero that fell inside the device's minimum gap is written again after it, before the ACK.
- STATUS reports the levels last written (what the device was told; it reports nothing back),
  and a battery level only when the device has the Battery Service (`measures`).
- A controller-side dead-man: when no frame comes from the link within its watchdog period
  while output is on (a session task stalled or died), this transport writes zero and reports
  WATCHDOG_EXPIRED (first, so the link latches even if that write fails), and refuses any
  non-zero level until the next HELLO. It runs in the controller's process: it cannot stop a
  device it can no longer reach, or act when the whole process is stuck or killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

from bleak import BleakClient
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient
from bleak.backends.device import BLEDevice
from bleak.exc import BleakError

from firmware_bridge.errors import DeviceConnectionError
from firmware_bridge.protocol import (
    BATTERY_LEVEL_CHAR_UUID,
    MAX_FRAME_SIZE,
    Ack,
    Capabilities,
    CapabilityFlags,
    ErrorCode,
    Fault,
    FaultCode,
    Heartbeat,
    Hello,
    Message,
    Nack,
    QueryStatus,
    ScaledClock,
    SetIntensity,
    SetWatchdog,
    Status,
    Stop,
    decode,
    encode,
)
from firmware_bridge.protocol.description import ZONE_NAMES, Description
from firmware_bridge.protocol.timebase import Clock
from firmware_bridge.transport.bleak_transport import BleakTransport

_LOGGER = logging.getLogger(__name__)

SIMPLE_MODEL_ID = 0xFFFF  # CAPABILITIES model for a described device: not ours, see the id
DEADMAN_S = 1.5  # until the link sets its watchdog period: the protocol's default (S4)
MIN_REAL_DEADMAN_S = 0.5  # on a sped-up clock, never less real time than this: a loaded
# two-core machine stalls the loop for tens of ms, which must not read as a dead session
STATUS_PERIOD_S = 0.5  # synthetic STATUS twice per protocol period: the link's liveness is met
TICK_S = 0.1  # how often the dead-man, keep-alive and status are looked at (clock seconds)
NOMINAL_BATTERY_PCT = 100  # in STATUS when the device has no Battery Service (not reported)
NOMINAL_TEMPERATURE_C = 25.0  # in STATUS: these devices measure none (not reported)


class SimpleWriteTransport(BleakTransport):
    """A described simple-write massager over bleak, spoken to in protocol v1 by the link."""

    def __init__(
        self,
        device: BLEDevice,
        description: Description,
        *,
        backend: type[BaseBleakClient] | None = None,
        backend_kwargs: dict[str, Any] | None = None,
        clock: Clock | None = None,
        **options: Any,
    ) -> None:
        if description.gatt is None or description.output is None:
            raise ValueError(f"{description.id}: not a simple-write description")
        super().__init__(device, backend=backend, backend_kwargs=backend_kwargs, **options)
        self.description = description
        self.clock: Clock = clock or ScaledClock()
        self.measures = frozenset({"battery"}) if description.gatt.battery else frozenset()
        self._gap_s = description.timing.min_gap_ms / 1000
        self._seq = 0
        self._battery: int | None = None
        self._deadman_s = self._deadman_period(DEADMAN_S)
        self._ticker: asyncio.Task[None] | None = None
        self._reset()

    def _reset(self) -> None:
        """A new connection: the device is told zero first (by the link), nothing is pending."""
        motors = (0,) * self.description.motors
        self._zone_levels: tuple[int, ...] = (0,) * len(ZONE_NAMES)  # last fully set, per zone
        self._written: tuple[int, ...] = motors  # per motor, fully written: kept alive
        self._motor_levels: tuple[int, ...] = motors  # per motor, what the device may hold
        self._setting = False  # a level write is under way: the keep-alive waits
        self._latched = False  # the dead-man fired: nothing non-zero until the next HELLO
        self._stops = 0  # stop generation: a level write that a stop overtook is dropped
        self._last_feed = self.clock.now()
        self._last_write = float("-inf")  # clock time of the last write to the device
        self._next_status = self.clock.now()

    def _deadman_period(self, seconds: float) -> float:
        return max(seconds, MIN_REAL_DEADMAN_S * self.clock.speed)

    @property
    def max_frame_size(self) -> int:
        return MAX_FRAME_SIZE  # frames stay in this process; only level writes reach the air

    @property
    def supports_write_with_response(self) -> bool:
        output = self.description.output
        return output is not None and output.with_response and super().supports_write_with_response

    @property
    def applied_motor_levels(self) -> tuple[int, ...]:
        """Per motor, what the device was last told in full."""
        return self._written

    # -- connection ---------------------------------------------------------------------------

    async def _setup(self, client: BleakClient) -> None:
        self._fresh()  # before any await: a ticker of the last connection must not write here
        gatt = self.description.gatt
        if gatt is None:  # checked in __init__; for the type checker
            raise DeviceConnectionError(f"{self.description.id}: no [gatt]")
        char = client.services.get_characteristic(gatt.write)
        if char is None or not {"write", "write-without-response"} & set(char.properties):
            raise DeviceConnectionError(
                f"{self.name}: no writable characteristic {gatt.write}; is this a "
                f"{self.description.name} (description {self.description.id})?"
            )
        self._control = char
        if gatt.battery:
            battery = client.services.get_characteristic(BATTERY_LEVEL_CHAR_UUID)
            if battery is not None:
                async with asyncio.timeout(self._timeout):
                    with contextlib.suppress(BleakError):
                        self._battery = min(100, (await client.read_gatt_char(battery))[0])
                    if "notify" in battery.properties:
                        await client.start_notify(battery, self._battery_notified)
        self._ticker = asyncio.create_task(self._tick(), name=f"{self.name} simple-write")
        _LOGGER.debug("%s: connected as %s", self.name, self.description.id)

    async def disconnect(self) -> None:
        ticker = self._halt()
        if ticker is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
        await super().disconnect()

    def _halt(self) -> asyncio.Task[None] | None:
        ticker, self._ticker = self._ticker, None
        if ticker is not None:
            ticker.cancel()
        return ticker

    def _fresh(self) -> asyncio.Task[None] | None:
        """No ticker of an earlier connection and nothing pending: (re)connections start from
        zero (the link's first frame), and a stale keep-alive can never precede it (S5)."""
        ticker = self._halt()
        self._reset()
        return ticker

    def _disconnected(self, client: BleakClient) -> None:
        if client is self._client:
            self._fresh()  # nothing more can reach the device until the link reconnects
        super()._disconnected(client)

    def _battery_notified(self, _char: BleakGATTCharacteristic, data: bytearray) -> None:
        if data:
            self._battery = min(100, data[0])
        super()._battery_notified(_char, data)

    # -- frames from the link --------------------------------------------------------------

    async def write(self, data: bytes, *, response: bool) -> None:
        """Handle one protocol-v1 frame from the link (the device sees only level writes)."""
        frame = decode(data)  # the link never sends a malformed frame: a ProtocolError is a bug
        if self._dead_man_due(self.clock.now()):
            await self._dead_man()  # the frame comes too late: the session went quiet first
        self._last_feed = self.clock.now()  # any frame feeds the dead-man, as on the device
        msg, seq = frame.message, frame.seq
        match msg:
            case Hello():
                self._latched = False  # an explicit new start, as on a protocol-v1 device
                self._reply(self._capabilities())
            case SetWatchdog(ms=ms):
                self._deadman_s = self._deadman_period(ms / 1000)
                self._reply(Ack(seq, msg.TYPE, self._zone_levels))
            case SetIntensity(levels=levels) if self._latched and any(levels):
                self._reply(Nack(seq, msg.TYPE, ErrorCode.LATCHED, self._zone_levels))
            case SetIntensity(levels=levels):
                if await self._set(levels):
                    self._reply(Ack(seq, msg.TYPE, self._zone_levels))
            case Stop():
                confirmed = await self._stop(response=response)
                if confirmed and response:  # a Write Command is acknowledged by nobody
                    self._reply(Ack(seq, msg.TYPE, self._zone_levels))
            case Heartbeat():
                pass
            case QueryStatus():
                self._reply(self._status())
            case _:
                self._reply(Nack(seq, msg.TYPE, ErrorCode.UNSUPPORTED, self._zone_levels))

    async def _set(self, levels: tuple[int, ...]) -> bool:
        """Write these zone levels after the device's minimum gap; False if a stop overtook."""
        stops = self._stops
        self._setting = True
        try:
            await self._wait_gap()
            if self._stops != stops:
                return False  # a stop was written meanwhile: it has the last word
            motors = self.description.motor_levels(levels)
            # While the writes go out (or if they fail half-way) the device may hold either:
            # the dead-man assumes the higher, until a stop or the finished writes say otherwise.
            before = self._motor_levels
            self._motor_levels = tuple(max(a, b) for a, b in zip(before, motors, strict=True))
            await self._device_writes(self.description.writes_for(motors), stops=stops)
            if self._stops != stops:
                return False
            self._zone_levels, self._motor_levels, self._written = tuple(levels), motors, motors
            return True
        finally:
            self._setting = False

    async def _stop(self, *, response: bool) -> bool:
        """Zero now, ahead of any gap (S3). A zero that fell inside the device's minimum gap may
        have been dropped: it is written again once the gap has passed, before it counts.
        The bookkeeping says zero only once the writes went out, so a failed stop is retried."""
        self._stops += 1
        crowded = self.clock.now() - self._last_write < self._gap_s
        writes = self.description.stop_writes()
        await self._device_write(writes[0], response=response)
        for write in writes[1:]:
            await self._wait_gap()
            await self._device_write(write, response=response)
        if crowded:
            for write in writes:
                await self._wait_gap()
                await self._device_write(write, response=response)
        motors = (0,) * self.description.motors
        self._zone_levels = (0,) * len(ZONE_NAMES)
        self._motor_levels = self._written = motors
        return True

    # -- the device side ---------------------------------------------------------------------

    def _dead_man_due(self, now: float) -> bool:
        """Output is on and either the session went quiet or an earlier zero did not go out."""
        quiet = now - self._last_feed > self._deadman_s
        return any(self._motor_levels) and (quiet or self._latched)

    async def _dead_man(self) -> None:
        """Latch, tell the link first (so it latches even if the write fails), then zero."""
        if not self._latched:
            self._latched = True
            _LOGGER.warning(
                "%s: nothing from the session for %.1f s; writing zero",
                self.name,
                self.clock.now() - self._last_feed,
            )
            self._reply(Fault(FaultCode.WATCHDOG_EXPIRED))
        await self._stop(response=self.supports_write_with_response)

    async def _wait_gap(self) -> None:
        while (wait := self._last_write + self._gap_s - self.clock.now()) > 0:
            await self.clock.sleep(wait)  # again: another write may have gone out meanwhile

    async def _device_writes(self, writes: Sequence[bytes], *, stops: int) -> None:
        for index, write in enumerate(writes):
            if index:
                await self._wait_gap()
            if self._stops != stops:
                return
            await self._device_write(write, response=self.supports_write_with_response)

    async def _device_write(self, data: bytes, *, response: bool) -> None:
        properties = self._control.properties if self._control is not None else []
        if "write-without-response" not in properties:
            response = True  # a write-only characteristic takes nothing else (BlueZ refuses)
        self._last_write = self.clock.now()
        await super().write(data, response=response)

    async def _tick(self) -> None:
        """Dead-man, keep-alive and synthetic STATUS, in clock time."""
        keepalive = self.description.timing.keepalive_s
        while True:
            await self.clock.sleep(TICK_S)
            if not self.is_connected:
                continue
            now = self.clock.now()
            try:
                if self._dead_man_due(now):
                    await self._dead_man()
                elif (
                    keepalive
                    and not (self._setting or self._latched)
                    and any(self._written)
                    and now - self._last_write >= keepalive
                ):
                    writes = self.description.writes_for(self._written)
                    await self._device_writes(writes, stops=self._stops)
            except Exception as exc:  # noqa: BLE001 - this task must outlive any one failed write
                _LOGGER.warning("%s: background write failed: %r", self.name, exc)
            if now >= self._next_status:
                self._next_status = now + STATUS_PERIOD_S
                self._reply(self._status())

    def _capabilities(self) -> Capabilities:
        output, timing = self.description.output, self.description.timing
        max_level = output.max_level if output else 0  # never None: checked in __init__
        flags = CapabilityFlags(0)
        if self.description.failsafe == "watchdog":
            flags |= CapabilityFlags.WATCHDOG
        if self.supports_write_with_response:
            flags |= CapabilityFlags.WRITE_WITH_RESPONSE
        return Capabilities(
            SIMPLE_MODEL_ID,
            (0, 0, 0),
            len(ZONE_NAMES),
            max_level,
            flags,
            round(timing.watchdog_s * 1000) if flags & CapabilityFlags.WATCHDOG else 0,
        )

    def _status(self) -> Status:
        battery = self._battery if self._battery is not None else NOMINAL_BATTERY_PCT
        return Status(self._zone_levels, battery, NOMINAL_TEMPERATURE_C)

    def _reply(self, message: Message) -> None:
        """Deliver a frame to the link from the loop, never inside `write` (as a stack does)."""
        data = encode(message, self._seq)
        self._seq = (self._seq + 1) & 0xFF
        asyncio.get_running_loop().call_soon(self._deliver, data)

    def _deliver(self, data: bytes) -> None:
        if self.is_connected and self.on_frame is not None:
            self.on_frame(data)
