"""Fault-campaign scenarios: a random profile, cap and fault timeline, played on the simulator.

`scenarios()` is a hypothesis strategy; `play()` runs one scenario on a tier-1 simulator with
the production link, runner, governor and MQTT command wiring (handlers called as the broker
lanes call them), then checks the invariants against the simulator's record. Several scenarios
run at once in one event loop (each on its own simulated device and clock), so that a few
hundred fit in CI's budget; that also puts the loop under the load a busy controller sees.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from hypothesis import strategies as st

from firmware_bridge.device import LinkEvent, ReconnectPolicy, StopReason
from firmware_bridge.journal import Journal
from firmware_bridge.protocol import FrameType, ScaledClock
from firmware_bridge.record import SessionRecord
from firmware_bridge.runner import Session
from firmware_bridge.safety import SafetySettings
from firmware_bridge.telemetry.bridge import SessionTelemetry
from firmware_bridge.telemetry.mqtt import BrokerSettings, MqttError
from firmware_bridge.telemetry.outbox import Outbox
from firmware_bridge.telemetry.publisher import Publisher
from firmware_bridge.telemetry.topics import Topics
from profiles.model import Profile
from sim.firmware import FaultPlan
from tests.campaign.invariants import (
    CapChange,
    StopRequest,
    cap_violations,
    rise_violations,
    stop_violations,
)
from tests.firmware_bridge.test_remote_stop import blast
from tests.mqtt_sessions import Listener, send
from tests.rigs import open_rig

SPEED = 20.0  # session seconds per real second: a 30 s session plays in 1.5 s
STOP_BOUND_REAL_S = 0.1  # a stop reaches the motors in ~1 ms; this allows a loaded CI machine
CAP_SETTLE_REAL_S = 0.1  # a lowered cap is in force by the next control tick; same allowance
WATCHDOG_MARGIN_S = 1.0  # session seconds past the device watchdog for its own zero to land
FLOOD = 5_000  # messages per flood: five times aiomqtt's incoming queue
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


class Broker(Protocol):
    """A real broker a campaign can kill for a while (shared by the scenarios of a batch)."""

    @property
    def settings(self) -> BrokerSettings: ...

    async def die_for(self, seconds: float) -> None: ...


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
    level = st.floats(0.0, 1.0)
    duration = draw(st.floats(2.0, 20.0))
    kind = draw(st.sampled_from(["steady", "ramp", "pulse", "wave", "burst", "alternate", "rest"]))
    segment: dict[str, Any] = {"kind": kind, "duration_s": duration}
    if kind == "steady":
        segment["level"] = draw(level)
    elif kind == "ramp":
        segment |= {"start": draw(level), "end": draw(level)}
    elif kind == "pulse":
        segment |= {"level": draw(level), "on_s": draw(st.floats(0.05, 2)), "off_s": 0.2}
    elif kind == "wave":
        low = draw(level)
        segment |= {"low": low, "high": draw(st.floats(low, 1.0)), "period_s": 2.0}
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
                at_s=st.floats(0.0, limit_s),
                kind=st.sampled_from(actions),
                value=st.integers(0, 10),
            ),
            max_size=6,
        )
    )
    return Scenario(
        profile=profile,
        cap=draw(st.integers(0, 10)),
        limit_s=limit_s,
        no_watchdog=draw(st.sampled_from([False, False, False, True])),  # 1 in 4
        actions=tuple(sorted(timeline, key=lambda a: a.at_s)),
    )


class JumpClock(ScaledClock):
    """A scaled clock whose `jump()` moves it forward at once (a suspended laptop, NTP)."""

    def __init__(self, speed: float) -> None:
        super().__init__(speed)
        self._offset = 0.0

    def now(self) -> float:
        return super().now() + self._offset

    def jump(self, seconds: float) -> None:
        self._offset += seconds


@dataclass
class Outcome:
    """What one scenario did and what the invariants said about it."""

    scenario: Scenario
    violations: list[str] = field(default_factory=list)
    stop_reason: StopReason | None = None
    journal: str = ""
    applied_records: int = 0


@dataclass
class _Message:
    """An MQTT message as the broker lanes hand it to the stop desk."""

    topic: str
    payload: bytes = b"stop"
    retain: bool = False


async def play(scenario: Scenario, workdir: Path, broker: Broker | None = None) -> Outcome:
    """Run `scenario` on its own simulated massager; return the invariants' verdict.

    With `broker`, telemetry and remote commands go through it for real (its lanes, its outbox),
    floods and broker deaths are among the faults, and every session event must end up either
    delivered, still kept in the outbox, or counted as dropped.
    """
    outcome = Outcome(scenario)
    clock = JumpClock(SPEED)
    plan = FaultPlan(no_watchdog=scenario.no_watchdog, seed=len(scenario.actions))
    profile = Profile.model_validate(scenario.profile)
    settings = SafetySettings(cap=scenario.cap, max_session_s=scenario.limit_s)
    crashes: list[str] = []
    async with open_rig("memory", plan=plan, clock=clock) as rig:  # one clock, both ends
        events: list[LinkEvent] = []
        link = rig.link(reconnect=ReconnectPolicy(attempts=3, first_backoff_s=0.5))
        link.listeners.append(events.append)
        topics = Topics(f"campaign-{id(outcome)}")
        outbox_dir = workdir / "outbox"
        publisher = Publisher(
            broker.settings if broker else BrokerSettings(host="127.0.0.1"),
            topics,
            outbox=Outbox(outbox_dir if broker else None),
        )
        serving = asyncio.create_task(publisher.run()) if broker else None
        listener = Listener(broker.settings, topics) if broker else None
        listening = asyncio.create_task(listener.run(reconnect=True)) if listener else None
        if broker is not None:
            with contextlib.suppress(TimeoutError):  # a dead broker is one of the faults
                async with asyncio.timeout(5):
                    await asyncio.gather(publisher.connected.wait(), listener.ready.wait())  # type: ignore[union-attr]
        journal = Journal("campaign", directory=workdir, header={})
        telemetry = SessionTelemetry(
            profile="campaign", cap=scenario.cap, publisher=publisher, journal=journal
        )
        async with link:
            session = Session(
                link,
                profile,
                settings,
                on_sample=telemetry.sample,
                on_event=telemetry.event,
            )
            telemetry.attach(session)
            running = asyncio.create_task(session.run())
            await _until(lambda: session.governor is not None or running.done())
            started = clock.now()
            stops, lowered, down = await _drive(
                scenario, session, publisher, rig, clock, started, running, broker
            )
            try:
                record = await asyncio.wait_for(running, scenario.limit_s / SPEED + 10)
            except Exception as exc:
                crashes.append(f"session crashed: {exc!r}")
                record = None
            if record is not None:
                telemetry.finish(record)
            await asyncio.to_thread(journal.flush)
        if serving is not None:
            await publisher.close()
            await asyncio.wait_for(serving, 10)
        if listening is not None and listener is not None:
            await asyncio.sleep(0.2)  # the last QoS 1 events on their way to the listener
            listening.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await listening
            if record is not None:
                crashes += _unaccounted(record, listener, publisher, outbox_dir)
        firmware = rig.firmware
        if any(firmware.levels):  # the link is gone: the device's own watchdog is due
            with contextlib.suppress(TimeoutError):
                await _until(
                    lambda: not any(firmware.levels),
                    clock.real_seconds(firmware._watchdog_period + WATCHDOG_MARGIN_S),
                )
    outcome.applied_records = len(firmware.applied)
    outcome.journal = journal.status
    outcome.stop_reason = record.stop_reason if record else None
    governor = session.governor
    started_at = governor.started_at if governor and governor.started_at is not None else started
    stop_bound = STOP_BOUND_REAL_S * SPEED + 3 * plan.slow_write_s
    watchdog_bound = firmware._watchdog_period + WATCHDOG_MARGIN_S + stop_bound
    requests = [
        StopRequest(t, source, watchdog_bound if _in(down, t) else stop_bound)
        for t, source in stops
    ]
    for event in events:  # every latched stop the link made, whatever its reason
        if event.kind == "stop":
            reason = str(event.detail.get("reason"))
            link_side = reason in {"link_lost", "device_silent"} or _in(down, event.t)
            requests.append(
                StopRequest(event.t, f"link {reason}", watchdog_bound if link_side else stop_bound)
            )
    device_limit = 0.4 if scenario.no_watchdog else 1.0
    max_level = firmware.max_level
    outcome.violations = (
        crashes
        + cap_violations(
            firmware.applied,
            scenario.cap,
            lowered,
            max_level,
            settle_s=CAP_SETTLE_REAL_S * SPEED + 3 * plan.slow_write_s,
            device_limit=device_limit,
        )
        + rise_violations(firmware.applied, started_at, max_level)
        + stop_violations(firmware.applied, requests)
    )
    if any(firmware.levels):
        outcome.violations.append(f"the session ended with the motors at {firmware.levels}")
    return outcome


def _in(windows: list[tuple[float, float]], t: float) -> bool:
    return any(start <= t <= end for start, end in windows)


async def _until(predicate: Callable[[], bool], within_s: float = 10.0) -> None:
    async with asyncio.timeout(within_s):
        while not predicate():  # noqa: ASYNC110 - polling the simulator's record by design
            await asyncio.sleep(0.001)


async def _drive(  # noqa: PLR0912 - one branch per kind of fault reads best as a table
    scenario: Scenario,
    session: Session,
    publisher: Publisher,
    rig: Any,
    clock: JumpClock,
    started: float,
    running: asyncio.Task[Any],
    broker: Broker | None,
) -> tuple[list[tuple[float, str]], list[CapChange], list[tuple[float, float]]]:
    """Carry out the timeline; returns stop requests, cap changes and link-down windows."""
    stops: list[tuple[float, str]] = []
    lowered: list[CapChange] = []
    down: list[tuple[float, float]] = []
    firmware, plan, massager = rig.firmware, rig.firmware.plan, rig.massager
    handlers = publisher.handlers
    assert handlers is not None
    assert handlers.cap is not None
    forever = float("inf")
    for action in scenario.actions:
        delay = started + action.at_s - clock.now()
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(clock.real_seconds(delay)):
                    await asyncio.shield(running)
        if running.done():
            break
        now = clock.now()
        match action.kind:
            case "rate":
                with contextlib.suppress(RuntimeError):
                    session.report_discomfort(action.value)
                if action.value >= 7:
                    stops.append((now, "rating 7+"))
            case "remote_rate":
                handlers.discomfort(action.value)
                if action.value >= 7:
                    stops.append((now, "remote rating 7+"))
            case "lower_cap":
                if handlers.cap(action.value) is None:
                    lowered.append(CapChange(now, action.value))
            case "stop":
                session.request_stop(StopReason.USER_STOP)
                stops.append((now, "local"))
            case "remote_stop" if broker is not None:
                request = json.dumps({"request_id": f"r{action.value}", "ts": time.time()})
                with contextlib.suppress(MqttError, OSError):  # the broker may be dead now
                    await send(broker.settings, publisher.topics.command("stop"), request)
                    stops.append((clock.now(), "remote over MQTT"))
            case "remote_stop":
                body = json.dumps({"request_id": f"r{action.value}"}).encode()
                publisher.stops.on_message(_Message(publisher.topics.command("stop"), body))
                stops.append((now, "remote"))
            case "flood" if broker is not None:
                topic = publisher.topics.command("discomfort")
                with contextlib.suppress(OSError):
                    await asyncio.to_thread(blast, broker.settings, topic, b"3", FLOOD)
            case "broker_death" if broker is not None:
                await broker.die_for(clock.real_seconds(action.value / 2 + 0.5))
            case "button":
                massager.press_button()
                stops.append((now, "button"))
            case "drop_link":
                massager.drop_link()
                down.append((now, forever))
            case "out_of_range":
                rig.out_of_range()
                down.append((now, forever))
                asyncio.get_running_loop().call_later(clock.real_seconds(3.0), rig.back_in_range)
            case "garble":
                plan.garble_notify = action.value / 20
            case "drop_notify":
                plan.drop_notify = action.value / 20
            case "delay_notify":
                plan.delay_notify_s = action.value / 20
            case "nack_intensity":
                plan.nack_types = frozenset({FrameType.SET_INTENSITY})
            case "slow_writes":
                plan.slow_write_s = 0.2
            case "reboot":
                plan.reboot_at_s = now  # at the firmware's next tick (≤ one status period)
                down.append((now, forever))
            case "mute":
                plan.mute_at_s = now
                down.append((now, forever))  # its stop cannot be confirmed: watchdog bound
            case "low_battery":
                firmware.battery_pct = 4.0
            case "over_temperature":
                firmware.temperature_c = 41.5
            case "clock_jump":
                clock.jump(float(action.value))
                down.append((now, now + action.value + firmware._watchdog_period))
    return stops, lowered, down


def _unaccounted(
    record: SessionRecord, listener: Listener, publisher: Publisher, outbox_dir: Path
) -> list[str]:
    """Session events neither delivered, nor kept in the outbox, nor counted as dropped."""
    delivered = {(e.get("type"), e.get("t")) for e in listener.events()}
    kept_box = Outbox(outbox_dir)
    kept: set[tuple[object, object]] = set()
    while (event := kept_box.peek()) is not None:
        kept.add((event.get("type"), event.get("t")))
        kept_box.pop()
    dropped = publisher.outbox.dropped + kept_box.dropped
    missing = [e for e in record.events if (e.type, round(e.t, 3)) not in delivered | kept]
    if missing and not dropped:
        first = missing[0]
        return [f"{len(missing)} events lost without a count, first {first.type} at {first.t}"]
    return []
