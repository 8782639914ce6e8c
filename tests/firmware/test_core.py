"""The reference firmware's core (firmware/core.py) on CPython and on MicroPython 1.27.

- the golden frames of tests/firmware_bridge/test_protocol.py, encoded and decoded by the core;
- its decoder against the controller's on arbitrary bytes (and the NACK code the simulator
  would give), on CPython with hypothesis and on MicroPython with a seeded corpus;
- its behaviour (scenarios.py) on both;
- its answers and motor levels against the simulator's firmware model for random sessions;
- the constants it restates against the controller's.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware import core
from firmware_bridge.protocol import (
    CONTROL_CHAR_UUID,
    DEFAULT_WATCHDOG_MS,
    MAX_FRAME_SIZE,
    MAX_WATCHDOG_MS,
    MAX_ZONES,
    MIN_WATCHDOG_MS,
    SERVICE_UUID,
    TELEMETRY_CHAR_UUID,
    Ack,
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
    ProtocolError,
    QueryStatus,
    SetIntensity,
    SetTimer,
    SetWatchdog,
    Status,
    Stop,
    decode,
    encode,
)
from sim.firmware import MAX_TIMER_S, Firmware, Notify, _classify
from tests.firmware import scenarios
from tests.firmware.conftest import MICROPYTHON_VERSION, ROOT, MicroPython
from tests.firmware_bridge.test_protocol import GOLDEN

RUNTIMES = ("cpython", "micropython")


def core_fields(message: Message) -> list[Any]:
    """A controller message as the core's fields, in JSON form (tuples become lists)."""
    match message:
        case Hello(protocol_version=version):
            return [version]
        case SetIntensity(levels=levels):
            return [list(levels)]
        case Stop() | Heartbeat() | QueryStatus():
            return []
        case SetWatchdog(ms=ms):
            return [ms]
        case SetTimer(seconds=seconds):
            return [seconds]
        case Capabilities():
            m = message
            return [m.model, list(m.firmware), m.zones, m.max_level, int(m.flags), m.watchdog_ms]
        case Ack(acked_seq=seq, acked_type=kind, levels=levels):
            return [seq, kind, list(levels)]
        case Nack(acked_seq=seq, acked_type=kind, code=code, levels=levels):
            return [seq, kind, int(code), list(levels)]
        case Status():
            s = message
            return [list(s.levels), s.battery_pct, round(s.temperature_c * 10), int(s.faults)]
        case ButtonPress(button=button):
            return [int(button)]
        case Fault(code=code, detail=detail):
            return [int(code), detail]
    raise AssertionError(f"no core fields for {message!r}")


def as_json(value: object) -> Any:
    return json.loads(json.dumps(value))


# -- MicroPython itself ------------------------------------------------------------------------


def test_the_vm_is_micropython_1_27(micropython: MicroPython) -> None:
    name, version, build, path = micropython.value(
        "import sys, core",
        "[sys.implementation.name, list(sys.implementation.version), "
        "getattr(sys.implementation, '_build', ''), core.__file__]",
    )
    assert name == "micropython"
    assert tuple(version[:2]) == MICROPYTHON_VERSION
    assert build == "wasi"
    assert path == "/input/core.py"  # the copied file, as on a board, not this repository's


# -- golden frames ---------------------------------------------------------------------------

GOLDEN_CASES: list[tuple[int, int, list[Any], str]] = [
    (int(message.TYPE), seq, core_fields(message), wire.replace(" ", ""))
    for message, seq, wire in GOLDEN
]


def test_the_golden_table_covers_every_frame_type_of_the_core() -> None:
    assert {case[0] for case in GOLDEN_CASES} == set(core.PAYLOAD_SIZES)


GOLDEN_CODE = """
import core, json
cases = json.loads({cases!r})
out = []
for frame_type, seq, fields, wire in cases:
    out.append([core.pack(frame_type, seq, fields).hex(), core.unpack(bytes.fromhex(wire))])
"""


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_golden_frames(runtime: str, request: pytest.FixtureRequest) -> None:
    if runtime == "micropython":
        vm: MicroPython = request.getfixturevalue("micropython")
        code = GOLDEN_CODE.format(cases=json.dumps(GOLDEN_CASES))
        results = vm.value(code, "out")
    else:
        results = as_json(
            [
                [core.pack(t, seq, tuple(fields)).hex(), core.unpack(bytes.fromhex(wire))]
                for t, seq, fields, wire in GOLDEN_CASES
            ]
        )
    for (frame_type, seq, fields, wire), (encoded, decoded) in zip(
        GOLDEN_CASES, results, strict=True
    ):
        assert encoded == wire, f"type 0x{frame_type:02x}"
        assert decoded == [seq, frame_type, fields]


