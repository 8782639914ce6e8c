"""Reference massager firmware for an ESP32: protocol v1 over BLE (docs/firmware.md).

Copied to the board beside core.py and board.py; MicroPython runs it at boot. All protocol
behaviour is `core.Core`'s: this file moves bytes, readings and time between it and the
hardware (aioble GATT server, PWM, button, ADC). MicroPython only: not run or type-checked here.
"""

import asyncio

import aioble
import bluetooth
import board
import core
import machine

NAME = "FootMassager-REF"
SERVICE_UUID = bluetooth.UUID("f00d0001-7a1e-4c3b-9e55-1b2c3d4e5f60")
CONTROL_UUID = bluetooth.UUID("f00d0002-7a1e-4c3b-9e55-1b2c3d4e5f60")
TELEMETRY_UUID = bluetooth.UUID("f00d0003-7a1e-4c3b-9e55-1b2c3d4e5f60")
BATTERY_SERVICE_UUID = bluetooth.UUID(0x180F)
BATTERY_LEVEL_UUID = bluetooth.UUID(0x2A19)

ADVERTISING_INTERVAL_US = 100_000
SENSE_INTERVAL_MS = 200  # battery and temperature are read five times a second
MAX_SLEEP_MS = 20  # the loop polls the button at least this often
HARDWARE_WATCHDOG_MS = 2000  # a hung loop resets the board; its motor pins then fall to zero


class Massager:
    def __init__(self):
        self.motors = board.Motors(core.MAX_LEVEL)  # first: every motor at zero
        self.clock = board.Clock()
        self.sensors = board.Sensors()
        self.button = board.Button()
        self.core = core.Core(
            self.clock.now(),
            battery_pct=self.sensors.battery_pct(),
            temperature_dc=self.sensors.temperature_dc(),
        )
        self.core.on_levels = self.motors.on_levels
        self.connection = None
        self.battery_shown = -1

        service = aioble.Service(SERVICE_UUID)
        self.control = aioble.Characteristic(
            service, CONTROL_UUID, write=True, write_no_response=True, capture=True
        )
        self.telemetry = aioble.Characteristic(service, TELEMETRY_UUID, read=True, notify=True)
        battery_service = aioble.Service(BATTERY_SERVICE_UUID)
        self.battery = aioble.Characteristic(
            battery_service, BATTERY_LEVEL_UUID, read=True, notify=True
        )
        aioble.register_services(service, battery_service)
        self.telemetry.write(self.core.status())

    def send(self, frames):
        """Notify each frame to the central, if there is one; none is ever queued."""
        for frame in frames:
            if frame[2] == core.STATUS:
                self.telemetry.write(frame)  # what a read of telemetry returns
            connection = self.connection
            if connection is None:
                continue
            try:  # noqa: SIM105 - MicroPython has no contextlib
                self.telemetry.notify(connection, frame)
            except OSError:
                pass  # the link just went: the disconnect handler zeroes the motors

    def show_battery(self, percent):
        if percent != self.battery_shown:
            self.battery_shown = percent
            self.battery.write(bytes((percent,)), send_update=True)

    async def serve(self):
        """Advertise, take one central at a time; a lost link zeroes the motors at once."""
        while True:
            connection = await aioble.advertise(
                ADVERTISING_INTERVAL_US, name=NAME, services=[SERVICE_UUID]
            )
            self.connection = connection
            await connection.disconnected(timeout_ms=None)
            self.connection = None
            self.core.link_lost(self.clock.now())

    async def receive(self):
        """Every control write, in order, straight to the core."""
        while True:
            _connection, data = await self.control.written()
            self.send(self.core.receive(data, self.clock.now()))

    async def tick(self):
        """Time, button and sensors; the hardware watchdog is fed only while this loop runs."""
        watchdog = machine.WDT(timeout=HARDWARE_WATCHDOG_MS)
        next_sense = 0
        while True:
            watchdog.feed()
            now = self.clock.now()
            if self.button.take(now):
                self.send(self.core.press_button(now))
            if now >= next_sense:
                next_sense = now + SENSE_INTERVAL_MS
                percent = self.sensors.battery_pct()
                self.send(self.core.sense(now, percent, self.sensors.temperature_dc()))
                self.show_battery(percent)
            self.send(self.core.tick(now))
            wait = min(self.core.next_deadline(), next_sense) - self.clock.now()
            await asyncio.sleep_ms(max(1, min(wait, MAX_SLEEP_MS)))


async def main():
    massager = Massager()
    await asyncio.gather(massager.serve(), massager.receive(), massager.tick())


asyncio.run(main())
