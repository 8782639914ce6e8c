"""ESP32 board glue: motor PWM per zone, the stop button, battery and temperature readings.

MicroPython only (`machine`): it cannot run on CPython and is not type-checked (pyproject.toml).
Pin numbers follow the wiring in docs/firmware.md; change them here for another board. No
protocol logic lives here: `core.Core` decides, this file only reads and drives pins.
"""

import math
import time

from machine import ADC, PWM, Pin

MOTOR_PINS = (25, 26, 27)  # heel, arch, forefoot: each drives one MOSFET gate (or driver input)
BUTTON_PIN = 32  # the stop button, to ground (internal pull-up)
BATTERY_PIN = 34  # ADC1: the middle of a 100k/100k divider across the cell
THERMISTOR_PIN = 35  # ADC1: 10k NTC to ground, 10k resistor from 3.3 V

PWM_HZ = 20_000  # above hearing: no motor whine
BUTTON_DEBOUNCE_MS = 200
SAMPLES = 8  # ADC readings averaged per value

BATTERY_DIVIDER = 2  # 100k over 100k
CELL_EMPTY_UV = 3_300_000  # one Li-ion cell: 0 % here (a rough linear scale) ...
CELL_FULL_UV = 4_150_000  # ... and 100 % here

SUPPLY_UV = 3_300_000
SERIES_OHM = 10_000
NTC_R0_OHM = 10_000  # at 25 °C
NTC_T0_K = 298.15
NTC_BETA = 3950
SENSOR_MARGIN_UV = 50_000  # within this of 0 V or the supply: shorted or open
BROKEN_SENSOR_DC = 0x7FFF  # out of the core's plausible range: it stops as if over-temperature


class Clock:
    """Milliseconds since power-on as a growing int (`ticks_ms` wraps; this does not)."""

    def __init__(self):
        self._last = time.ticks_ms()
        self._ms = 0

    def now(self):
        ticks = time.ticks_ms()
        self._ms += time.ticks_diff(ticks, self._last)
        self._last = ticks
        return self._ms


class Motors:
    """One PWM output per zone; created first at boot, so every motor starts at zero."""

    def __init__(self, max_level):
        self._max_level = max_level
        self._pwm = [PWM(Pin(pin), freq=PWM_HZ, duty_u16=0) for pin in MOTOR_PINS]

    def drive(self, levels):
        for zone, pwm in enumerate(self._pwm):  # (MicroPython's zip takes no `strict`)
            pwm.duty_u16(levels[zone] * 65535 // self._max_level)

    def on_levels(self, _t_ms, levels, _cause):
        """`core.Core.on_levels`: the motors follow every change at once."""
        self.drive(levels)


class Button:
    """The stop button: the interrupt only sets a flag; `take` reads it, debounced."""

    def __init__(self):
        self._pressed = False
        self._ignore_until = 0
        self._pin = Pin(BUTTON_PIN, Pin.IN, Pin.PULL_UP)
        self._pin.irq(trigger=Pin.IRQ_FALLING, handler=self._irq)

    def _irq(self, _pin):
        self._pressed = True  # no allocation in an interrupt handler

    def take(self, now_ms):
        """True once per press (bounces within BUTTON_DEBOUNCE_MS are the same press)."""
        if not self._pressed:
            return False
        self._pressed = False
        if now_ms < self._ignore_until:
            return False
        self._ignore_until = now_ms + BUTTON_DEBOUNCE_MS
        return True


class Sensors:
    """Battery charge (%) and contact temperature (tenths of °C) from the ADC."""

    def __init__(self):
        self._battery = ADC(Pin(BATTERY_PIN), atten=ADC.ATTN_11DB)
        self._thermistor = ADC(Pin(THERMISTOR_PIN), atten=ADC.ATTN_11DB)

    @staticmethod
    def _microvolts(adc):
        return sum(adc.read_uv() for _ in range(SAMPLES)) // SAMPLES

    def battery_pct(self):
        cell = self._microvolts(self._battery) * BATTERY_DIVIDER
        percent = (cell - CELL_EMPTY_UV) * 100 // (CELL_FULL_UV - CELL_EMPTY_UV)
        return max(0, min(100, percent))

    def temperature_dc(self):
        volts = self._microvolts(self._thermistor)
        if volts < SENSOR_MARGIN_UV or volts > SUPPLY_UV - SENSOR_MARGIN_UV:
            return BROKEN_SENSOR_DC
        ohms = SERIES_OHM * volts / (SUPPLY_UV - volts)  # the NTC is the lower leg
        kelvin = 1 / (1 / NTC_T0_K + math.log(ohms / NTC_R0_OHM) / NTC_BETA)
        return round((kelvin - 273.15) * 10)