# -- the decoder against the controller's ----------------------------------------------------


def controller_view(raw: bytes) -> list[Any]:
    """What the controller's codec makes of `raw`, and the NACK code the simulator gives."""
    try:
        frame = decode(raw)
    except ProtocolError:
        return ["error", int(_classify(raw))]
    return ["ok", frame.seq, int(frame.message.TYPE), core_fields(frame.message)]


def core_view(raw: bytes) -> list[Any]:
    try:
        seq, frame_type, fields = core.unpack(raw)
    except core.FrameError as exc:
        return ["error", exc.code]
    view: list[Any] = as_json(["ok", seq, frame_type, fields])
    return view


def framed(body: bytes) -> bytes:
    crc = core.crc16(body)
    return body + bytes((crc >> 8, crc & 0xFF))


TYPES = [*core.PAYLOAD_SIZES, 0x00, 0x08, 0x80, 0x87, 0xFF]
# Frames with a right CRC over any header and payload: they reach the deeper checks.
well_formed = st.builds(
    lambda version, seq, frame_type, payload, length: framed(
        bytes((version, seq, frame_type, len(payload) if length is None else length)) + payload
    ),
    st.sampled_from([1, 1, 1, 0, 2]),
    st.integers(0, 255),
    st.sampled_from(TYPES),
    st.binary(max_size=15),
    st.none() | st.integers(0, 255),
)


@given(st.binary(max_size=MAX_FRAME_SIZE + 4) | well_formed)
def test_the_core_decodes_exactly_as_the_controller(raw: bytes) -> None:
    assert core_view(raw) == controller_view(raw)


def corpus(size: int, seed: int = 13) -> list[bytes]:
    """Seeded frames for MicroPython: golden ones mutated, well-formed ones, random bytes."""
    rng = random.Random(seed)
    wires = [bytes.fromhex(case[3]) for case in GOLDEN_CASES]
    frames: list[bytes] = []
    while len(frames) < size:
        raw = bytearray(rng.choice(wires))
        kind = rng.randrange(6)
        if kind == 0:
            raw[rng.randrange(len(raw))] ^= 1 << rng.randrange(8)
        elif kind == 1:
            del raw[rng.randrange(len(raw)) :]
        elif kind == 2:
            raw += rng.randbytes(rng.randrange(1, 6))
        elif kind == 3:  # a changed header or payload byte, CRC made right again
            changed = raw[:-2]
            changed[rng.randrange(len(changed))] = rng.randrange(256)
            raw = bytearray(framed(bytes(changed)))
        elif kind == 4:
            header = bytes((1, rng.randrange(256), rng.choice(TYPES)))
            payload = rng.randbytes(rng.randrange(15))
            raw = bytearray(framed(header + bytes((len(payload),)) + payload))
        else:
            raw = bytearray(rng.randbytes(rng.randrange(MAX_FRAME_SIZE + 3)))
        frames.append(bytes(raw))
    return frames


CORPUS_CODE = """
import core, json
corpus = json.loads({corpus!r})
out = []
for wire in corpus:
    try:
        seq, frame_type, fields = core.unpack(bytes.fromhex(wire))
        out.append(["ok", seq, frame_type, fields])
    except core.FrameError as exc:
        out.append(["error", exc.code])
"""


def test_the_core_decodes_exactly_as_the_controller_under_micropython(
    micropython: MicroPython,
) -> None:
    frames = corpus(1500)
    code = CORPUS_CODE.format(corpus=json.dumps([f.hex() for f in frames]))
    got = micropython.value(code, "out")
    want = [controller_view(raw) for raw in frames]
    assert {view[0] for view in want} == {"ok", "error"}
    mismatches = [(raw.hex(), g, w) for raw, g, w in zip(frames, got, want, strict=True) if g != w]
    assert mismatches == []


# -- behaviour -----------------------------------------------------------------------------


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("scenario", [s.__name__ for s in scenarios.SCENARIOS])
def test_behaviour(scenario: str, runtime: str, request: pytest.FixtureRequest) -> None:
    if runtime == "cpython":
        getattr(scenarios, scenario)()
        return
    results: dict[str, str] = request.getfixturevalue("scenario_results")
    assert results[scenario] == "ok"


# -- the same answers as the simulator's firmware model ---------------------------------------

