"""Fuzz target: the profile loader, on TOML text and on already-parsed (structured) data."""

from __future__ import annotations

import math
from typing import Any

import atheris

from profiles.loader import ProfileError, load_text, parse_profile
from profiles.model import HARD_CEILING_S, MIN_COOL_DOWN_S, Profile
from profiles.waveforms import Timeline

MAX_LEN = 4096  # bytes per input: the built-in profiles are 0.4-1.7 KB
SOURCE = "fuzz.toml"
STRUCTURED = b"\x00"  # tomllib refuses a NUL anywhere, so this prefix takes nothing from TOML
MAX_DEPTH = 4  # profile, segments, repeat, segments: deeper data is only refused for its shape
MAX_ITEMS = 8  # entries per generated table or array; more only repeats the same checks
SAMPLES = 16  # times per loaded profile at which every zone's level is checked
# fmt: off
KEYS = (  # the profile's own field names, so generated tables get past "extra inputs"
    "name", "title", "description", "segments", "kind", "label", "duration_s", "zones",
    "cool_down", "level", "start", "end", "on_s", "off_s", "low", "high", "period_s", "shape",
    "travel", "base", "burst_s", "every_s", "switch_s", "times",
)
WORDS = (  # values its literal fields accept
    "steady", "ramp", "pulse", "wave", "burst", "alternate", "rest", "repeat", "all", "heel",
    "arch", "forefoot", "sine", "triangle", "none", "toe_to_heel", "heel_to_toe", "relax",
)
# fmt: on


def _value(fdp: Any, depth: int) -> Any:
    """One value of any type parsed TOML can hold, and a few it cannot (None, tuples)."""
    kind = fdp.ConsumeIntInRange(0, 9 if depth < MAX_DEPTH else 6)
    match kind:
        case 0:
            return fdp.ConsumeFloat()  # nan, inf, -0.0 and subnormals included
        case 1:
            return fdp.ConsumeRegularFloat()
        case 2:
            return fdp.ConsumeInt(fdp.ConsumeIntInRange(1, 16))  # up to 128-bit
        case 3:
            return fdp.ConsumeBool()
        case 4:
            return fdp.PickValueInList(list(WORDS))
        case 5:
            return fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 48))
        case 6:
            return None
        case 7:
            return _table(fdp, depth + 1)
        case 8:
            return tuple(_value(fdp, depth + 1) for _ in range(fdp.ConsumeIntInRange(0, 3)))
        case _:
            return [_value(fdp, depth + 1) for _ in range(fdp.ConsumeIntInRange(0, MAX_ITEMS))]


def _table(fdp: Any, depth: int) -> dict[str, Any]:
    """A table whose keys are mostly the profile's own field names."""
    table: dict[str, Any] = {}
    for _ in range(fdp.ConsumeIntInRange(0, MAX_ITEMS)):
        if fdp.ConsumeIntInRange(0, 7):
            key = fdp.PickValueInList(list(KEYS))
        else:
            key = fdp.ConsumeUnicodeNoSurrogates(8)
        table[key] = _value(fdp, depth)
    return table


def _check(profile: Profile) -> None:
    """What a valid profile promises: the safety shape, and levels 0-1 at every sampled time."""
    if not profile.duration_s <= HARD_CEILING_S:
        raise AssertionError(f"loaded a profile of {profile.duration_s} s")
    if not profile.cool_down_s >= MIN_COOL_DOWN_S:
        raise AssertionError(f"loaded a profile with {profile.cool_down_s} s of cool-down")
    timeline = Timeline(profile)
    for step in range(SAMPLES):
        t = timeline.duration_s * step / SAMPLES
        position = timeline.at(t)
        if position is None:
            raise AssertionError(f"no position at {t} s of {timeline.duration_s} s")
        if not all(math.isfinite(x) and 0.0 <= x <= 1.0 for x in position.levels):
            raise AssertionError(f"levels {position.levels} at {t} s")


def TestOneInput(data: bytes) -> None:  # noqa: N802 - the name atheris and libFuzzer expect
    """Loading raises ProfileError and nothing else; what loads keeps the profile's promises."""
    try:
        if data.startswith(STRUCTURED):
            fdp = atheris.FuzzedDataProvider(data[len(STRUCTURED) :])
            profile = parse_profile(_table(fdp, 0), SOURCE)
        else:  # invalid UTF-8 is refused by the file reader; replaced, it still drives TOML
            profile = load_text(data.decode("utf-8", "replace"), SOURCE)
    except ProfileError:
        return
    _check(profile)
