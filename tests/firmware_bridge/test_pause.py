"""The person's controls during a session: pause, resume, "one lower" and who gave a rating.

Pause and a lowered cap touch the safety path: output falls at once (S2), through the
governor and straight to the link, not at the next control tick; resuming rises from zero at
S2's rate; a pause never stretches a session past its limit (S7). Session tests assert on the
simulator's own record of what reached the motors.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge.cli.display import human_summary
from firmware_bridge.device import StopReason
from firmware_bridge.profile_clock import ProfileClock
from firmware_bridge.runner import Session
from firmware_bridge.safety import RISE_FLOOR, STEP_FACTOR, SafetyGovernor, SafetySettings
from firmware_bridge.telemetry.bridge import SessionTelemetry
from firmware_bridge.telemetry.publisher import Publisher
from profiles.model import Profile
from sim.firmware import MAX_LEVEL
from tests.rigs import Rig, open_rig, until

EPS = 1e-9
RISE_S = 3.0  # S2: one step per three seconds, and 0 → RISE_FLOOR in the first three


def s2_bound(dt: float) -> float:
    """The most S2 allows `dt` seconds after output started rising from zero."""
    if dt <= RISE_S:
        return RISE_FLOOR * max(0.0, dt) / RISE_S
    return RISE_FLOOR * float(STEP_FACTOR ** ((dt - RISE_S) / RISE_S))


def steady(level: float = 1.0, seconds: float = 120, cool: float = 30) -> Profile:
    return Profile.model_validate(
        {
            "name": "test",
            "title": "Test",
            "segments": [
                {"kind": "steady", "duration_s": seconds, "level": level, "label": "work"},
                {"kind": "ramp", "duration_s": cool, "start": 0.2, "end": 0, "cool_down": True},
            ],
        }
    )


def governor(cap: int = 10, **kwargs: Any) -> SafetyGovernor:
    gov = SafetyGovernor(SafetySettings(cap=cap, **kwargs), zones=3)
    gov.start(0.0)
    return gov


def run_for(gov: SafetyGovernor, t: float, seconds: float, step: float = 0.05) -> float:
    """Ticks of full-scale profile values from `t` for `seconds`; returns the time reached."""
    end = t + seconds
    while t < end - EPS:
        t += step
        gov.limit((1.0, 1.0, 1.0), t)
    return t


# -- the governor's arithmetic ---------------------------------------------------------------


def test_pause_zeroes_output_at_once_and_holds_it_at_zero() -> None:
    gov = governor(cap=8)
    t = run_for(gov, 0.0, 60)
    assert max(gov.output) == pytest.approx(0.8)
    gov.pause(t)
    assert gov.output == (0.0, 0.0, 0.0)  # at once, before any tick
    while t < 90:
        t += 0.05
        assert gov.limit((1.0, 1.0, 1.0), t) == (0.0, 0.0, 0.0)  # and for as long as it lasts
    assert not gov.stopped  # a pause is not a stop: nothing is latched


def test_resume_rises_from_zero_at_the_s2_rate_never_back_to_the_old_level() -> None:
    gov = governor(cap=8)
    t = run_for(gov, 0.0, 60)
    gov.pause(t)
    t = run_for(gov, t, 20)
    gov.resume(t)
    resumed = t
    first = gov.limit((1.0, 1.0, 1.0), t + 0.05)
    assert max(first) <= s2_bound(0.05) + EPS  # not 0.8: from zero
    t += 0.05
    while t < resumed + 40:
        t += 0.05
        assert max(gov.limit((1.0, 1.0, 1.0), t)) <= s2_bound(t - resumed) + EPS
    assert max(gov.output) == pytest.approx(0.8)  # and it does get back there, gradually


def test_paused_time_counts_toward_the_session_limit() -> None:
    """S7: the limit is session time; a pause cannot stretch a session past it."""
    gov = governor(cap=4, max_session_s=60)
    t = run_for(gov, 0.0, 20)
    gov.pause(t)
    assert gov.limit((1.0, 1.0, 1.0), 59.9) == (0.0, 0.0, 0.0)
    assert not gov.stopped
    gov.limit((1.0, 1.0, 1.0), 60.0)
    assert gov.stop_reason == StopReason.TIMEOUT


def test_lower_cap_lowers_output_at_once_and_never_raises() -> None:
    gov = governor(cap=8)
    t = run_for(gov, 0.0, 60)
    assert gov.lower_cap() == 7
    assert max(gov.output) <= 0.7 + EPS  # at once, before any tick
    assert gov.envelope <= 0.7 + EPS
    for expected in range(6, -1, -1):
        assert gov.lower_cap() == expected
        assert max(gov.output) <= expected / 10 + EPS
    assert gov.lower_cap() == 0  # the floor is zero: never below, never wraps round
    run_for(gov, t, 30)
    assert gov.output == (0.0, 0.0, 0.0)


_ACTIONS = st.lists(
    st.one_of(
        st.tuples(st.just("tick"), st.floats(0.0, 1.0), st.floats(0.01, 2.0)),
        st.tuples(st.just("pause"), st.just(0.0), st.just(0.0)),
        st.tuples(st.just("resume"), st.just(0.0), st.just(0.0)),
        st.tuples(st.just("lower"), st.just(0.0), st.just(0.0)),
        st.tuples(st.just("rate"), st.integers(0, 6).map(float), st.just(0.0)),
    ),
    max_size=120,
)


@settings(max_examples=150, deadline=None)
@given(cap=st.integers(0, 10), actions=_ACTIONS)
def test_no_sequence_of_pauses_and_lowered_caps_breaks_s2(
    cap: int, actions: list[tuple[str, float, float]]
) -> None:
    """Never above the cap in force; zero while paused; from each start or resume, never
    above what S2 allows since then."""
    gov = governor(cap=cap, max_session_s=30 * 60)
    t, rising_since, caps = 0.0, 0.0, [cap]
    for kind, value, dt in actions:
        if kind == "tick":
            t += dt
            gov.limit((value,) * 3, t)
        elif kind == "pause":
            gov.pause(t)
        elif kind == "resume":
            if gov.paused:
                rising_since = t
            gov.resume(t)
        elif kind == "lower":
            caps.append(gov.lower_cap())
        else:
            gov.report_discomfort(int(value), t)
        peak = max(gov.output)
        assert peak <= gov.cap / 10 + EPS
        assert caps == sorted(caps, reverse=True)  # the person's key never raises the cap
        if gov.paused or gov.stopped:
            assert peak == 0.0
        else:
            assert peak <= s2_bound(t - rising_since) + EPS


def test_the_profile_clock_stops_while_paused() -> None:
    clock = ProfileClock(100.0)
    assert clock.at(110.0) == pytest.approx(10.0)
    clock.pause(110.0)
    assert clock.at(125.0) == pytest.approx(10.0)  # the profile waits
    assert clock.resume(130.0) == pytest.approx(20.0)
    assert clock.at(135.0) == pytest.approx(15.0)
    assert clock.resume(140.0) == 0.0  # resuming twice changes nothing


# -- sessions on the simulator ---------------------------------------------------------------


async def just_after_a_tick(session: Session) -> None:
    """Wait for a control tick, so that the next one is a whole control period away."""
    ticks = len(session.control_lateness_s)
    await until(lambda: len(session.control_lateness_s) > ticks)


def levels_now(rig: Rig) -> int:
    return max(rig.firmware.levels)


@pytest.mark.sim_only
async def test_pause_reaches_the_motors_before_the_next_tick_and_resume_ramps_from_zero() -> None:
    # Ticks 0.5 s apart (125 ms of real time at speed 4): a zero that waited for the next
    # tick would be seen still running just after the pause.
    async with open_rig("memory", speed=4) as rig, rig.link() as link:
        session = Session(link, steady(1.0, 200), SafetySettings(cap=2), control_hz=2)
        running = asyncio.create_task(session.run())
        await until(lambda: levels_now(rig) == 4, within=20)  # 20 % of 20 levels: the cap
        await just_after_a_tick(session)
        paused = rig.clock.now()
        assert session.pause()
        await asyncio.sleep(0.01)  # 40 ms of session time: far less than one tick
        assert rig.firmware.levels == (0, 0, 0)
        assert rig.firmware.applied[-1].cause == "set"  # an intensity write, not a stop
        assert not link.latched
        position = session.profile_s
        await asyncio.sleep(0.5)  # 2 s of session time: four ticks while paused
        assert all(not any(r.levels) for r in rig.applied_after(paused))
        assert session.profile_s == pytest.approx(position)  # the profile waits
        resumed = rig.clock.now()
        assert session.resume()
        await until(lambda: levels_now(rig) == 4, within=20)
        session.request_stop(StopReason.USER_STOP)
        record = await running
    after = [r for r in rig.applied_after(resumed) if r.cause == "set"]
    assert max(after[0].levels) <= 1  # from zero, one level at a time
    for applied in after:
        assert max(applied.levels) / MAX_LEVEL <= s2_bound(applied.t - resumed) + EPS
    assert [e.type for e in record.events].count("paused") == 1
    assert record.stop_reason == StopReason.USER_STOP


@pytest.mark.sim_only
async def test_a_lowered_cap_reaches_the_motors_before_the_next_tick() -> None:
    async with open_rig("memory", speed=4) as rig, rig.link() as link:
        session = Session(link, steady(1.0, 200), SafetySettings(cap=3), control_hz=2)
        running = asyncio.create_task(session.run())
        await until(lambda: levels_now(rig) == 6, within=20)  # 30 % of 20 levels: the cap
        for cap in (2, 1):
            await just_after_a_tick(session)
            assert session.lower_cap() == cap
            await asyncio.sleep(0.01)  # 40 ms of session time: far less than one tick
            assert levels_now(rig) <= 2 * cap  # cap/10 of 20 levels
        await asyncio.sleep(0.5)
        assert levels_now(rig) <= 2  # and it holds: nothing raises it again
        session.request_stop(StopReason.USER_STOP)
        record = await running
    lowered = [e.detail["cap"] for e in record.events if e.type == "cap_lowered"]
    assert lowered == [2, 1]
    assert "Cap lowered during the session to 1." in human_summary(record, {})


@pytest.mark.sim_only
async def test_a_pause_never_stretches_a_session_past_its_limit() -> None:
    async with open_rig("memory", speed=50) as rig, rig.link() as link:
        session = Session(link, steady(1.0, 120), SafetySettings(cap=4, max_session_s=60))
        running = asyncio.create_task(session.run())
        await until(lambda: session.profile_s > 10)
        session.pause()
        try:
            record = await asyncio.wait_for(asyncio.shield(running), timeout=5)  # 250 s
        except TimeoutError:
            session.request_stop(StopReason.USER_STOP)
            await running
            pytest.fail("a paused session ran past its limit")
    assert record.stop_reason == StopReason.TIMEOUT
    assert record.duration_s == pytest.approx(60, abs=1)
    assert rig.firmware.levels == (0, 0, 0)


@pytest.mark.sim_only
async def test_the_device_timer_follows_a_pause_so_the_profile_still_completes() -> None:
    """The device's own timer is armed for the profile's end; a pause moves that end."""
    async with open_rig("memory", speed=50) as rig, rig.link() as link:
        session = Session(link, steady(1.0, 60), SafetySettings(cap=4))
        running = asyncio.create_task(session.run())
        await until(lambda: session.profile_s > 10)
        started = rig.clock.now() - session.elapsed_s
        session.pause()
        paused = rig.clock.now()

        def deadline() -> float:
            return rig.firmware.timer_deadline or 0.0

        await until(lambda: deadline() > started + 60 + 30 + 5 + 1)  # moved past the profile's
        assert deadline() <= started + 15 * 60 + 5 + 1  # never past the limit's backstop (S7)
        await until(lambda: rig.clock.now() - paused > 30)
        session.resume()
        record = await running
    assert record.stop_reason == StopReason.COMPLETED  # not the device timer's TIMEOUT
    assert record.duration_s == pytest.approx(90 + 30, abs=2)
    assert not [e for e in record.events if e.type == "fault"]


class _Publisher:
    """Just enough of a publisher for the bridge to hand it the session's commands."""

    def __init__(self) -> None:
        self.session_id = "test"
        self.remote_control = False
        self.handlers: Any = None
        self.events: list[Any] = []

    def state(self, _payload: object) -> None:
        return None

    def telemetry(self, _payload: object) -> None:
        return None

    def event(self, payload: object) -> None:
        self.events.append(payload)


