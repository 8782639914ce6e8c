"""The virtual user: power-law discomfort, zone sensitivity, adaptation, whole-number ratings."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sim.foot import Foot


def test_more_vibration_hurts_more() -> None:
    foot = Foot(noise=0.0)
    feelings = [foot.feel((a, a, a), 0.0) for a in (0.0, 0.2, 0.4, 0.6, 0.8)]
    assert feelings == sorted(feelings)
    assert feelings[0] == 0.0


def test_sore_heel_is_more_sensitive_than_forefoot() -> None:
    assert Foot(noise=0.0).feel((0.5, 0, 0), 0.0) > Foot(noise=0.0).feel((0, 0, 0.5), 0.0)


def test_power_law_exponent() -> None:
    foot = Foot(sensitivity=(1.0,), exponent=0.5, noise=0.0)
    assert abs(foot.feel((0.25,), 0.0) - 5.0) < 1e-9


def test_sustained_vibration_adapts_and_recovers() -> None:
    foot = Foot(noise=0.0)
    start = foot.feel((0.5, 0.5, 0.5), 0.0)
    adapted = foot.feel((0.5, 0.5, 0.5), 300.0)
    assert adapted < start * 0.9  # 0.5 amplitude adapts towards 15 % weaker
    foot.feel((0.0, 0.0, 0.0), 1200.0)
    assert foot.feel((0.5, 0.5, 0.5), 1200.0) > adapted


@given(st.tuples(*[st.floats(0, 1)] * 3), st.integers(0, 1000))
def test_ratings_are_whole_numbers_0_to_10(
    amplitudes: tuple[float, float, float], seed: int
) -> None:
    rating = Foot(seed=seed).rate(amplitudes, 0.0)
    assert isinstance(rating, int)
    assert 0 <= rating <= 10
