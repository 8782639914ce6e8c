"""`massager run PROFILE --address A --address B` (or `--sim --devices 2`): both feet at once.

One profile on several massagers in lockstep, one governor per device, one stop for all
(`firmware_bridge.group`). Each device has its own MQTT topics (`<id>` per device) and journal;
the lead device's journal is the person's record of the session (the others say `part_of` it).
No live screen: one line per event, prefixed with the device, and the keys still work.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from contextlib import AsyncExitStack
from dataclasses import dataclass, field, replace
from typing import Any

from firmware_bridge.cli.telemetry_setup import device_id_for, session_telemetry, shared_broker
from firmware_bridge.device import MassagerLink, StopReason
from firmware_bridge.group import SessionGroup
from firmware_bridge.protocol import ScaledClock
from firmware_bridge.record import Event, SessionRecord
from firmware_bridge.runner import Session
from firmware_bridge.safety import SafetySettings
from firmware_bridge.telemetry.bridge import SessionTelemetry
from firmware_bridge.telemetry.mqtt import BrokerSettings
from profiles.model import Profile

MAX_DEVICES = 8  # one person's massagers: both feet, a mat; a clinic uses `massager fleet`


@dataclass
class Member:
    """One massager of the session and what belongs to it."""

    label: str  # "1", "2", ... in the order given
    link: MassagerLink
    massager: Any  # the simulated massager, or None
    device: dict[str, Any]
    device_id: str
    key: str  # the person's calibrations are kept per device key
    telemetry: SessionTelemetry | None = None
    session: Session | None = None
    # What latched this device before the group existed (its button while the others were
    # connecting): the session must not start over it.
    stopped_early: list[StopReason] = field(default_factory=list)


async def run_devices(
    args: argparse.Namespace,
    *,
    profile: Profile,
    settings: SafetySettings,
    broker: tuple[str, BrokerSettings | None],
    clock: ScaledClock,
    stopper: Any,
) -> int:
    """Connect every device, play, report; the exit code (as `massager run`)."""
    from firmware_bridge.cli import run as single

    async with AsyncExitStack() as stack:
        members = [await connect_member(args, stack, clock, index) for index in range(_count(args))]
        kind, broker_settings = await shared_broker(stack, *broker)
        lead_id: str | None = None
        for member in members:
            header: dict[str, Any] = {"device_key": member.key}
            if lead_id is None:
                header |= {"person": args.gate.person, "simulated": args.gate.demo}
            else:
                header["part_of"] = lead_id
            member.telemetry = await stack.enter_async_context(
                session_telemetry(
                    args,
                    kind,
                    broker_settings,
                    profile=profile.name,
                    device_id=member.device_id,
                    device=member.device,
                    header=header,
                )
            )
            lead_id = lead_id or member.telemetry.session_id
        group = assemble(members, await _sessions(args, members, profile, settings))
        records = await _play(args, group, members, profile, stopper)
        from firmware_bridge.cli.gate import finish

        person = await finish(args.gate, records[0])
        for member, record in zip(members, records, strict=True):
            if member.telemetry is not None:
                member.telemetry.finish(
                    record, {"device": member.device | {"id": member.device_id}}
                )
                await member.telemetry.flushed()
        summary = _summary(group, members, records) | person
    from firmware_bridge.durable import writer

    await asyncio.to_thread(writer().flush)
    single.report_group(args, summary)
    return single.EXIT_OK if all(record.ok for record in records) else single.EXIT_FAULT


def _count(args: argparse.Namespace) -> int:
    return args.devices if args.sim else len(args.addresses)


async def connect_member(
    args: argparse.Namespace, stack: AsyncExitStack, clock: ScaledClock, index: int
) -> Member:
    """Connect device `index` of the run (`--sim`: a new simulated massager)."""
    from firmware_bridge import compose
    from firmware_bridge.cli.gate import SIM_DEVICE

    massager = None
    if args.sim:
        setup = await stack.enter_async_context(
            compose.open_simulator(args.sim_tier, clock=clock, description=args.sim_description)
        )
        transport, massager = setup.transport, setup.massager
    else:
        transport = await stack.enter_async_context(
            compose.open_hardware(
                address=args.addresses[index],
                hci=None,
                scan_timeout=args.scan_timeout,
                stack=await _hci_stack(args, stack),
            )
        )
    link = await stack.enter_async_context(MassagerLink(transport, clock=clock))
    member_early: list[StopReason] = []
    if link.stop_reason not in (None, StopReason.COMPLETED):  # during its own connect
        member_early.append(link.stop_reason)
    link.latch_listeners.append(member_early.append)
    address = str(getattr(getattr(transport, "device", None), "address", ""))
    caps = link.capabilities
    device = {
        "name": transport.name,
        "address": address,
        "failsafe": link.failsafe,
        "firmware": caps.firmware_version if caps else None,
        "description": getattr(getattr(transport, "description", None), "id", "protocol-v1"),
    }
    label = str(index + 1)
    device_id = f"{args.device_id}-{label}" if args.device_id else device_id_for(args, address)
    key = f"{SIM_DEVICE}-{label}" if args.sim else address
    return Member(label, link, massager, device, device_id, key, stopped_early=member_early)


async def _hci_stack(args: argparse.Namespace, stack: AsyncExitStack) -> Any:
    """One bumble central (`--hci`) or one set of ESPHome proxies (`--esphome`) for every
    device of the run, opened once; else None (the OS's own stack)."""
    if args.hci is None and not args.esphome:
        return None
    if getattr(args, "hci_stack", None) is None and args.esphome:
        from firmware_bridge.cli.scan import esphome_key
        from firmware_bridge.transport.esphome import open_proxies

        proxies = await stack.enter_async_context(open_proxies(args.esphome, esphome_key(args)))
        args.hci_stack = proxies.stack()
    if getattr(args, "hci_stack", None) is None:
        from firmware_bridge.compose import Stack
        from firmware_bridge.transport.bumble_backend import (
            BumbleBleakClient,
            BumbleBleakScanner,
            open_central,
        )

        central = await stack.enter_async_context(open_central(args.hci))
        kwargs = {"central": central}
        args.hci_stack = Stack(BumbleBleakScanner, BumbleBleakClient, kwargs, kwargs)
    return args.hci_stack


def assemble(members: list[Member], sessions: list[Session]) -> SessionGroup:
    """The group of `sessions`: remote commands on any device's topic reach every foot, and
    a stop that latched a device before the group existed stops the group before it starts."""
    group = SessionGroup(sessions)
    for member in members:
        member.link.latch_listeners.remove(member.stopped_early.append)
        if member.telemetry is not None:  # a stop, rating or cap on any topic: every foot
            member.telemetry.attach(group)
    early = next(
        (r for m in members for r in m.stopped_early if r is not StopReason.COMPLETED), None
    )
    if early is not None:  # a button pressed (or a fault) while the others connected
        group.request_stop(early)
    return group


async def _sessions(
    args: argparse.Namespace, members: list[Member], profile: Profile, settings: SafetySettings
) -> list[Session]:
    """One session per device: the lead settles the person's plan, each its own ceiling."""
    from firmware_bridge.cli.display import PLAIN_EVENTS, plain_line
    from firmware_bridge.cli.gate import settle
    from firmware_bridge.cli.run import _say

    lead = members[0]
    assert lead.telemetry is not None  # noqa: S101 - set just before, for the type checker
    journal = lead.telemetry.journal
    settled = await asyncio.to_thread(
        settle,
        args.gate,
        args,
        device=lead.key,
        profile=profile,
        settings=settings,
        session_id=lead.telemetry.session_id,
        journal_file=journal.path.name if journal is not None else None,
    )
    sessions = []
    for member in members:
        telemetry = member.telemetry
        assert telemetry is not None  # noqa: S101
        own = await asyncio.to_thread(_own_ceiling, args, member, settled)

        def on_event(
            event: Event, telemetry: SessionTelemetry = telemetry, label: str = member.label
        ) -> None:
            telemetry.event(event)
            if event.type in PLAIN_EVENTS:
                _say(f"[{label}] {plain_line(event)}")

        session = Session(
            member.link,
            profile,
            own,
            rating_source=member.massager.rating
            if member.massager is not None and args.gate.demo
            else None,  # each simulated foot rates its own massager
            on_sample=telemetry.sample,
            on_event=on_event,
        )
        member.session = session
        sessions.append(session)
    return sessions


def _own_ceiling(
    args: argparse.Namespace, member: Member, settled: SafetySettings
) -> SafetySettings:
    """The person's calibrated ceiling for this device (each foot may differ), same plan."""
    gate = args.gate
    if gate.demo or gate.store is None or gate.plan is None:
        return settled
    import datetime as dt

    from firmware_bridge.cli.person import plan_for

    now = dt.datetime.now(dt.UTC)
    plan = plan_for(gate.store, gate.person, device=member.key, cap=settled.cap, now=now)
    return replace(settled, personal_ceiling=plan.ceiling)


async def _play(
    args: argparse.Namespace,
    group: SessionGroup,
    members: list[Member],
    profile: Profile,
    stopper: Any,
) -> list[SessionRecord]:
    import sys

    from firmware_bridge.cli.keys import Keyboard, interactive, one_key_input
    from firmware_bridge.cli.run import _say

    keys = interactive(sys.stdin.fileno()) if sys.stdin is not None else False
    names = ", ".join(f"[{m.label}] {m.link.transport.name}" for m in members)
    hint = " Keys: space stops all, 0-9 or x (10) rate, - lowers the cap, p pauses." if keys else ""
    _say(
        f"Playing {profile.name} ({profile.duration_s / 60:.1f} min, cap {args.cap}) on "
        f"{len(members)} massagers together: {names}. One stop stops all.{hint} Ctrl-C stops."
    )
    stopper.session = group
    with contextlib.ExitStack() as terminal:
        if keys:
            terminal.enter_context(one_key_input(sys.stdin.fileno(), Keyboard(group, _say)))
        return await group.run()


def _summary(
    group: SessionGroup, members: list[Member], records: list[SessionRecord]
) -> dict[str, Any]:
    """The lead's summary, with the group's stop reason, the highest output of any device and
    one entry per device."""
    lead = records[0].summary()
    reason = group.stop_reason or records[0].stop_reason
    per_device = []
    for member, record in zip(members, records, strict=True):
        one = record.summary()
        per_device.append(
            member.device
            | {"id": member.device_id, "label": member.label}
            | {
                k: one[k]
                for k in (
                    "stop_reason",
                    "duration_s",
                    "max_intensity",
                    "stop_confirmed",
                    "stop_latency_ms",
                    "samples",
                )
            }
            | ({"sim": _sim(member.massager)} if member.massager is not None else {})
        )
    return lead | {
        "stop_reason": reason.value if reason else None,
        "max_intensity": max(record.max_intensity for record in records),
        "stop_confirmed": all(record.stop_confirmed for record in records),
        "devices": per_device,
    }


def _sim(massager: Any) -> dict[str, Any]:
    firmware = massager.firmware
    return {
        "final_levels": list(firmware.levels),
        "last_change": firmware.applied[-1].cause if firmware.applied else None,
    }
