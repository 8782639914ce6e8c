"""Playing one campaign scenario and judging it against the simulator's record.

The scenario runs on a tier-1 simulator with the production link, runner, governor and MQTT
command wiring (without a broker the handlers are called as the broker lanes call them). The
device and the controller have their own clocks, both `SPEED` times real time: a clock jump
moves only the controller's, so the rise check, on the device's clock, sees what a person would.
Every time the campaign records is device time; every fault that must stop output is recorded
when it happens (not when the controller noticed), with the bound it must stop within.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from firmware_bridge.device import LinkEvent, MassagerLink, ReconnectPolicy, StopReason
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
from sim.firmware import STATUS_INTERVAL_S, FaultPlan
from tests.campaign.invariants import (
    CapChange,
    StopRequest,
    cap_violations,
    level_at,
    rise_violations,
    stop_violations,
)
from tests.campaign.scenarios import Scenario
from tests.firmware_bridge.test_remote_stop import blast
from tests.mqtt_sessions import Listener, send
from tests.rigs import Rig, open_rig

SPEED = 20.0  # session seconds per real second: a 30 s session plays in 1.5 s
STOP_BOUND_REAL_S = 0.1  # a stop reaches the motors in ~1 ms; this allows a loaded CI machine
CAP_SETTLE_REAL_S = 0.1  # a lowered cap is in force by the next control tick; same allowance
WATCHDOG_FLOOR_REAL_S = 0.15  # the device's watchdog allows at least this much real time (a
# false trip under load is a fault stop: safe); the campaign's bound is then 3 session-seconds
MARGIN_S = 1.0  # session seconds for a zero that is due to land (one status period and more)
RECONNECT = ReconnectPolicy(attempts=3, first_backoff_s=0.5, max_backoff_s=2.0)
# Without a watchdog only the controller's reconnect (zero first) stops a device it lost. Its
# backoff runs on the session clock but each connect attempt on bleak-retry-connector's real
# one, so the bound is real time: three tries, and the device out of range for 3 s.
RECONNECT_BOUND_S = 2.0 * SPEED
FLOOD = 5_000  # messages per flood: five times aiomqtt's incoming queue


class Broker(Protocol):
    """A real broker a campaign can kill for a while (shared by the scenarios of a batch)."""

    @property
    def settings(self) -> BrokerSettings: ...

    async def die_for(self, seconds: float) -> None: ...


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
    executed: Counter[str] = field(default_factory=Counter)  # faults that took place
    while_running: Counter[str] = field(default_factory=Counter)  # ... with the motors on
    checked_stops: int = 0  # stop requests that found the motors running


@dataclass
class _Message:
    """An MQTT message as the broker lanes hand it to the stop desk."""

    topic: str
    payload: bytes = b"stop"
    retain: bool = False


@dataclass
class _Timeline:
    """What the driver did, in device time."""

    stops: list[StopRequest] = field(default_factory=list)
    lowered: list[CapChange] = field(default_factory=list)
    down: list[tuple[float, float]] = field(default_factory=list)  # link possibly down
    jumps: list[float] = field(default_factory=list)  # the controller's clock jumped


async def play(scenario: Scenario, workdir: Path, broker: Broker | None = None) -> Outcome:
    """Run `scenario` on its own simulated massager; return the invariants' verdict.

    With `broker`, telemetry and remote commands go through it for real (its lanes, its outbox),
    floods and broker deaths are among the faults, and every session event must end up either
    delivered, still kept in the outbox, or counted as dropped.
    """
    outcome = Outcome(scenario)
    device_clock, clock = ScaledClock(SPEED), JumpClock(SPEED)
    offset = clock.now() - device_clock.now()  # the two clocks' origins, microseconds apart
    plan = FaultPlan(no_watchdog=scenario.no_watchdog, seed=len(scenario.actions))
    settings = SafetySettings(cap=scenario.cap, max_session_s=scenario.limit_s)
    problems: list[str] = []
    async with open_rig("memory", plan=plan, clock=device_clock) as rig:
        rig.firmware.watchdog_floor_s = WATCHDOG_FLOOR_REAL_S * SPEED
        link = MassagerLink(rig.transport, clock=clock, reconnect=RECONNECT)
        events: list[tuple[LinkEvent, float]] = []
        link.listeners.append(lambda event: events.append((event, device_clock.now())))
        topics = Topics(f"campaign-{id(outcome)}")
        publisher = Publisher(
            broker.settings if broker else BrokerSettings(host="127.0.0.1"),
            topics,
            outbox=Outbox(workdir / "outbox" if broker else None),
        )
        listener = Listener(broker.settings, topics) if broker else None
        tasks = [asyncio.create_task(publisher.run())] if broker else []
        if listener is not None:
            tasks.append(asyncio.create_task(listener.run(reconnect=True)))
            with contextlib.suppress(TimeoutError):  # a dead broker is one of the faults
                async with asyncio.timeout(5):
                    await asyncio.gather(publisher.connected.wait(), listener.ready.wait())
        journal = Journal("campaign", directory=workdir, header={})
        telemetry = SessionTelemetry(
            profile="campaign", cap=scenario.cap, publisher=publisher, journal=journal
        )
        record: SessionRecord | None = None
        async with link:
            session = Session(
                link,
                Profile.model_validate(scenario.profile),
                settings,
                on_sample=telemetry.sample,
                on_event=telemetry.event,
            )
            telemetry.attach(session)
            running = asyncio.create_task(session.run())
            await _until(lambda: session.governor is not None or running.done())
            timeline = await _drive(scenario, outcome, session, publisher, rig, clock, broker)
            try:
                record = await asyncio.wait_for(running, scenario.limit_s / SPEED + 10)
            except Exception as exc:
                problems.append(f"session crashed: {exc!r}")
            if record is not None:
                telemetry.finish(record)
            await asyncio.to_thread(journal.flush)
        if broker is not None:
            await publisher.close()
            await asyncio.wait_for(tasks[0], 10)
            await asyncio.sleep(0.2)  # the last QoS 1 events on their way to the listener
        for task in tasks[1:]:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if any(rig.firmware.levels):  # the link is gone: the device's own watchdog is due
            with contextlib.suppress(TimeoutError):
                await _until(lambda: not any(rig.firmware.levels), _watchdog_s(rig) / SPEED + 1)
    if record is not None and listener is not None:
        problems += _unaccounted(record, listener, publisher, workdir / "outbox")
    outcome.stop_reason = record.stop_reason if record else None
    # The governor's own start, on the device's clock (no jump comes before FIRST_FAULT_S).
    governor = session.governor
    started = float("inf")  # never started: no output may exist to check against S2
    if governor is not None and governor.started_at is not None:
        started = governor.started_at - offset
    outcome.violations = problems + _judge(scenario, rig, timeline, events, started, outcome)
    return outcome


def _watchdog_s(rig: Rig) -> float:
    """How long the device runs on its own after the controller's last frame (session s)."""
    firmware = rig.firmware
    if firmware.plan.no_watchdog:
        return RECONNECT_BOUND_S  # only the controller's reconnect (zero first) stops it
    return max(firmware.watchdog_s or 0.0, firmware.watchdog_floor_s) + MARGIN_S


