"""Profile models, loader errors and the built-in library."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from profiles.loader import (
    MAX_PROFILE_BYTES,
    ProfileError,
    library_names,
    load_builtin,
    load_file,
    load_text,
    resolve,
)
from profiles.model import HARD_CEILING_S, Profile
from profiles.waveforms import Timeline, segment_levels

HEADER = 'name = "t"\ntitle = "Test"\n'
COOL = '[[segments]]\nkind = "ramp"\nduration_s = 30\nstart = 0.2\nend = 0\ncool_down = true\n'


def seg(body: str) -> str:
    return f"[[segments]]\n{body}\n"


BROKEN = [
    ("empty", "", "name: field required"),
    ("not TOML", "name = [", "not valid TOML"),
    (
        "wrong type",
        HEADER + seg('kind = "steady"\nduration_s = 10\nlevel = "high"') + COOL,
        "segments[0].level: must be a number (got 'high')",
    ),
    (
        "out of range",
        HEADER + seg('kind = "steady"\nduration_s = 10\nlevel = 1.5') + COOL,
        "segments[0].level: must be between 0 and 1 (got 1.5)",
    ),
    (
        "negative",
        HEADER + seg('kind = "ramp"\nduration_s = 10\nstart = -0.1\nend = 0.2') + COOL,
        "segments[0].start: must be between 0 and 1",
    ),
    (
        "unknown kind",
        HEADER + seg('kind = "zap"\nduration_s = 10') + COOL,
        "segments[0]: unknown segment kind 'zap'",
    ),
    ("missing kind", HEADER + seg("duration_s = 10") + COOL, "segments[0]: missing `kind`"),
    (
        "unknown zone",
        HEADER + seg('kind = "steady"\nduration_s = 10\nlevel = 0.2\nzones = ["toe"]') + COOL,
        "segments[0].zones[0]: input should be 'heel', 'arch', 'forefoot' or 'all'",
    ),
    (
        "unknown field",
        HEADER + seg('kind = "steady"\nduration_s = 10\nlevel = 0.2\nspeed = 3') + COOL,
        "segments[0].speed: extra inputs are not permitted",
    ),
    (
        "too long",
        HEADER + seg('kind = "steady"\nduration_s = 1800\nlevel = 0.2') + COOL,
        f"exceeds the {HARD_CEILING_S} s hard ceiling",
    ),
    (
        "no cool-down",
        HEADER + seg('kind = "steady"\nduration_s = 60\nlevel = 0.2'),
        "must end with at least 30 s of segments marked cool_down",
    ),
    (
        "hot cool-down",
        HEADER + seg('kind = "steady"\nduration_s = 60\nlevel = 0.8\ncool_down = true'),
        "peaks at 0.8, above 0.4",
    ),
    (
        "bad wave",
        HEADER + seg('kind = "wave"\nduration_s = 60\nlow = 0.5\nhigh = 0.2\nperiod_s = 5') + COOL,
        "low (0.5) must not exceed high (0.2)",
    ),
    ("bad name", 'name = "Heel Spur!"\ntitle = "x"\n' + COOL, "name: string should match"),
    (
        "repeat of nothing",
        HEADER + seg('kind = "repeat"\ntimes = 2\nsegments = []') + COOL,
        "segments[0].segments: list should have at least 1 item",
    ),
]


@pytest.mark.parametrize(("case", "text", "expected"), BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_profiles_get_one_clear_line_per_problem(
    case: str, text: str, expected: str
) -> None:
    with pytest.raises(ProfileError) as caught:
        load_text(text, "heel.toml")
    lines = str(caught.value).splitlines()
    assert all(line.startswith("heel.toml: ") for line in lines)
    assert any(expected in line for line in lines), lines


def test_huge_file_is_refused_without_reading_it(tmp_path: Path) -> None:
    path = tmp_path / "huge.toml"
    with path.open("wb") as handle:
        handle.truncate(100 * 1024 * 1024)  # 100 MB, sparse
    with pytest.raises(ProfileError, match=f"a profile is at most {MAX_PROFILE_BYTES:,}"):
        load_file(path)


def test_binary_and_missing_files(tmp_path: Path) -> None:
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ProfileError, match="not UTF-8"):
        load_file(binary)
    with pytest.raises(ProfileError, match="cannot open: No such file"):
        load_file(tmp_path / "nope.toml")
    with pytest.raises(ProfileError, match="not a regular file"):
        load_file(tmp_path)


def test_library_has_the_routines_users_expect() -> None:
    assert set(library_names()) >= {"heel-spur", "relax", "lymphatic", "zone-walk", "maintenance"}
    for name in library_names():
        profile = load_builtin(name)
        assert profile.name == name
        assert profile.duration_s <= 15 * 60
        assert profile.cool_down_s >= 30


def test_heel_spur_follows_the_article() -> None:
    profile = load_builtin("heel-spur")
    kinds = [type(s).__name__.lower() for s in profile.flat()]
    assert kinds[0] == "ramp"  # warm-up
    assert {"pulse", "alternate", "wave", "steady", "burst"} <= set(kinds)
    assert kinds.count("burst") == 2  # the main part is played twice
    assert profile.cool_down_s >= 60  # light stroking to finish


def test_relax_is_light_and_short() -> None:
    profile = load_builtin("relax")
    assert profile.duration_s <= 15 * 60
    assert max(s.peak() for s in profile.flat()) <= 0.4


def test_resolve_takes_names_and_paths(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(HEADER + COOL)
    assert resolve(str(path)).name == "t"
    assert resolve("relax").name == "relax"
    with pytest.raises(ProfileError, match="no built-in profile"):
        resolve("nonsense")


def test_timeline_positions_and_end() -> None:
    timeline = Timeline(load_builtin("heel-spur"))
    start = timeline.at(0)
    assert start is not None
    assert start.levels == (0.0, 0.0, 0.0)  # sessions start from zero
    assert start.label == "warm-up, heel to toes"
    assert timeline.at(timeline.duration_s) is None
    end = timeline.at(timeline.duration_s - 0.01)
    assert end is not None
    assert max(end.levels) < 0.01


def test_wave_travels_from_toes_to_heel() -> None:
    wave = load_builtin("lymphatic").flat()[1]  # period 10 s over heel, arch, forefoot
    # The crest reaches the forefoot first, the arch a third of a period later, then the heel.
    crest = [max(range(3), key=lambda z: segment_levels(wave, t)[z]) for t in (5, 8.34, 11.67)]
    assert crest == [2, 1, 0]


def test_alternate_moves_one_zone_at_a_time() -> None:
    seg_ = load_builtin("zone-walk").flat()[1]
    seen = [segment_levels(seg_, t) for t in (0.5, 3.5, 6.5)]
    assert [tuple(i for i, v in enumerate(levels) if v) for levels in seen] == [(0,), (1,), (2,)]


@given(st.sampled_from(library_names()), st.floats(0, 1800))
def test_every_level_is_a_fraction(name: str, t: float) -> None:
    position = Timeline(load_builtin(name)).at(t)
    if position is not None:
        assert all(0.0 <= level <= 1.0 for level in position.levels)


def test_profile_model_is_usable_from_python() -> None:
    profile = Profile.model_validate(
        {
            "name": "mine",
            "title": "Mine",
            "segments": [
                {"kind": "steady", "duration_s": 60, "level": 0.3},
                {"kind": "rest", "duration_s": 30, "cool_down": True},
            ],
        }
    )
    assert profile.duration_s == 90
