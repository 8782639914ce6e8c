"""Wire codec: golden byte vectors for every frame type, and properties over arbitrary bytes."""

from __future__ import annotations

import binascii
import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware_bridge.errors import ProtocolError
from firmware_bridge.protocol import (
    MAX_FRAME_SIZE,
    Ack,
    Button,
    ButtonPress,
    Capabilities,
    CapabilityFlags,
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

# Header (version, seq, type, length) | payload | CRC-16/CCITT-FALSE, big-endian.
GOLDEN: list[tuple[Message, int, str]] = [
    (Hello(), 0, "01000101 01 af7d"),
    (SetIntensity((1, 2, 3)), 5, "01050203 010203 b4c0"),
    (Stop(), 7, "01070300 22b7"),
    (Heartbeat(), 255, "01ff0400 f1d3"),
    (SetWatchdog(1500), 1, "01010502 05dc c6c0"),
    (SetTimer(900), 2, "01020602 0384 c295"),
    (QueryStatus(), 3, "01030700 32b3"),
    (
        Capabilities(0x0F00, (1, 2, 0), 3, 20, CapabilityFlags(0x0F), 1500),
        0,
        "0100810a 0f0001020003140f05dc eed2",
    ),
    (Ack(5, FrameType.SET_INTENSITY, (1, 2, 3)), 9, "01098205 0502010203 8d4d"),
    (
        Nack(6, FrameType.SET_WATCHDOG, ErrorCode.OUT_OF_RANGE, (0, 0, 0)),
        10,
        "010a8306 060504000000 9172",
    ),
    (Status((4, 4, 0), 87, 33.5, FaultFlags.NONE), 11, "010b8407 04040057014f00 da34"),
    (
        Status((0, 0, 0), 4, -1.5, FaultFlags.LOW_BATTERY | FaultFlags.LATCHED),
        12,
        "010c8407 00000004fff112 186c",
    ),
    (ButtonPress(Button.STOP), 13, "010d8501 01 7161"),
    (Fault(FaultCode.WATCHDOG_EXPIRED, 0), 14, "010e8602 0400 dc1d"),
    (Fault(FaultCode.OVER_TEMPERATURE, 43), 15, "010f8602 012b 1cb0"),
]


def test_every_frame_type_has_a_golden_vector() -> None:
    assert {message.TYPE for message, _, _ in GOLDEN} == set(FrameType)


@pytest.mark.parametrize(("message", "seq", "golden"), GOLDEN, ids=lambda v: repr(v)[:40])
def test_golden_vectors(message: Message, seq: int, golden: str) -> None:
    wire = bytes.fromhex(golden.replace(" ", ""))
    assert encode(message, seq) == wire
    assert decode(wire).message == message
    assert decode(wire).seq == seq
    assert len(wire) <= MAX_FRAME_SIZE
    # The CRC agrees with the standard library's independent CRC-CCITT implementation.
    assert int.from_bytes(wire[-2:], "big") == binascii.crc_hqx(wire[:-2], 0xFFFF)


def test_crc_check_value() -> None:
    assert crc16(b"123456789") == 0x29B1  # the published check value of CRC-16/CCITT-FALSE


def _with_crc(body_hex: str) -> bytes:
    body = bytes.fromhex(body_hex)
    return body + crc16(body).to_bytes(2, "big")


@pytest.mark.parametrize(
    ("wire", "problem"),
    [
        (b"", "must be 6-20"),
        (b"\x01\x00\x03\x00\x22", "must be 6-20"),
        (bytes(21), "must be 6-20"),
        (_with_crc("01070301"), "does not match"),
        (bytes.fromhex("0107030022b8"), "CRC mismatch"),
        (_with_crc("02070300"), "protocol version 2"),
        (_with_crc("01077f00"), "unknown frame type"),
        (_with_crc("01000100"), "HELLO: payload of 0 bytes, must be 1"),
        (_with_crc("0100850107"), "unknown button"),
        (_with_crc("010086020900"), "unknown fault code"),
        (_with_crc("0100830401021900"), "unknown error code"),
        (_with_crc("0100840401020304"), r"STATUS: payload of 4 bytes, must be 4 \+ zones \(5-12\)"),
        (_with_crc("01008402ff02"), "STATUS: payload of 2 bytes"),
        (_with_crc("010084050065000000"), "battery 101"),
    ],
)
def test_malformed_frames_raise_protocol_error(wire: bytes, problem: str) -> None:
    with pytest.raises(ProtocolError, match=problem):
        decode(wire)


def _exactly(size: int) -> range:
    return range(size, size + 1)


def _per_zone(fixed: int) -> range:
    return range(fixed + 1, fixed + 8 + 1)  # one level byte per zone, 1-8 zones


# The payload size each type must carry (docs/protocol.md), written out independently of the
# codec: fixed-size types have one size, zone-carrying types one size per zone count.
PAYLOAD_SIZES: dict[FrameType, range] = {
    FrameType.HELLO: _exactly(1),
    FrameType.SET_INTENSITY: _per_zone(0),
    FrameType.STOP: _exactly(0),
    FrameType.HEARTBEAT: _exactly(0),
    FrameType.SET_WATCHDOG: _exactly(2),
    FrameType.SET_TIMER: _exactly(2),
    FrameType.QUERY_STATUS: _exactly(0),
    FrameType.CAPABILITIES: _exactly(10),
    FrameType.ACK: _per_zone(2),
    FrameType.NACK: _per_zone(3),
    FrameType.STATUS: _per_zone(4),
    FrameType.BUTTON: _exactly(1),
    FrameType.FAULT: _exactly(2),
}


def _frame(frame_type: int, payload: bytes) -> bytes:
    """A frame around `payload` with a consistent length field and a correct CRC."""
    return _with_crc(bytes([1, 0, frame_type, len(payload)]).hex() + payload.hex())


# One byte too many and one too few (for zone-carrying types: beyond 8 zones and below 1) on an
# otherwise well-formed frame, so only the per-type length rule can refuse it.
WRONG_SIZES: list[tuple[FrameType, str, str]] = [
    (FrameType.HELLO, "0100", "HELLO: payload of 2 bytes, must be 1"),
    (FrameType.HELLO, "", "HELLO: payload of 0 bytes, must be 1"),
    (
        FrameType.SET_INTENSITY,
        "01" * 9,
        r"SET_INTENSITY: payload of 9 bytes, must be zones \(1-8\)",
    ),
    (FrameType.SET_INTENSITY, "", "SET_INTENSITY: payload of 0 bytes, must be zones"),
    (FrameType.STOP, "00", "STOP: payload of 1 byte, must be 0"),
    (FrameType.HEARTBEAT, "00", "HEARTBEAT: payload of 1 byte, must be 0"),
    (FrameType.SET_WATCHDOG, "05dc00", "SET_WATCHDOG: payload of 3 bytes, must be 2"),
    (FrameType.SET_WATCHDOG, "05", "SET_WATCHDOG: payload of 1 byte, must be 2"),
    (FrameType.SET_TIMER, "038400", "SET_TIMER: payload of 3 bytes, must be 2"),
    (FrameType.SET_TIMER, "03", "SET_TIMER: payload of 1 byte, must be 2"),
    (FrameType.QUERY_STATUS, "00", "QUERY_STATUS: payload of 1 byte, must be 0"),
    (
        FrameType.CAPABILITIES,
        "0f0001020003140f05dc00",
        "CAPABILITIES: payload of 11 bytes, must be 10",
    ),
    (FrameType.CAPABILITIES, "0f0001020003140f05", "CAPABILITIES: payload of 9 bytes, must be 10"),
    (FrameType.ACK, "0502" + "01" * 9, r"ACK: payload of 11 bytes, must be 2 \+ zones \(3-10\)"),
    (FrameType.ACK, "0502", r"ACK: payload of 2 bytes, must be 2 \+ zones"),
    (FrameType.NACK, "060504" + "00" * 9, r"NACK: payload of 12 bytes, must be 3 \+ zones"),
    (FrameType.NACK, "060504", r"NACK: payload of 3 bytes, must be 3 \+ zones \(4-11\)"),
    (FrameType.STATUS, "00" * 9 + "57014f00", r"STATUS: payload of 13 bytes, must be 4 \+ zones"),
    (FrameType.STATUS, "57014f00", r"STATUS: payload of 4 bytes, must be 4 \+ zones"),
    (FrameType.BUTTON, "0100", "BUTTON: payload of 2 bytes, must be 1"),
    (FrameType.BUTTON, "", "BUTTON: payload of 0 bytes, must be 1"),
    (FrameType.FAULT, "040000", "FAULT: payload of 3 bytes, must be 2"),
    (FrameType.FAULT, "04", "FAULT: payload of 1 byte, must be 2"),
]


def test_every_frame_type_has_wrong_size_vectors() -> None:
    assert {frame_type for frame_type, _, _ in WRONG_SIZES} == set(FrameType)
    assert set(PAYLOAD_SIZES) == set(FrameType)


@pytest.mark.parametrize(
    ("frame_type", "payload_hex", "problem"),
    WRONG_SIZES,
    ids=[f"{frame_type.name}-{len(hex_) // 2}" for frame_type, hex_, _ in WRONG_SIZES],
)
def test_decoder_refuses_a_payload_of_the_wrong_size_for_its_type(
    frame_type: FrameType, payload_hex: str, problem: str
) -> None:
    payload = bytes.fromhex(payload_hex)
    assert len(payload) not in PAYLOAD_SIZES[frame_type]
    with pytest.raises(ProtocolError, match=problem):
        decode(_frame(frame_type, payload))


@given(st.sampled_from(FrameType), st.binary(max_size=14))
def test_only_the_payload_sizes_of_the_spec_decode(frame_type: FrameType, payload: bytes) -> None:
    wire = _frame(frame_type, payload)
    if len(payload) in PAYLOAD_SIZES[frame_type]:
        with contextlib.suppress(ProtocolError):  # the size is right; a field may still be wrong
            assert frame_type == decode(wire).message.TYPE
    else:
        with pytest.raises(ProtocolError, match=f"^{frame_type.name}: payload of .*, must be"):
            decode(wire)


@pytest.mark.parametrize(
    "message",
    [
        SetIntensity(()),
        SetIntensity((1,) * 9),
        SetIntensity((256,)),
        SetWatchdog(70000),
        SetTimer(-1),
        Status((1,), 101, 30.0),
        Status((1,), 50, 5000.0),
        Capabilities(1, (1, 0, 0), 0, 20, CapabilityFlags.NONE, 0),
        Capabilities(1, (1, 0, 300), 3, 20, CapabilityFlags.NONE, 0),
    ],
)
def test_encode_refuses_values_that_do_not_fit(message: Message) -> None:
    with pytest.raises(ProtocolError):
        encode(message, 0)


levels = st.lists(st.integers(0, 255), min_size=1, max_size=8).map(tuple)
messages = st.one_of(
    st.builds(Hello, st.integers(0, 255)),
    st.builds(SetIntensity, levels),
    st.just(Stop()),
    st.just(Heartbeat()),
    st.builds(SetWatchdog, st.integers(0, 0xFFFF)),
    st.builds(SetTimer, st.integers(0, 0xFFFF)),
    st.just(QueryStatus()),
    st.builds(
        Capabilities,
        st.integers(0, 0xFFFF),
        st.tuples(st.integers(0, 255), st.integers(0, 255), st.integers(0, 255)),
        st.integers(1, 8),
        st.integers(1, 255),
        st.integers(0, 0xFF).map(CapabilityFlags),
        st.integers(0, 0xFFFF),
    ),
    st.builds(Ack, st.integers(0, 255), st.integers(0, 255), levels),
    st.builds(Nack, st.integers(0, 255), st.integers(0, 255), st.sampled_from(ErrorCode), levels),
    st.builds(
        Status,
        levels,
        st.integers(0, 100),
        st.integers(-3000, 3000).map(lambda d: d / 10),
        st.integers(0, 0xFF).map(FaultFlags),
    ),
    st.builds(ButtonPress, st.sampled_from(Button)),
    st.builds(Fault, st.sampled_from(FaultCode), st.integers(0, 255)),
)


@given(messages, st.integers(0, 255))
def test_round_trip(message: Message, seq: int) -> None:
    wire = encode(message, seq)
    assert len(wire) <= MAX_FRAME_SIZE
    frame = decode(wire)
    assert (frame.seq, frame.message) == (seq, message)


@given(st.binary(max_size=40))
def test_decoder_raises_only_protocol_error_on_arbitrary_bytes(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        decode(data)


@given(messages, st.integers(0, 255), st.data())
def test_any_single_byte_corruption_is_detected(
    message: Message, seq: int, data: st.DataObject
) -> None:
    wire = bytearray(encode(message, seq))
    index = data.draw(st.integers(0, len(wire) - 1))
    flip = data.draw(st.integers(1, 255))
    wire[index] ^= flip
    with pytest.raises(ProtocolError):
        decode(bytes(wire))
