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
        (_with_crc("01000100"), "HELLO: malformed payload"),
        (_with_crc("0100850107"), "unknown button"),
        (_with_crc("010086020900"), "unknown fault code"),
        (_with_crc("0100830401021900"), "unknown error code"),
        (_with_crc("0100840401020304"), "too short"),
        (_with_crc("01008402ff02"), "too short"),
        (_with_crc("010084050065000000"), "battery 101"),
    ],
)
def test_malformed_frames_raise_protocol_error(wire: bytes, problem: str) -> None:
    with pytest.raises(ProtocolError, match=problem):
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
