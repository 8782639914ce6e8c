"""The running part of `massager fleet`: devices, telemetry, people, signals and the summary."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import json
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

from firmware_bridge.cli.person import SIMULATED_PERSON
from firmware_bridge.cli.telemetry_setup import session_telemetry, shared_broker
from firmware_bridge.device import MassagerLink, StopReason
from firmware_bridge.fleet import Fleet, FleetEntry, FleetResult
from firmware_bridge.protocol import ScaledClock
from firmware_bridge.record import Event
from firmware_bridge.telemetry.mqtt import BrokerSettings

EXIT_OK, EXIT_FAULT = 0, 1
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_SHOWN_EVENTS = frozenset({"session_started", "stop", "fault", "link_lost", "refused"})


async def run_fleet(
    args: argparse.Namespace,
    spec: Any,
    entries: list[FleetEntry],
    broker: tuple[str, BrokerSettings | None],
) -> int:
    clock = ScaledClock(args.speed)
    loop = asyncio.get_running_loop()
    gates: dict[str, Any] = {}
    async with AsyncExitStack() as stack:
        kind, settings = await shared_broker(stack, *broker)

        @contextlib.asynccontextmanager
        async def open_device(entry: FleetEntry) -> AsyncIterator[tuple[Any, Any]]:
            from firmware_bridge import compose

            if entry.address is None:
                tier = entry.extra["tier"]
                async with compose.open_simulator(tier, clock=clock) as setup:
                    yield setup.transport, setup.massager
            else:
                async with compose.open_hardware(
                    address=entry.address, scan_timeout=args.scan_timeout
                ) as transport:
                    yield transport, None

        @contextlib.asynccontextmanager
        async def telemetry(
            entry: FleetEntry, link: MassagerLink, device: dict[str, Any]
        ) -> AsyncIterator[tuple[Any, Any, Any]]:
            own = copy.copy(args)  # this entry's cap in its telemetry, not the last entry's
            own.cap = entry.settings.cap
            await _gate(entry, gates)  # before its journal exists: that is not a past session
            async with session_telemetry(
                own,
                kind,
                settings,
                profile=entry.profile.name,
                device_id=entry.id,
                device=device,
                # no person: the built-in simulated person's (never a real person's history)
                header={"person": entry.person or SIMULATED_PERSON, "simulated": not entry.person}
                | ({"device_key": entry.address} if entry.address else {}),
            ) as hooks:
                await _settle(entry, hooks, gates)

                def on_event(event: Event) -> None:
                    hooks.event(event)
                    if event.type in _SHOWN_EVENTS:
                        _say(f"[{entry.id}] {_line(event)}")

                entry.extra["telemetry"] = hooks
                yield hooks.sample, on_event, hooks.attach

        async def finished(result: FleetResult) -> None:  # as each ends, not at the fleet's end
            await _finish(result, gates)

        fleet = Fleet(
            entries,
            open_device=open_device,
            clock=clock,
            telemetry=telemetry,
            on_record=finished,
        )
        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, fleet.stop_all)
        try:
            _say(
                f"Fleet of {len(entries)} massagers: Ctrl-C stops them all; "
                "`massager stop --all` does so remotely."
            )
            results = await fleet.run()
        finally:
            for sig in STOP_SIGNALS:
                loop.remove_signal_handler(sig)
    for gate in gates.values():
        gate.close()
    _report(args, results)
    return EXIT_OK if all(result.ok for result in results) else EXIT_FAULT


async def _gate(entry: FleetEntry, gates: dict[str, Any]) -> None:
    """The entry's person: screened and allowed today (no questions asked), or refused."""
    if entry.person is None:
        return
    from firmware_bridge.cli.gate import GateRefusal, gate_for
    from firmware_bridge.errors import MassagerError
    from firmware_bridge.store import StoreError

    try:
        gates[entry.id] = await asyncio.to_thread(gate_for, entry.person, entry.settings.cap)
    except (GateRefusal, StoreError) as exc:  # this person's session only: the fleet goes on
        raise MassagerError(f"refused: {exc}") from exc


async def _settle(entry: FleetEntry, hooks: Any, gates: dict[str, Any]) -> None:
    """The person's plan for this device: their ceiling and length, and the store's row."""
    gate = gates.get(entry.id)
    if gate is None:
        return
    from firmware_bridge.cli.gate import GateRefusal, settle
    from firmware_bridge.errors import MassagerError
    from firmware_bridge.store import StoreError

    try:
        journal = hooks.journal
        entry.settings = await asyncio.to_thread(
            settle,
            gate,
            argparse.Namespace(),
            device=entry.address or "simulator",
            profile=entry.profile,
            settings=entry.settings,
            session_id=hooks.session_id,
            journal_file=journal.path.name if journal is not None else None,
        )
    except (GateRefusal, StoreError) as exc:  # this person's session only: the fleet goes on
        raise MassagerError(f"refused: {exc}") from exc


async def _finish(result: FleetResult, gates: dict[str, Any]) -> None:
    from firmware_bridge.cli.gate import finish

    hooks = result.entry.extra.get("telemetry")
    if result.record is None or hooks is None:
        return
    extra = {"device": result.device | {"id": result.entry.id}}
    gate = gates.get(result.entry.id)
    if gate is not None:
        extra |= await finish(gate, result.record)
    hooks.finish(result.record, extra)
    await hooks.flushed()


def _line(event: Event) -> str:
    from firmware_bridge.cli.display import plain_line

    return plain_line(event)


def _say(text: str) -> None:
    with contextlib.suppress(OSError):
        print(text, file=sys.stderr, flush=True)


def _report(args: argparse.Namespace, results: list[FleetResult]) -> None:
    devices = []
    for result in results:
        record = result.record
        devices.append(
            {
                "id": result.entry.id,
                "profile": result.entry.profile.name,
                "person": result.entry.person,
                "stop_reason": record.stop_reason.value if record and record.stop_reason else None,
                "duration_s": round(record.duration_s, 3) if record else None,
                "max_intensity": round(record.max_intensity, 4) if record else None,
                "stop_confirmed": record.stop_confirmed if record else None,
                "problem": result.problem,
            }
            | ({"device": result.device} if result.device else {})
        )
    reasons: dict[str, int] = {}
    for device in devices:
        key = str(device["stop_reason"] or "not_played")
        reasons[key] = reasons.get(key, 0) + 1
    if args.json:
        print(json.dumps({"devices": devices, "stop_reasons": reasons}))
        return
    ok = sum(1 for result in results if result.ok)
    print(f"Fleet: {ok} of {len(results)} sessions ended well ({_counts(reasons)}).")
    for device in devices:
        if device["problem"] or device["stop_reason"] not in _GOOD:
            why = device["problem"] or str(device["stop_reason"]).replace("_", " ")
            print(f"  {device['id']}: {why}")


_GOOD = {reason.value for reason in StopReason} - {
    "link_lost",
    "fault",
    "low_battery",
    "over_temperature",
    "device_silent",
}


def _counts(reasons: dict[str, int]) -> str:
    return ", ".join(f"{count} {reason.replace('_', ' ')}" for reason, count in reasons.items())
