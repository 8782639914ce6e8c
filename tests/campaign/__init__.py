"""The fault campaign: random sessions under random faults, with the safety invariants checked."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.campaign.play import Outcome

DEFAULT_EXAMPLES = 30  # × 8 scenarios each: about 240 sessions, a few minutes on two cores


@dataclass
class CampaignStats:
    """What the campaign did, for the summary line at the end of the test run."""

    examples_wanted: int = DEFAULT_EXAMPLES
    examples: int = 0
    scenarios: int = 0
    seconds: float = 0.0
    stop_reasons: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)

    running_faults: Counter[str] = field(default_factory=Counter)
    checked_stops: int = 0

    def record(self, outcomes: list[Outcome]) -> None:
        self.examples += 1
        self.scenarios += len(outcomes)
        for outcome in outcomes:
            self.stop_reasons[str(outcome.stop_reason)] += 1
            self.faults.update(outcome.executed)
            self.running_faults.update(outcome.while_running)
            self.checked_stops += outcome.checked_stops


STATS = CampaignStats()
