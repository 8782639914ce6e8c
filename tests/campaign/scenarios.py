"""Fault-campaign scenarios: a random profile, cap and fault timeline (hypothesis strategies).

Drawn so that faults land while the motors run: caps are mostly 3 or more, profile levels
mostly 0.3 or more, and faults come after the first 5 s (by then S2 has let output rise).
Hypothesis also mixes in constants from the loaded code now and then, so the seeded example set
can change when the code does; every invariant is exact, so a new failing example is a real one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

ACTIONS = (
    "rate",
    "remote_rate",
    "lower_cap",
    "stop",
    "remote_stop",
    "button",
    "drop_link",
    "out_of_range",
    "garble",
    "drop_notify",
    "delay_notify",
    "nack_intensity",
    "slow_writes",
    "reboot",
    "mute",
    "low_battery",
    "over_temperature",
    "clock_jump",
)
MQTT_ACTIONS = (*ACTIONS, "flood", "broker_death")  # only with a broker; else no-ops
FIRST_FAULT_S = 5.0  # session seconds: S2 has let output rise to about 8 % by then


@dataclass(frozen=True)
class Action:
    """Something that happens `at_s` session seconds after the start."""

    at_s: float
    kind: str
    value: int = 0


@dataclass(frozen=True)
class Scenario:
    profile: dict[str, Any]
    cap: int
    limit_s: float
    no_watchdog: bool
    actions: tuple[Action, ...]


@st.composite
def _segment(draw: st.DrawFn) -> dict[str, Any]:
    strong = st.floats(0.3, 1.0)
    level = st.one_of(strong, strong, strong, st.floats(0.0, 0.3))  # mostly strong enough
    duration = draw(st.floats(4.0, 20.0))
    kind = draw(st.sampled_from(["steady", "ramp", "pulse", "wave", "burst", "alternate", "rest"]))
    segment: dict[str, Any] = {"kind": kind, "duration_s": duration}
    if kind == "steady":
        segment["level"] = draw(level)
    elif kind == "ramp":
        segment |= {"start": draw(level), "end": draw(level)}
    elif kind == "pulse":
        segment |= {"level": draw(level), "on_s": draw(st.floats(0.05, 2)), "off_s": 0.2}
    elif kind == "wave":
        low = draw(st.floats(0.0, 0.5))
        segment |= {"low": low, "high": draw(st.floats(max(low, 0.3), 1.0)), "period_s": 2.0}
    elif kind == "burst":
        segment |= {"level": draw(level), "burst_s": 0.2, "every_s": 1.0}
    elif kind == "alternate":
        segment |= {"level": draw(level), "switch_s": draw(st.floats(0.25, 4))}
    return segment


@st.composite
def scenarios(draw: st.DrawFn, actions: tuple[str, ...] = ACTIONS) -> Scenario:
    segments = draw(st.lists(_segment(), min_size=1, max_size=4))
    cool = {"kind": "ramp", "duration_s": 30, "start": 0.3, "end": 0, "cool_down": True}
    profile = {"name": "campaign", "title": "Campaign", "segments": [*segments, cool]}
    limit_s = draw(st.floats(15.0, 40.0))
    timeline = draw(
        st.lists(
            st.builds(
                Action,
                at_s=st.floats(FIRST_FAULT_S, limit_s),
                kind=st.sampled_from(actions),
                value=st.integers(0, 10),
            ),
            min_size=1,
            max_size=6,
        )
    )
    return Scenario(
        profile=profile,
        cap=draw(st.one_of(*[st.integers(3, 10)] * 3, st.integers(0, 2))),  # mostly reachable
        limit_s=limit_s,
        no_watchdog=draw(st.sampled_from([False, False, False, True])),  # 1 in 4
        actions=tuple(sorted(timeline, key=lambda a: a.at_s)),
    )