STEP_MS = 125  # exact in binary seconds too: ties fall the same way in both models

commands = st.one_of(
    st.builds(Hello, st.sampled_from([1, 1, 1, 2])),
    st.builds(
        SetIntensity,
        st.lists(st.integers(0, 22), min_size=1, max_size=4).map(tuple),
    ),
    st.just(Stop()),
    st.just(Heartbeat()),
    st.builds(SetWatchdog, st.integers(0, 26).map(lambda k: k * STEP_MS)),
    st.builds(SetTimer, st.integers(0, 3) | st.integers(MAX_TIMER_S - 2, MAX_TIMER_S + 2)),
    st.just(QueryStatus()),
    st.binary(max_size=MAX_FRAME_SIZE + 2),  # garbage
    st.sampled_from(["tick", "button"]),
)


def comparable(frames: list[bytes]) -> list[tuple[Any, ...]]:
    """Frames as (seq, type, fields), minus what differs by design: the model and firmware
    version in CAPABILITIES, and the battery and temperature (the simulator's physics) in
    STATUS."""
    out: list[tuple[Any, ...]] = []
    for raw in frames:
        frame = decode(raw)
        fields = core_fields(frame.message)
        if isinstance(frame.message, Capabilities):
            fields = fields[2:]
        elif isinstance(frame.message, Status):
            fields = [fields[0], fields[3]]
        out.append((frame.seq, frame.message.TYPE, fields))
    return out


@given(st.lists(st.tuples(st.integers(0, 24), commands), max_size=30))
def test_the_core_answers_as_the_simulator_model(steps: list[tuple[int, object]]) -> None:
    model = Firmware(has_heat=False)
    device = core.Core(0, battery_pct=100, temperature_dc=310)
    applied: list[tuple[float, tuple[int, ...], str]] = []
    device.on_levels = lambda t, levels, cause: applied.append((t, levels, cause))
    t_ms, seq = 0, 0
    for step, command in steps:
        t_ms += step * STEP_MS
        now = t_ms / 1000
        if command == "tick":
            actions, frames = model.tick(now), device.tick(t_ms)
        elif command == "button":
            actions, frames = model.press_button(now), device.press_button(t_ms)
        else:
            if isinstance(command, bytes):
                raw = command
            else:
                assert isinstance(command, Message)
                raw = encode(command, seq)
                seq += 1
            actions, frames = model.receive(raw, now), device.receive(raw, t_ms)
        sent = [action.data for action in actions if isinstance(action, Notify)]
        assert comparable(frames) == comparable(sent), command
    assert applied == [(round(r.t * 1000), r.levels, r.cause) for r in model.applied]


# -- constants restated in the firmware ------------------------------------------------------


def test_the_constants_are_the_protocols() -> None:
    assert {t.name: int(t) for t in FrameType} == {
        name: getattr(core, name) for name in FrameType.__members__
    }
    assert {e.name: int(e) for e in ErrorCode} == {
        name: getattr(core, name) for name in ErrorCode.__members__
    }
    assert {f.name: int(f) for f in FaultCode} == {
        name: getattr(core, "FAULT_" + name) for name in FaultCode.__members__
    }
    for flag in FaultFlags:
        if flag.name and flag is not FaultFlags.NONE:
            assert getattr(core, "FLAG_" + flag.name) == int(flag)
    for capability in CapabilityFlags:
        if capability.name and capability is not CapabilityFlags.NONE:
            assert getattr(core, "CAP_" + capability.name) == int(capability)
    assert (core.MAX_FRAME_SIZE, core.MAX_ZONES) == (MAX_FRAME_SIZE, MAX_ZONES)
    watchdog = (core.DEFAULT_WATCHDOG_MS, core.MIN_WATCHDOG_MS, core.MAX_WATCHDOG_MS)
    assert watchdog == (DEFAULT_WATCHDOG_MS, MIN_WATCHDOG_MS, MAX_WATCHDOG_MS)
    assert core.MAX_TIMER_S == MAX_TIMER_S
    # The board glue advertises and serves the protocol's GATT UUIDs.
    main = Path(ROOT / "firmware" / "main.py").read_text(encoding="utf-8")
    uuids = set(re.findall(r'bluetooth\.UUID\("([0-9a-f-]{36})"\)', main))
    assert uuids == {SERVICE_UUID, CONTROL_CHAR_UUID, TELEMETRY_CHAR_UUID}
    assert "bluetooth.UUID(0x180F)" in main
    assert "bluetooth.UUID(0x2A19)" in main
