"""Fuzz target: the wire codec's `decode`, fed raw notification bytes from the device."""

from __future__ import annotations

from firmware_bridge.errors import ProtocolError
from firmware_bridge.protocol import MAX_FRAME_SIZE, crc16, decode, encode
from firmware_bridge.protocol.constants import CRC_SIZE, HEADER_SIZE

MAX_LEN = 64  # bytes per input: a frame is at most 20; longer only tests the size check
LENGTH_BYTE = 3  # header offset of the payload length


def _repaired(data: bytes) -> bytes:
    """`data` with its length byte and CRC made right, so mutations reach the payload parsers.

    Without this almost every mutation dies at the CRC check (one in 65,536 gets through).
    """
    body = bytearray(data[:-CRC_SIZE])
    if len(body) >= HEADER_SIZE:
        body[LENGTH_BYTE] = (len(body) - HEADER_SIZE) & 0xFF
    return bytes(body) + crc16(bytes(body)).to_bytes(CRC_SIZE, "big")


def _check(wire: bytes) -> None:
    try:
        frame = decode(wire)
    except ProtocolError:
        return
    if len(wire) > MAX_FRAME_SIZE:
        raise AssertionError(f"decode accepted a {len(wire)}-byte frame")
    again = encode(frame.message, frame.seq)
    if again != wire:  # one meaning per frame: a second spelling would need a second parser
        raise AssertionError(f"{wire.hex()} decodes to {frame!r}, which encodes to {again.hex()}")


def TestOneInput(data: bytes) -> None:  # noqa: N802 - the name atheris and libFuzzer expect
    """`decode` raises ProtocolError and nothing else; what it accepts re-encodes to itself."""
    _check(data)
    repaired = _repaired(data)
    if repaired != data:
        _check(repaired)
