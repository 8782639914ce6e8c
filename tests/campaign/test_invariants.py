"""The campaign's invariant checks catch what they claim to (synthetic records, no simulator)."""

from __future__ import annotations

import pytest

from sim.firmware import AppliedLevels
from tests.campaign.invariants import (
    CapChange,
    StopRequest,
    cap_violations,
    rise_bound,
    rise_violations,
    stop_violations,
)


def rec(t: float, *levels: int, cause: str = "set") -> AppliedLevels:
    return AppliedLevels(t, tuple(levels), cause)


def test_rise_bound_is_the_governors_envelope_from_zero() -> None:
    assert rise_bound(0.0) == 0.0
    assert rise_bound(1.5) == pytest.approx(0.025)
    assert rise_bound(3.0) == pytest.approx(0.05)
    assert rise_bound(6.0) == pytest.approx(0.05 * 1.3335, rel=1e-4)  # one 2.5 dB step
    assert rise_bound(600.0) == 1.0


def test_cap_violations() -> None:
    applied = [rec(1.0, 8, 0, 0), rec(2.0, 9, 0, 0), rec(5.0, 4, 0, 0), rec(6.0, 5, 0, 0)]
    assert cap_violations(applied[:1], 4, [], 20, settle_s=0.1) == []
    assert len(cap_violations(applied, 4, [], 20, settle_s=0.1)) == 1  # 9 > 8
    lowered = [CapChange(3.0, 2)]  # from t=3.1 on, at most level 4
    problems = cap_violations(applied, 4, lowered, 20, settle_s=0.1)
    assert [p.split(":")[0] for p in problems] == ["t=2.000", "t=6.000"]
    assert cap_violations([rec(1.0, 9, 0, 0)], 10, [], 20, settle_s=0, device_limit=0.4)


def test_rise_violations() -> None:
    assert rise_violations([rec(3.0, 1, 0, 0)], 0.0, 20) == []  # 0.05 of 20 = level 1
    assert rise_violations([rec(2.0, 1, 0, 0)], 0.0, 20)  # too soon for a whole level
    assert rise_violations([rec(30.0, 20, 0, 0)], 0.0, 20)  # a jump to full after 30 s
    assert rise_violations([rec(1.0, 5, 0, 0)], 2.0, 20)  # output before the start at all


def test_stop_violations() -> None:
    stopped = [rec(1.0, 5, 5, 5), rec(2.05, 0, 0, 0, cause="stop")]
    assert stop_violations(stopped, [StopRequest(2.0, "local", 0.1)]) == []
    slow = stop_violations(stopped, [StopRequest(1.5, "local", 0.1)])
    assert slow
    assert "still at (5, 5, 5)" in slow[0]
    resumed = [*stopped, rec(4.0, 3, 0, 0)]
    again = stop_violations(resumed, [StopRequest(2.0, "local", 0.1)])
    assert again
    assert "again at t=4.000 without a new start" in again[0]
    raced = [*stopped, rec(2.06, 3, 3, 3), rec(2.07, 0, 0, 0, cause="stop")]
    assert stop_violations(raced, [StopRequest(2.0, "local", 0.1)]) == []  # inside the bound


def test_a_clock_jump_allows_half_a_second_of_rise_and_no_more() -> None:
    at_6_5 = rec(6.0, 2, 0, 0)  # 0.05 × 1.334^(3.5/3) ≈ 0.07: level 1 at 6 s, level 1.4 at 6.5
    assert rise_violations([at_6_5], 0.0, 20)
    assert rise_violations([rec(6.0, 1, 0, 0)], 0.0, 20, jumps=[5.0]) == []
    assert rise_violations([rec(6.0, 3, 0, 0)], 0.0, 20, jumps=[5.0])
