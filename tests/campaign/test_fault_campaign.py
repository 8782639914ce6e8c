"""The fault campaign: hypothesis-driven sessions under random faults, invariants checked after
every run against the simulator's record (never above the cap, never rising faster than S2,
every stop at zero within its bound, nothing after a latched stop, no crash).

Seeded (derandomized) so CI runs the same examples every time; `--campaign-examples N` explores
more (each example plays BATCH scenarios at once). The count is printed at the end of the run.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from firmware_bridge.durable import writer
from firmware_bridge.telemetry.mqtt import BrokerSettings
from tests.brokers import Mosquitto
from tests.campaign import STATS
from tests.campaign.play import Outcome, play
from tests.campaign.scenarios import MQTT_ACTIONS, Action, Scenario, scenarios

pytestmark = pytest.mark.sim_only

BATCH = 8  # scenarios played at once per example, each on its own device and clock
MQTT_BATCH = 4  # over a real broker: each with its own publisher, lanes and listener


def campaign_examples() -> int:
    return STATS.examples_wanted


# Found by review: a device without a watchdog, lost while running, was walked away from.
LOST_WITHOUT_WATCHDOG = [
    Scenario(
        profile={
            "name": "campaign",
            "title": "Campaign",
            "segments": [
                {"kind": "steady", "duration_s": 20, "level": 1.0},
                {"kind": "ramp", "duration_s": 30, "start": 0.3, "end": 0, "cool_down": True},
            ],
        },
        cap=10,
        limit_s=30,
        no_watchdog=True,
        actions=(Action(8.0, kind),),
    )
    for kind in ("drop_link", "out_of_range")
] * (BATCH // 4)
# A controller clock that jumps while output is still rising (S2 must hold on the device).
JUMP_WHILE_RISING = [
    Scenario(
        profile=LOST_WITHOUT_WATCHDOG[0].profile,
        cap=10,
        limit_s=35,
        no_watchdog=False,
        actions=(Action(6.0, "clock_jump", value),),
    )
    for value in (4, 8)
] * (BATCH // 4)


@pytest.mark.timeout(900)
def test_no_fault_breaks_a_safety_invariant() -> None:
    started = time.monotonic()
    checked_before = STATS.checked_stops

    @settings(
        max_examples=campaign_examples(),
        deadline=None,
        derandomize=True,  # seeded: CI sees the same examples every run
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(st.lists(scenarios(), min_size=BATCH, max_size=BATCH))
    @example(batch=LOST_WITHOUT_WATCHDOG + JUMP_WHILE_RISING)
    def campaign(batch: list[Scenario]) -> None:
        outcomes = asyncio.run(_play_all(batch))
        STATS.record(outcomes)
        broken = [o for o in outcomes if o.violations]
        assert not broken, _report(broken[0])

    campaign()
    STATS.seconds += time.monotonic() - started
    # Not vacuous: stops must have met running motors (one per example at least, on average).
    assert STATS.checked_stops - checked_before >= campaign_examples()


@pytest.mark.timeout(900)
def test_no_fault_breaks_an_invariant_over_a_real_broker(mosquitto: Mosquitto) -> None:
    """Floods, remote stops over MQTT and broker deaths too; every event delivered or counted."""
    started = time.monotonic()
    broker = KillableBroker(mosquitto)

    @settings(
        max_examples=max(1, campaign_examples() // 5),
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(st.lists(scenarios(MQTT_ACTIONS), min_size=MQTT_BATCH, max_size=MQTT_BATCH))
    def campaign(batch: list[Scenario]) -> None:
        outcomes = asyncio.run(_play_all(batch, broker))
        STATS.record(outcomes)
        broken = [o for o in outcomes if o.violations]
        assert not broken, _report(broken[0])

    campaign()
    STATS.seconds += time.monotonic() - started


class KillableBroker:
    """mosquitto that a scenario can kill (SIGKILL) and bring back on the same port."""

    def __init__(self, mosquitto: Mosquitto) -> None:
        self.mosquitto = mosquitto
        self.lock: asyncio.Lock | None = None  # per event loop: each example runs its own

    @property
    def settings(self) -> BrokerSettings:
        return self.mosquitto.settings

    async def die_for(self, seconds: float) -> None:
        self.lock = self.lock or asyncio.Lock()
        if self.lock.locked():
            return  # already dead: one death at a time
        async with self.lock:
            self.mosquitto.kill()
            await asyncio.sleep(seconds)
            await asyncio.to_thread(self.mosquitto.start)


async def _play_all(batch: list[Scenario], broker: KillableBroker | None = None) -> list[Outcome]:
    if broker is not None:
        broker.lock = None
    with tempfile.TemporaryDirectory(prefix="campaign-") as tmp:
        plays = (play(scenario, Path(tmp) / str(i), broker) for i, scenario in enumerate(batch))
        outcomes = list(await asyncio.gather(*plays))
        await asyncio.to_thread(writer().flush)  # before the directory goes away
        return outcomes


def _report(outcome: Outcome) -> str:
    scenario = outcome.scenario
    lines = [
        f"cap {scenario.cap}, limit {scenario.limit_s:.1f} s, no_watchdog={scenario.no_watchdog}",
        f"profile {scenario.profile['segments'][:-1]}",
        "actions " + ", ".join(f"{a.kind}({a.value})@{a.at_s:.2f}" for a in scenario.actions),
        f"stop_reason {outcome.stop_reason}",
        *outcome.violations[:5],
    ]
    return "\n".join(lines)