def _judge(
    scenario: Scenario,
    rig: Rig,
    timeline: _Timeline,
    events: list[tuple[LinkEvent, float]],
    started: float,
    outcome: Outcome,
) -> list[str]:
    firmware = rig.firmware
    stops = list(timeline.stops)
    for event, at in events:  # every latched stop the link made: nothing non-zero after it
        if event.kind == "stop":
            bound = _watchdog_s(rig) if _in(timeline.down, at) else _stop_bound(rig)
            stops.append(StopRequest(at, f"link {event.detail.get('reason')}", bound))
    for stop in stops:
        levels = level_at(firmware.applied, stop.t)
        outcome.checked_stops += bool(levels and any(levels))
    problems = (
        cap_violations(
            firmware.applied,
            scenario.cap,
            timeline.lowered,
            firmware.max_level,
            settle_s=CAP_SETTLE_REAL_S * SPEED + 3 * firmware.plan.slow_write_s,
            device_limit=0.4 if scenario.no_watchdog else 1.0,
        )
        + rise_violations(firmware.applied, started, firmware.max_level, timeline.jumps)
        + stop_violations(firmware.applied, stops)
    )
    if any(firmware.levels):
        problems.append(f"the session ended with the motors at {firmware.levels}")
    return problems


def _stop_bound(rig: Rig) -> float:
    return STOP_BOUND_REAL_S * SPEED + 3 * rig.firmware.plan.slow_write_s


