"""A virtual user: turns motor vibration into perceived discomfort and 0-10 ratings.

Model (documented so tests can reason about it):
- Perceived magnitude follows Stevens' power law, ψ = (s_z · a_z)^n, with a_z the motor amplitude
  0-1 of zone z, s_z the zone's sensitivity (a sore heel is more sensitive) and n ≈ 0.9 (vibration
  exponents reported for glabrous skin are 0.6-1.0).
- Slow adaptation: sustained vibration feels weaker; the adapted fraction approaches
  `max_adaptation · a_z` with time constant `adaptation_tau_s` and recovers the same way.
- A rating is 10 · max_z ψ_z / ψ_pain, rounded the way people do (to a whole number, with a
  little noise), clamped to 0-10. `ψ_pain` is the perceived magnitude this person calls 10.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

DEFAULT_SENSITIVITY = (1.4, 1.0, 0.8)  # heel (sore), arch, forefoot
STEVENS_EXPONENT = 0.9
ADAPTATION_TAU_S = 90.0  # vibrotactile adaptation builds over a minute or two
MAX_ADAPTATION = 0.3  # sustained vibration feels up to 30 % weaker
RATING_NOISE = 0.4  # standard deviation, in rating points, of how people round


@dataclass
class Foot:
    """One person's foot on the massager."""

    sensitivity: tuple[float, ...] = DEFAULT_SENSITIVITY
    pain_magnitude: float = 1.0  # ψ at which this person reports 10
    exponent: float = STEVENS_EXPONENT
    adaptation_tau_s: float = ADAPTATION_TAU_S
    max_adaptation: float = MAX_ADAPTATION
    noise: float = RATING_NOISE
    seed: int = 0
    _adapted: list[float] = field(default_factory=list, init=False)
    _last_t: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._adapted = [0.0] * len(self.sensitivity)

    def feel(self, amplitudes: tuple[float, ...], now: float) -> float:
        """Perceived discomfort on a continuous 0-10 scale for these zone amplitudes."""
        if self._last_t is not None and now > self._last_t:
            decay = math.exp(-(now - self._last_t) / self.adaptation_tau_s)
            for zone, amplitude in enumerate(amplitudes[: len(self._adapted)]):
                target = self.max_adaptation * amplitude
                self._adapted[zone] = target + (self._adapted[zone] - target) * decay
        self._last_t = now if self._last_t is None else max(self._last_t, now)
        worst = 0.0
        for zone, amplitude in enumerate(amplitudes[: len(self.sensitivity)]):
            effective = max(0.0, amplitude * (1 - self._adapted[zone])) * self.sensitivity[zone]
            worst = max(worst, effective**self.exponent)
        return min(10.0, 10 * worst / self.pain_magnitude)

    def rate(self, amplitudes: tuple[float, ...], now: float) -> int:
        """A whole-number 0-10 rating, as a person would say it."""
        felt = self.feel(amplitudes, now) + self._rng.gauss(0.0, self.noise)
        return max(0, min(10, round(felt)))
