"""The sans-IO firmware model: what reaches the motors, and when, for each input."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from firmware_bridge.protocol import (
    Ack,
    ButtonPress,
    Capabilities,
    ErrorCode,
    Fault,
    FaultCode,
    FaultFlags,
    FrameType,
    Heartbeat,
    Hello,
    Message,
    Nack,
    QueryStatus,
    SetIntensity,
    SetTimer,
    SetWatchdog,
    Status,
    Stop,
    crc16,
    decode,
    encode,
)
from sim.firmware import (
    MAX_LEVEL,
    BatteryLevel,
    Disconnect,
    FaultPlan,
    Firmware,
    Notify,
)


def replies(actions: Sequence[object]) -> list[Message]:
    return [decode(a.data).message for a in actions if isinstance(a, Notify)]


def send(fw: Firmware, message: Message, now: float, seq: int = 0) -> list[Message]:
    return replies(fw.receive(encode(message, seq), now))


def test_hello_answers_capabilities() -> None:
    (caps,) = send(Firmware(), Hello(), 0.0)
    assert isinstance(caps, Capabilities)
    assert (caps.zones, caps.max_level, caps.has_watchdog, caps.watchdog_ms) == (3, 20, True, 1500)


def test_set_intensity_is_applied_recorded_and_acked() -> None:
    fw = Firmware()
    (ack,) = send(fw, SetIntensity((3, 4, 5)), 1.25, seq=9)
    assert ack == Ack(9, FrameType.SET_INTENSITY, (3, 4, 5))
    assert fw.levels == (3, 4, 5)
    assert fw.applied[-1].t == 1.25
    assert fw.applied[-1].levels == (3, 4, 5)
    assert fw.received[-1].frame is not None


@pytest.mark.parametrize(
    ("levels", "code"),
    [((21, 0, 0), ErrorCode.OUT_OF_RANGE), ((1, 1), ErrorCode.OUT_OF_RANGE)],
)
def test_out_of_range_intensity_is_refused_and_not_applied(
    levels: tuple[int, ...], code: ErrorCode
) -> None:
    fw = Firmware()
    (nack,) = send(fw, SetIntensity(levels), 0.0)
    assert isinstance(nack, Nack)
    assert nack.code == code
    assert fw.applied == []


def test_watchdog_zeroes_output_at_its_expiry_even_when_ticked_late() -> None:
    fw = Firmware()
    fw.tick(10.0)
    send(fw, SetIntensity((5, 5, 5)), 10.0)
    assert fw.next_deadline() == pytest.approx(10.5)  # next status, before the 11.5 watchdog
    fw.tick(11.4)
    assert fw.levels == (5, 5, 5)  # 1.4 s < 1.5 s watchdog
    messages = replies(fw.tick(13.0))
    assert fw.levels == (0, 0, 0)
    assert fw.applied[-1].t == pytest.approx(11.5)
    assert fw.applied[-1].cause == "watchdog"
    assert Fault(FaultCode.WATCHDOG_EXPIRED) in messages
    assert FaultFlags.WATCHDOG_TRIPPED in fw.status().faults


def test_heartbeat_feeds_the_watchdog_and_invalid_frames_do_not() -> None:
    fw = Firmware()
    send(fw, SetIntensity((5, 5, 5)), 0.0)
    for t in (1.0, 2.0, 3.0):
        assert send(fw, Heartbeat(), t) == []
        fw.receive(b"\x01\x02\x03garbage", t + 0.5)  # malformed: does not count
    fw.tick(4.4)
    assert fw.levels == (5, 5, 5)
    fw.tick(4.6)
    assert fw.levels == (0, 0, 0)


def test_a_device_frame_sent_to_the_device_is_nacked_and_does_not_feed_the_watchdog() -> None:
    fw = Firmware()
    send(fw, SetIntensity((5, 5, 5)), 0.0)
    echoed = encode(fw.status(), 9)  # a STATUS written back to the device: well formed, wrong way
    for t in (0.4, 0.8, 1.2):
        (nack,) = replies(fw.receive(echoed, t))
        assert nack == Nack(9, FrameType.STATUS, ErrorCode.UNKNOWN_TYPE, (5, 5, 5))
    fw.tick(1.55)
    assert fw.levels == (0, 0, 0)  # the watchdog ran from the last command, at 0.0
    assert fw.applied[-1].t == pytest.approx(1.5)


def _with_crc(body: bytes) -> bytes:
    return body + crc16(body).to_bytes(2, "big")


def test_heartbeat_with_payload_bytes_is_nacked_and_does_not_feed_the_watchdog() -> None:
    fw = Firmware()
    send(fw, SetIntensity((5, 5, 5)), 0.0)
    padded = _with_crc(bytes([1, 7, FrameType.HEARTBEAT, 2, 0, 0]))  # CRC right, length wrong
    for t in (0.4, 0.8, 1.2, 1.45):
        (nack,) = replies(fw.receive(padded, t))
        assert nack == Nack(7, FrameType.HEARTBEAT, ErrorCode.BAD_LENGTH, (5, 5, 5))
        assert fw.received[-1].frame is None
        assert "HEARTBEAT" in (fw.received[-1].error or "")
    fw.tick(1.49)
    assert fw.levels == (5, 5, 5)
    assert Fault(FaultCode.WATCHDOG_EXPIRED) in replies(fw.receive(padded, 1.55))
    assert fw.levels == (0, 0, 0)
    assert fw.applied[-1].cause == "watchdog"
    assert fw.applied[-1].t == pytest.approx(1.5)  # the period after the last *valid* frame


@pytest.mark.parametrize(
    ("ms", "accepted"), [(1500, True), (3000, True), (3001, False), (100, False)]
)
def test_watchdog_period_is_bounded(ms: int, accepted: bool) -> None:
    fw = Firmware()
    (reply,) = send(fw, SetWatchdog(ms), 0.0)
    assert isinstance(reply, Ack) is accepted
    assert fw.watchdog_s == (ms / 1000 if accepted else 1.5)


def test_no_watchdog_firmware_says_so_and_never_zeroes_by_itself() -> None:
    fw = Firmware(plan=FaultPlan(no_watchdog=True))
    (caps,) = send(fw, Hello(), 0.0)
    assert isinstance(caps, Capabilities)
    assert not caps.has_watchdog
    (nack,) = send(fw, SetWatchdog(1500), 0.0)
    assert isinstance(nack, Nack)
    assert nack.code == ErrorCode.UNSUPPORTED
    send(fw, SetIntensity((5, 5, 5)), 0.0)
    fw.tick(60.0)
    assert fw.levels == (5, 5, 5)


def test_stop_zeroes_everything() -> None:
    fw = Firmware()
    send(fw, SetIntensity((5, 6, 7)), 0.0)
    (ack,) = send(fw, Stop(), 0.1)
    assert ack == Ack(0, FrameType.STOP, (0, 0, 0))
    assert fw.applied[-1].cause == "stop"


def test_button_zeroes_latches_and_only_hello_clears_the_latch() -> None:
    fw = Firmware()
    send(fw, SetIntensity((5, 5, 5)), 0.0)
    assert replies(fw.press_button(0.2)) == [ButtonPress()]
    assert fw.levels == (0, 0, 0)
    (nack,) = send(fw, SetIntensity((1, 1, 1)), 0.3)
    assert isinstance(nack, Nack)
    assert nack.code == ErrorCode.LATCHED
    send(fw, Hello(), 0.4)
    send(fw, SetIntensity((1, 1, 1)), 0.5)
    assert fw.levels == (1, 1, 1)


def test_device_timer_zeroes_output_when_it_elapses() -> None:
    fw = Firmware()
    send(fw, SetTimer(2), 0.0)
    send(fw, SetIntensity((4, 4, 4)), 0.0)
    for t in (0.5, 1.0, 1.5):
        send(fw, Heartbeat(), t)
    assert Fault(FaultCode.TIMER_EXPIRED) in replies(fw.tick(2.0))
    assert fw.applied[-1].cause == "timer"
    (nack,) = send(fw, SetTimer(1801), 3.0)
    assert isinstance(nack, Nack)


def test_battery_drains_in_proportion_to_output() -> None:
    idle, busy = (
        Firmware(plan=FaultPlan(no_watchdog=True)),
        Firmware(plan=FaultPlan(no_watchdog=True)),
    )
    send(busy, SetIntensity((MAX_LEVEL,) * 3), 0.0)
    actions = busy.tick(600.0)
    idle.tick(600.0)
    assert 100 - busy.battery_pct == pytest.approx(12.3, abs=0.2)  # 0.02 %/s full + idle drain
    assert 100 - idle.battery_pct == pytest.approx(0.3, abs=0.05)
    assert any(isinstance(a, BatteryLevel) for a in actions)


def test_low_battery_is_flagged() -> None:
    fw = Firmware(battery_pct=4.0)
    status = next(m for m in replies(fw.tick(1.0)) if isinstance(m, Status))
    assert FaultFlags.LOW_BATTERY in status.faults


def test_temperature_rises_with_output_and_heat_and_firmware_cuts_off_at_43() -> None:
    fw = Firmware(plan=FaultPlan(no_watchdog=True))
    fw.heat_on = True
    send(fw, SetIntensity((MAX_LEVEL,) * 3), 0.0)
    fw.tick(200.0)
    assert 40.0 < fw.temperature_c < 43.0
    assert fw.levels == (MAX_LEVEL,) * 3
    messages = replies(fw.tick(1200.0))
    assert fw.levels == (0, 0, 0)
    assert fw.applied[-1].cause == "over_temperature"
    assert any(isinstance(m, Fault) and m.code == FaultCode.OVER_TEMPERATURE for m in messages)


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"\x01\x02", ErrorCode.BAD_LENGTH),
        (encode(Stop(), 4)[:-1] + b"\x00", ErrorCode.BAD_CRC),
        (_with_crc(bytes([1, 4, FrameType.STOP, 1, 0])), ErrorCode.BAD_LENGTH),
        (_with_crc(bytes([1, 4, FrameType.SET_WATCHDOG, 1, 5])), ErrorCode.BAD_LENGTH),
        (_with_crc(bytes([1, 4, FrameType.SET_INTENSITY, 9, *[1] * 9])), ErrorCode.BAD_LENGTH),
    ],
)
def test_malformed_writes_are_recorded_and_nacked(raw: bytes, code: ErrorCode) -> None:
    fw = Firmware()
    (nack,) = replies(fw.receive(raw, 0.0))
    assert isinstance(nack, Nack)
    assert nack.code == code
    assert fw.received[-1].error is not None


@pytest.mark.parametrize("with_response", [True, False])
def test_each_write_records_how_it_arrived(with_response: bool) -> None:
    fw = Firmware()
    fw.receive(encode(Stop(), 1), 0.0, with_response=with_response)
    fw.receive(b"\x01\x02", 0.1, with_response=with_response)  # malformed ones too
    fw.receive(encode(Stop(), 2), 0.2)  # a host that cannot tell says nothing
    assert [r.with_response for r in fw.received] == [with_response, with_response, None]


def test_fault_plan_nacks_chosen_commands() -> None:
    fw = Firmware(plan=FaultPlan(nack_types=frozenset({FrameType.SET_INTENSITY})))
    (nack,) = send(fw, SetIntensity((1, 1, 1)), 0.0)
    assert isinstance(nack, Nack)
    assert nack.code == ErrorCode.BUSY
    assert fw.levels == (0, 0, 0)


def test_fault_plan_drops_and_garbles_notifications_deterministically() -> None:
    def run(seed: int) -> list[bytes]:
        fw = Firmware(plan=FaultPlan(drop_notify=0.3, garble_notify=0.3, seed=seed))
        out: list[bytes] = []
        for i in range(200):
            out += [
                a.data
                for a in fw.receive(encode(QueryStatus(), i), i * 0.01)
                if isinstance(a, Notify)
            ]
        return out

    first = run(1)
    assert first == run(1)
    assert 100 < len(first) < 180  # about 30 % dropped
    garbled = 0
    for data in first:
        try:
            decode(data)
        except Exception:
            garbled += 1
    assert 30 < garbled < 90


def test_reboot_forgets_settings_zeroes_and_drops_the_link() -> None:
    fw = Firmware(plan=FaultPlan(reboot_at_s=5.0))
    send(fw, SetWatchdog(3000), 0.0)
    send(fw, SetIntensity((2, 2, 2)), 4.0)
    actions = fw.tick(5.0)
    assert any(isinstance(a, Disconnect) for a in actions)
    assert fw.levels == (0, 0, 0)
    assert fw.watchdog_s == 1.5
    assert fw.boots == 2


def test_scheduled_disconnect_fires_once() -> None:
    fw = Firmware(plan=FaultPlan(disconnect_at_s=1.0))
    assert fw.next_deadline() == pytest.approx(0.5)
    fw.tick(0.5)
    assert fw.next_deadline() == pytest.approx(1.0)
    assert sum(isinstance(a, Disconnect) for a in fw.tick(1.0) + fw.tick(2.0)) == 1


def test_watchdog_floor_for_faster_than_real_time_hosts() -> None:
    fw = Firmware(watchdog_floor_s=3.0)  # what a host at 12x sets: 250 ms of real time
    send(fw, SetIntensity((5, 5, 5)), 0.0)
    fw.tick(2.9)
    assert fw.levels == (5, 5, 5)
    fw.tick(3.1)
    assert fw.levels == (0, 0, 0)
    assert fw.applied[-1].t == pytest.approx(3.0)