def _in(windows: list[tuple[float, float]], t: float) -> bool:
    return any(start <= t <= end for start, end in windows)


async def _until(predicate: Callable[[], bool], within_s: float = 10.0) -> None:
    async with asyncio.timeout(within_s):
        while not predicate():  # noqa: ASYNC110 - polling the simulator's record by design
            await asyncio.sleep(0.001)


async def _drive(  # noqa: PLR0912 - one branch per kind of fault reads best as a table
    scenario: Scenario,
    outcome: Outcome,
    session: Session,
    publisher: Publisher,
    rig: Rig,
    clock: JumpClock,
    broker: Broker | None,
) -> _Timeline:
    """Carry out the faults at their times (device clock) while the session runs."""
    done = _Timeline()
    firmware, plan, massager = rig.firmware, rig.firmware.plan, rig.massager
    device = massager.clock
    handlers = publisher.handlers
    assert handlers is not None
    assert handlers.cap is not None
    start = device.now()
    forever = float("inf")
    stop_bound = _stop_bound(rig)
    silence = session.link.health.silence_s + STATUS_INTERVAL_S + MARGIN_S
    muted_at: float | None = None  # no STATUS from then on: only the silence stop helps
    lossy = False  # notifications garbled, dropped or delayed: a report's arrival is not bounded
    for action in scenario.actions:
        delay = start + action.at_s - device.now()
        if delay > 0:
            await asyncio.sleep(device.real_seconds(delay))
        if session.governor is None or session.governor.stopped:
            break  # the session is over: what is left would prove nothing
        now = device.now()
        running = any(firmware.levels)
        outcome.executed[action.kind] += 1
        outcome.while_running[action.kind] += running
        down = _in(done.down, now)
        bound = _watchdog_s(rig) if down else stop_bound
        match action.kind:
            case "rate":
                session.report_discomfort(action.value)
                if action.value >= 7:
                    done.stops.append(StopRequest(now, "rating 7+", bound))
            case "remote_rate":
                handlers.discomfort(action.value)
                if action.value >= 7:
                    done.stops.append(StopRequest(now, "remote rating 7+", bound))
            case "lower_cap":
                cap = max(0, session.governor.cap - 1 - action.value % 3)  # one to three down
                if handlers.cap(cap) is None:
                    done.lowered.append(CapChange(now, cap))
            case "stop":
                session.request_stop(StopReason.USER_STOP)
                done.stops.append(StopRequest(now, "local", bound))
            case "remote_stop" if broker is not None:
                request = json.dumps({"request_id": f"r{action.value}", "ts": time.time()})
                with contextlib.suppress(MqttError, OSError):  # the broker may be dead now
                    await send(broker.settings, publisher.topics.command("stop"), request)
                    # From before the publish, allowing what the publish itself took.
                    sent = device.now() - now
                    done.stops.append(StopRequest(now, "remote over MQTT", bound + sent))
            case "remote_stop":
                body = json.dumps({"request_id": f"r{action.value}"}).encode()
                publisher.stops.on_message(_Message(publisher.topics.command("stop"), body))
                done.stops.append(StopRequest(now, "remote", bound))
            case "button":
                massager.press_button()
                done.stops.append(StopRequest(now, "button", stop_bound))  # the device's own
            case "drop_link":
                massager.drop_link()
                done.down.append((now, forever))
                done.stops.append(StopRequest(now, "link lost", _watchdog_s(rig)))
            case "out_of_range":
                rig.out_of_range()
                done.down.append((now, forever))
                done.stops.append(StopRequest(now, "out of range", _watchdog_s(rig)))
                back = device.real_seconds(3.0)
                asyncio.get_running_loop().call_later(back, rig.back_in_range)
            case "garble":
                plan.garble_notify = action.value / 20
                lossy = lossy or action.value > 0
            case "drop_notify":
                plan.drop_notify = action.value / 20
                lossy = lossy or action.value > 0
            case "delay_notify":
                plan.delay_notify_s = action.value / 20
                lossy = lossy or action.value > 0
            case "nack_intensity":
                plan.nack_types = frozenset({FrameType.SET_INTENSITY})
            case "slow_writes":
                plan.slow_write_s = 0.2
                stop_bound = _stop_bound(rig)
            case "reboot":
                plan.reboot_at_s = now  # at the firmware's next tick (within a status period)
                done.down.append((now, forever))
                done.stops.append(StopRequest(now, "reboot", STATUS_INTERVAL_S + MARGIN_S))
            case "mute":
                plan.mute_at_s = now  # it still obeys: the silence stop reaches it
                muted_at = muted_at if muted_at is not None else now
                done.stops.append(StopRequest(now, "device silent", silence + bound))
            case "low_battery" | "over_temperature":
                if action.kind == "low_battery":
                    firmware.battery_pct = 4.0
                else:
                    firmware.temperature_c = 41.5
                if muted_at is not None:  # no report will come: the silence stop will
                    due = max(0.0, muted_at + silence - now) + bound
                    done.stops.append(StopRequest(now, f"{action.kind} (muted)", due))
                elif not lossy:  # the next STATUS says so
                    due = STATUS_INTERVAL_S + MARGIN_S + bound
                    done.stops.append(StopRequest(now, action.kind, due))
            case "clock_jump":
                clock.jump(float(action.value))  # the controller's clock only
                done.jumps.append(now)
            case "flood" if broker is not None:
                topic = publisher.topics.command("discomfort")
                with contextlib.suppress(OSError):
                    await asyncio.to_thread(blast, broker.settings, topic, b"3", FLOOD)
            case "broker_death" if broker is not None:
                await broker.die_for(device.real_seconds(action.value / 2 + 0.5))
            case _:
                outcome.executed[action.kind] -= 1  # an MQTT fault without a broker
                outcome.while_running[action.kind] -= running
    return done


def _unaccounted(
    record: SessionRecord, listener: Listener, publisher: Publisher, outbox_dir: Path
) -> list[str]:
    """Session events neither delivered, nor kept in the outbox, nor counted as dropped."""
    heard = {e["id"]: e for e in listener.events() if "id" in e}  # QoS 1 may repeat one
    kept_box = Outbox(outbox_dir)
    kept = []
    while (event := kept_box.peek()) is not None:
        kept.append(event)
        kept_box.pop()
    seen = [*heard.values(), *kept]
    reached: Counter[tuple[object, object]] = Counter((e.get("type"), e.get("t")) for e in seen)
    dropped = sum(int(e.get("count", 0)) for e in seen if e.get("type") == "events_dropped")
    dropped += publisher.outbox.dropped + kept_box.dropped  # not reported yet
    produced: Counter[tuple[object, object]] = Counter(
        (e.type, round(e.t, 3)) for e in record.events
    )
    missing = produced - reached
    lost = sum(missing.values())
    if lost > dropped:
        first = next(iter(missing))
        return [f"{lost} events lost, {dropped} counted as dropped; first lost: {first}"]
    return []
