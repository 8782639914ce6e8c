"""Device descriptions as data: the byte-level cases of every shipped description, and one line
naming the field for every mistake in a description file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from firmware_bridge.devices import (
    DescriptionError,
    by_id,
    catalog,
    load_description_file,
    load_text,
    match,
    shipped,
)
from firmware_bridge.protocol import SERVICE_UUID
from firmware_bridge.protocol.description import Description

SIMPLE = [d for d in shipped() if d.driver == "simple-write"]
CASES = [(d, i) for d in SIMPLE for i in range(len(d.case))]


def spelled(description: Description, write: str) -> bytes:
    assert description.output is not None
    return write.encode() if description.output.encoding == "text" else bytes.fromhex(write)


def test_at_least_three_simple_families_ship_beside_protocol_v1() -> None:
    ids = [d.id for d in shipped()]
    assert ids[0] == "protocol-v1"
    assert len(SIMPLE) >= 3
    encodings = {(d.output.encoding, d.output.per_motor) for d in SIMPLE if d.output}
    assert len(encodings) >= 3  # text per motor, bytes in one write, bytes for one motor
    assert {d.failsafe for d in SIMPLE} == {"watchdog", "none"}


@pytest.mark.parametrize(("description", "index"), CASES, ids=lambda v: getattr(v, "id", str(v)))
def test_each_case_writes_exactly_its_bytes_and_reads_back(
    description: Description, index: int
) -> None:
    case = description.case[index]
    expected = [spelled(description, w) for w in case.writes]
    assert description.writes_for(case.levels) == expected
    heard: dict[int, int] = {}
    for write in expected:
        heard |= description.levels_from(write) or {}
    assert heard == dict(enumerate(case.levels))


@pytest.mark.parametrize("description", SIMPLE, ids=lambda d: d.id)
def test_the_stop_zeroes_every_motor(description: Description) -> None:
    heard: dict[int, int] = {}
    for write in description.stop_writes():
        heard |= description.levels_from(write) or {}
    assert heard == dict.fromkeys(range(description.motors), 0)


def test_golden_bytes_spelled_out() -> None:
    """The table above checks the files against the code; these pin the code itself."""
    assert by_id("serial-bytes").writes_for((50, 0, 100)) == [b"\xa5\x32\x00\x64\x5a"]
    assert by_id("uart-text").writes_for((10, 0)) == [b"Vibrate1:10;", b"Vibrate2:0;"]
    assert by_id("uart-text").stop_writes() == [b"Vibrate:0;"]
    assert by_id("single-byte").writes_for((128,)) == [b"\x80"]


def test_zones_map_onto_motors_by_the_highest_zone() -> None:
    assert by_id("uart-text").motor_levels((4, 9, 2)) == (9, 2)  # heel+arch, forefoot
    assert by_id("single-byte").motor_levels((4, 9, 2)) == (9,)
    assert by_id("serial-bytes").motor_levels((4, 9, 2)) == (4, 9, 2)


def test_garbage_means_nothing_to_the_impersonated_firmware() -> None:
    text, frame = by_id("uart-text"), by_id("serial-bytes")
    assert text.levels_from(b"Vibrate3:5;") is None  # no third motor
    assert text.levels_from(b"Vibrate1:21;") is None  # above max_level
    assert text.levels_from(b"Rotate1:5;") is None
    assert frame.levels_from(b"\xa5\x01\x02\x03\x00") is None  # wrong trailer
    assert frame.levels_from(b"\xa5\x01\x02\x5a") is None  # wrong size


def test_advertisements_match_their_descriptions() -> None:
    assert match("TXT-Massager-7", [], {}) == by_id("uart-text")
    assert match(None, [SERVICE_UUID.upper()], {}) == by_id("protocol-v1")
    assert match("FM3-12", [], {0xFFFF: bytes.fromhex("4d3301")}) == by_id("serial-bytes")
    assert match("FM3-12", [], {0xFFFF: bytes.fromhex("0000")}) is None  # prefix differs
    assert match(None, [], {0xFFFF: bytes.fromhex("4d3301")}) is None  # every rule must fit
    assert match("Headphones", ["0000180d-0000-1000-8000-00805f9b34fb"], {}) is None


def test_a_generic_service_alone_is_no_match() -> None:
    """0xFFF0 is on LED strips and key finders: the name must fit too."""
    fff0 = ["0000fff0-0000-1000-8000-00805f9b34fb"]
    assert match("ELK-BLEDOM", fff0, {}) is None
    assert match("iTAG", fff0, {}) is None
    assert match("Vibe1-42", fff0, {}) == by_id("single-byte")
    assert match("Vibe1-42", [], {}) is None


GOOD_TEXT = """
name = "Mine"
driver = "simple-write"
[match]
names = ["Mine-*"]
[gatt]
service = "0000fff0-0000-1000-8000-00805f9b34fb"
write = "0000fff2-0000-1000-8000-00805f9b34fb"
[output]
max_level = 9
encoding = "text"
command = "V{level}"
[[case]]
levels = [3]
writes = ["V3"]
[[case]]
levels = [0]
writes = ["V0"]
"""


def test_a_good_user_description_loads_and_takes_its_id_from_the_file_name() -> None:
    description = load_text(GOOD_TEXT, "mine.toml")
    assert (description.id, description.failsafe, description.motors) == ("mine", "none", 1)


MISTAKES = [
    ("max_level = 9", "max_level = 9\nmax_levels = 3", "output.max_levels: unknown field"),
    ('driver = "simple-write"', 'driver = "buttplug"', "driver: input should be"),
    ('write = "0000fff2', 'write = "not-a-uuid" #', "gatt.write: string should match pattern"),
    (
        'writes = ["V3"]',
        'writes = ["V4"]',
        "case[0].writes: the description encodes these as ['V3']",
    ),
    (
        "max_level = 9",
        "max_level = 0",
        "output.max_level: input should be greater than or equal to 1",
    ),
    (
        'command = "V{level}"',
        'command = "V{level}{lvl}"',
        "output.command: only {level} and {motor}",
    ),
    ('command = "V{level}"', 'command = "V"', "output.command: an ASCII template with {level}"),
    ('command = "V{level}"', 'command = "V{level}' + "x" * 30 + '"', "output: a write of 32 bytes"),
    ("[[case]]\nlevels = [0]", "[[case]]\nlevels = [1]", "case: one [[case]] must set every motor"),
    ("[gatt]", "[timing]\nwatchdog_s = 2.0\nkeepalive_s = 2.0\n[gatt]", "timing.keepalive_s: must"),
    ('encoding = "text"', 'encoding = "text"\nlayout = ["level"]', "output.layout: is for"),
    ('name = "Mine"', "", "name: missing"),
    ("levels = [3]", "levels = [3, 3]", "case[0].levels: 1 levels of 0-9 expected"),
    ('names = ["Mine-*"]', "names = 5", "match.names: input should be a valid tuple"),
    ("[output]", "[output]\nmotors = [[]]", "output.motors: each motor plays at least one zone"),
    ('names = ["Mine-*"]', "", "match: give names, services or manufacturer_id"),
    ('command = "V{level}"', 'command = "V{level:>99999}"', "no format spec or conversion"),
    ('command = "V{level}"', 'command = "V{level}{level}"', "each of {level} and {motor} at most"),
    ('command = "V{level}"', 'command = "V{level.real}"', "only {level} and {motor} may be used"),
    (
        "[gatt]",
        "[timing]\nmin_gap_ms = 800\n[gatt]",
        "timing.min_gap_ms: input should be less than",
    ),
]


@pytest.mark.parametrize(("old", "new", "line"), MISTAKES, ids=[m[2][:30] for m in MISTAKES])
def test_a_mistake_is_one_line_naming_the_field(old: str, new: str, line: str) -> None:
    assert old in GOOD_TEXT
    with pytest.raises(DescriptionError) as caught:
        load_text(GOOD_TEXT.replace(old, new, 1), "mine.toml")
    message = str(caught.value)
    assert message.startswith("mine.toml: ")
    assert line in message, message
    assert "Traceback" not in message


def test_protocol_v1_descriptions_take_only_match() -> None:
    text = 'driver = "protocol-v1"\nname = "x"\n[match]\nnames=["x"]\n[gatt]\n'
    text += 'service = "0000fff0-0000-1000-8000-00805f9b34fb"\n'
    text += 'write = "0000fff2-0000-1000-8000-00805f9b34fb"\n'
    with pytest.raises(DescriptionError, match="gatt: a protocol-v1 description takes only"):
        load_text(text, "x.toml")


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"\x00\xff\xfe binary", "not UTF-8 text"),
        (b"name = [" * 2000, "not valid TOML"),
        (b"[a]\n" + b"x = 1\n" * 20000, "is at most 65,536"),
        (b"a = " + b"[" * 5000 + b"]" * 5000, "nested too deeply"),
        (b"a = " + b"[" * 12 + b"1" + b"]" * 12, "nested too deeply"),
    ],
    ids=["binary", "broken", "huge", "deep", "deep-for-a-description"],
)
def test_hostile_files_are_one_line(tmp_path: Path, content: bytes, problem: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_bytes(content)
    with pytest.raises(DescriptionError) as caught:
        load_description_file(path)
    assert len(str(caught.value).splitlines()) == 1
    assert problem in str(caught.value)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
@pytest.mark.timeout(5)
def test_a_fifo_is_refused_not_waited_on(tmp_path: Path) -> None:
    path = tmp_path / "pipe.toml"
    os.mkfifo(path)
    with pytest.raises(DescriptionError, match="not a regular file"):
        load_description_file(path)


def test_user_descriptions_come_first_and_broken_ones_are_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "mine.toml").write_text(GOOD_TEXT)
    (tmp_path / "uart-text.toml").write_text(GOOD_TEXT.replace("Mine-*", "TXT-Massager*"))
    (tmp_path / "broken.toml").write_text("driver = 1")
    found = catalog(tmp_path)
    assert [d.id for d in found[:2]] == ["mine", "uart-text"]  # uart-text refined by the user
    assert [d.id for d in found].count("uart-text") == 1
    assert found[1].output is not None
    assert found[1].output.command == "V{level}"
    assert "broken.toml: driver" in caplog.text
    assert match("Mine-1", [], {}, directory=tmp_path) == found[0]


def test_the_example_in_the_docs_is_a_valid_description() -> None:
    page = (Path(__file__).resolve().parents[2] / "docs" / "devices.md").read_text()
    blocks = [b.split("```", 1)[0] for b in page.split("```toml\n")[1:]]
    assert blocks
    for block in blocks:
        description = load_text(block, "my-massager.toml")
        assert description.id == "my-massager"
        assert description.writes_for((8,)) == [bytes.fromhex("550308aa")]