@pytest.mark.sim_only
async def test_every_rating_says_who_gave_it() -> None:
    """The person (keyboard, API), a remote (MQTT) and the simulator's virtual foot."""
    publisher = _Publisher()
    async with open_rig("memory", speed=20) as rig, rig.link() as link:
        session = Session(
            link,
            steady(1.0, 60),
            SafetySettings(cap=2),
            rating_source=rig.massager.rating,
            rating_period_s=10,
        )
        telemetry = SessionTelemetry(
            profile="test", cap=2, publisher=cast(Publisher, publisher), journal=None
        )
        telemetry.attach(session)
        running = asyncio.create_task(session.run())
        await until(lambda: len(session.record.ratings) >= 1)  # the virtual foot, every 10 s
        session.report_discomfort(2)
        assert publisher.handlers.discomfort(1) is None  # as MQTT's cmd/discomfort does
        session.request_stop(StopReason.USER_STOP)
        record = await running
    summary = record.summary()
    sources = [(r["nrs"], r["source"]) for r in summary["ratings"]]
    assert sources[0][1] == "simulated"
    assert sources[-2:] == [(2, "person"), (1, "remote")]
    events = [e for e in summary["events"] if e["type"] == "discomfort"]
    assert [e["source"] for e in events] == [s for _, s in sources]
    assert "you 2" in human_summary(record, {})
    assert "remote (MQTT) 1" in human_summary(record, {})
