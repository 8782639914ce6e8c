"""The safety governor's arithmetic: S1, S2, S3, S6, S7 as properties over arbitrary inputs."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge.device import StopReason
from firmware_bridge.errors import SafetyLimitError
from firmware_bridge.safety import (
    RISE_FLOOR,
    STEP_FACTOR,
    Decision,
    DiscomfortBands,
    SafetyGovernor,
    SafetySettings,
    to_levels,
)

EPS = 1e-9


def governor(cap: int = 4, device_max: float = 1.0, **kwargs: object) -> SafetyGovernor:
    gov = SafetyGovernor(SafetySettings(cap=cap, **kwargs), zones=3, device_max=device_max)  # type: ignore[arg-type]
    gov.start(0.0)
    return gov


def run_for(gov: SafetyGovernor, value: float, seconds: float, step: float = 0.05) -> float:
    t = gov._output_at
    end = t + seconds
    while t < end:
        t += step
        gov.limit((value,) * 3, t)
    return t


def test_sessions_start_from_zero_and_rise_one_step_per_three_seconds() -> None:
    gov = governor(cap=10)
    assert gov.limit((1.0, 1.0, 1.0), 0.0) == (0.0, 0.0, 0.0)
    first = gov.limit((1.0, 1.0, 1.0), 0.05)
    assert first[0] == pytest.approx(RISE_FLOOR * 0.05 / 3)  # the first step takes 3 s too
    assert to_levels(first, 20) == (0, 0, 0)
    run_for(gov, 1.0, 2.95)
    assert gov.output[0] == pytest.approx(RISE_FLOOR)
    run_for(gov, 1.0, 3.0)
    assert gov.output[0] == pytest.approx(RISE_FLOOR * STEP_FACTOR, rel=1e-2)  # ±one 0.05 s tick
    # From the floor to the full ceiling: 20·log10(1/0.05)/2.5 ≈ 10.4 steps ≈ 31 s more.
    run_for(gov, 1.0, 27.0)
    assert gov.output[0] < 1.0
    run_for(gov, 1.0, 5.0)
    assert gov.output[0] == pytest.approx(1.0)


def test_decreases_are_immediate() -> None:
    gov = governor(cap=10)
    t = run_for(gov, 0.8, 60)
    assert gov.limit((0.1, 0.0, 0.8), t + 0.01) == pytest.approx((0.1, 0.0, 0.8))


def test_patterns_under_the_envelope_play_as_written() -> None:
    gov = governor(cap=10)
    t = run_for(gov, 0.5, 40)
    assert gov.limit((0.0, 0.0, 0.0), t + 0.3) == (0.0, 0.0, 0.0)  # pulse off
    assert gov.limit((0.5, 0.5, 0.5), t + 0.6) == pytest.approx((0.5, 0.5, 0.5))  # pulse on


def test_after_a_long_rest_force_builds_up_again() -> None:
    gov = governor(cap=10)
    t = run_for(gov, 0.8, 60)
    t = run_for(gov, 0.0, 120)
    assert gov.limit((0.8, 0.8, 0.8), t + 0.05)[0] < 0.8 / STEP_FACTOR**5


@pytest.mark.parametrize(
    ("cap", "ceiling", "device_max", "expected"),
    [
        (4, None, 1.0, 0.4),
        (4, 0.25, 1.0, 0.25),
        (4, 0.9, 1.0, 0.4),
        (10, None, 0.4, 0.4),
        (0, None, 1.0, 0.0),
    ],
)
def test_one_clamp_point(
    cap: int, ceiling: float | None, device_max: float, expected: float
) -> None:
    gov = SafetyGovernor(
        SafetySettings(cap=cap, personal_ceiling=ceiling), zones=3, device_max=device_max
    )
    gov.start(0.0)
    run_for(gov, 1.0, 120)
    assert max(gov.output) == pytest.approx(expected)


@pytest.mark.parametrize("bad", [1.01, -0.1, math.nan, math.inf, "0.5", None])
def test_out_of_range_values_raise_and_nothing_changes(bad: object) -> None:
    gov = governor()
    run_for(gov, 0.5, 10)
    before = gov.output
    with pytest.raises(SafetyLimitError):
        gov.limit((bad, 0.1, 0.1), 10.5)  # type: ignore[arg-type]
    assert gov.output == before
    with pytest.raises(SafetyLimitError):
        to_levels((bad, 0.0, 0.0), 20)  # type: ignore[arg-type]


def test_to_levels_rounds_down() -> None:
    assert to_levels((0.4, 0.399, 0.0), 20) == (8, 7, 0)
    assert to_levels((1.0, 0.05, 0.049), 20) == (20, 1, 0)


def test_stop_is_immediate_latched_and_the_first_reason_stands() -> None:
    gov = governor()
    t = run_for(gov, 0.5, 20)
    gov.stop(StopReason.REMOTE_STOP)
    gov.stop(StopReason.USER_STOP)
    assert gov.output == (0.0, 0.0, 0.0)
    assert gov.stop_reason == StopReason.REMOTE_STOP
    run_for(gov, 1.0, 30)
    assert gov.output == (0.0, 0.0, 0.0)
    with pytest.raises(RuntimeError):
        gov.start(t)  # nothing resumes: a new session needs a new governor


def test_discomfort_bands() -> None:
    gov = governor(cap=10)
    t = run_for(gov, 0.6, 40)
    assert gov.report_discomfort(2, t) is Decision.TARGET
    held = gov.output[0]
    assert gov.report_discomfort(5, t) is Decision.HOLD
    t = run_for(gov, 1.0, 30)
    assert gov.output[0] == pytest.approx(held)  # 4-5: no further increases
    assert gov.report_discomfort(3, t) is Decision.TARGET  # released
    t = run_for(gov, 1.0, 10)
    assert gov.output[0] > held
    peak = gov.output[0]
    assert gov.report_discomfort(6, t) is Decision.DROP
    assert gov.output[0] <= peak / STEP_FACTOR**2 + EPS  # at least two steps, at once
    t = run_for(gov, 1.0, 60)
    assert gov.report_discomfort(1, t) is Decision.TARGET
    run_for(gov, 1.0, 60)
    assert gov.output[0] <= peak / STEP_FACTOR**2 + EPS  # frozen for the session
    assert gov.report_discomfort(7, t) is Decision.STOP
    assert gov.stop_reason == StopReason.DISCOMFORT
    assert gov.output == (0.0, 0.0, 0.0)


@pytest.mark.parametrize("bad", [-1, 11, 3.5, True, "5"])
def test_ratings_outside_0_to_10_are_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="0-10"):
        governor().report_discomfort(bad, 0.0)  # type: ignore[arg-type]


def test_bands_are_configurable_and_validated() -> None:
    gov = governor(cap=10, bands=DiscomfortBands(hold_at=3, drop_at=5, stop_at=6))
    assert gov.report_discomfort(6, 1.0) is Decision.STOP
    with pytest.raises(ValueError, match="bands"):
        DiscomfortBands(hold_at=6, drop_at=5)
    with pytest.raises(ValueError, match="two steps"):
        DiscomfortBands(drop_steps=1)


def test_session_limit_is_a_reported_stop_and_never_exceeds_30_minutes() -> None:
    gov = governor(max_session_s=60)
    run_for(gov, 0.5, 61, step=0.5)
    assert gov.stop_reason == StopReason.TIMEOUT
    assert SafetySettings(max_session_s=3 * 3600).session_limit_s == 30 * 60  # not the constant:
    # a test comparing with HARD_CEILING_S passes whatever the constant says
    with pytest.raises(ValueError, match="cap"):
        SafetySettings(cap=11)
    with pytest.raises(ValueError, match="rise period"):
        SafetySettings(rise_period_s=1.0)


ops = st.lists(
    st.one_of(
        st.tuples(st.just("limit"), st.floats(0.0, 5.0), st.tuples(*[st.floats(0, 1)] * 3)),
        st.tuples(st.just("rate"), st.floats(0.0, 5.0), st.integers(0, 10)),
        st.tuples(st.just("stop"), st.floats(0.0, 5.0), st.sampled_from(list(StopReason))),
    ),
    max_size=80,
)


@settings(max_examples=300)
@given(
    ops,
    st.integers(0, 10),
    st.one_of(st.none(), st.floats(0, 1)),
    st.floats(0.05, 1.0),
)
def test_no_sequence_breaks_the_invariants(
    sequence: list[tuple[str, float, object]],
    cap: int,
    ceiling: float | None,
    device_max: float,
) -> None:
    gov = SafetyGovernor(
        SafetySettings(cap=cap, personal_ceiling=ceiling), zones=3, device_max=device_max
    )
    gov.start(0.0)
    bound = min(cap / 10, device_max)
    t, last_limit, envelope, stopped_at = 0.0, 0.0, 0.0, None
    frozen_peak: float | None = None
    for op, dt, arg in sequence:
        t += dt
        if op == "limit":
            out = gov.limit(arg, t)  # type: ignore[arg-type]
            assert max(out) <= bound + EPS  # S1
            # S2: the envelope rises at most one step per 3 s; from zero, linearly to the floor.
            steps = (t - last_limit) / 3
            if envelope < RISE_FLOOR:
                allowed = envelope + RISE_FLOOR * steps
            else:
                allowed = envelope * STEP_FACTOR**steps
            assert gov.envelope <= allowed + EPS
            assert max(out) <= gov.envelope + EPS
            last_limit = t
            if frozen_peak is not None:
                assert max(out) <= frozen_peak + EPS  # S6: frozen after a rating ≥ 6
            envelope = gov.envelope
        elif op == "rate":
            before = max(gov.output)
            decision = gov.report_discomfort(arg, t)  # type: ignore[arg-type]
            if arg >= 7:  # type: ignore[operator]
                assert decision is Decision.STOP
            elif arg >= 6 and not gov.stopped:  # type: ignore[operator]
                assert max(gov.output) <= before / STEP_FACTOR**2 + EPS
                frozen_peak = min(frozen_peak or 1.0, max(before, envelope) / STEP_FACTOR**2)
            envelope = gov.envelope
        else:
            gov.stop(arg)  # type: ignore[arg-type]
        if gov.stopped:
            stopped_at = stopped_at or t
            assert gov.output == (0.0, 0.0, 0.0)  # S3: zero now and nothing non-zero after


def test_a_stalled_caller_does_not_jump_the_envelope() -> None:
    gov = governor(cap=10)
    t = run_for(gov, 1.0, 10.0)
    before = gov.envelope
    gov.limit((1.0, 1.0, 1.0), t + 30.0)  # the process was paused for 30 s
    assert gov.envelope <= before * STEP_FACTOR ** (0.5 / 3) + EPS


def test_a_remote_low_rating_does_not_release_a_hold() -> None:
    gov = governor(cap=10)
    t = run_for(gov, 0.6, 40)
    assert gov.report_discomfort(5, t) is Decision.HOLD
    held = max(gov.output)
    gov.report_discomfort(0, t, may_release=False)  # over MQTT without --remote-control
    run_for(gov, 1.0, 30)
    assert max(gov.output) == pytest.approx(held)


def test_the_defaults_are_moderate_and_fifteen_minutes() -> None:
    """S6/S7 defaults: without settings, output stays at 4/10 and the session at 15 min."""
    gov = SafetyGovernor(SafetySettings(), zones=3)
    gov.start(0.0)
    t = run_for(gov, 1.0, 120)
    assert max(gov.output) == pytest.approx(0.4)  # cap 4 of 10: "moderate, never severe"
    run_for(gov, 1.0, 15 * 60 - t - 1)
    assert not gov.stopped
    run_for(gov, 1.0, 2)
    assert gov.stop_reason == StopReason.TIMEOUT


def test_a_lowered_cap_bounds_output_for_the_rest_of_the_session() -> None:
    """The clamp keeps its cap term: lowering the cap mid-session holds, not just once."""
    gov = governor(cap=8)
    run_for(gov, 1.0, 60)
    assert max(gov.output) == pytest.approx(0.8)
    assert gov.set_cap(2) is None
    assert max(gov.output) <= 0.2 + EPS  # at once ...
    run_for(gov, 1.0, 120)
    assert max(gov.output) <= 0.2 + EPS  # ... and for as long as the session runs


def test_a_lowered_cap_is_not_raised_again_without_remote_control() -> None:
    gov = governor(cap=6)
    assert gov.set_cap(3) is None
    assert gov.set_cap(5) == "raising the cap remotely is not enabled"
    assert gov.cap == 3
    assert gov.set_cap(5, allow_raise=True) is None  # --remote-control: back up ...
    assert gov.set_cap(7, allow_raise=True) is not None  # ... never above the session's cap
    assert gov.cap == 5


@pytest.mark.parametrize(
    ("cap", "rating", "holds"), [(2, 3, True), (2, 2, False), (4, 3, False), (0, 1, True)]
)
def test_a_rating_above_the_cap_holds_even_below_the_hold_band(
    cap: int, rating: int, holds: bool
) -> None:
    governor = SafetyGovernor(SafetySettings(cap=cap), zones=1)
    decision = governor.report_discomfort(rating, 0.0)
    assert (decision is Decision.HOLD) is holds
    assert governor.holding is holds


def test_a_remote_raise_never_undoes_the_persons_lower_cap() -> None:
    governor = SafetyGovernor(SafetySettings(cap=4), zones=1)
    assert governor.lower_cap() == 3
    assert governor.lower_cap() == 2
    refused = governor.set_cap(4, allow_raise=True)  # remote control on: still not past "-"
    assert refused is not None
    assert "lowered the cap to 2" in refused
    assert governor.cap == 2
