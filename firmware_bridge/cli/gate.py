"""Before and after `massager run`: whose session, the screening gate, the plan, the record.

Before connecting: the person's screening (asked on a terminal, refused in one line without
one) and whether a session is allowed today. After connecting: the ceiling for this device
(calibration and the S12 plan) and the session's row in the store. After the session: the
rating of how the foot feels now, and the outcome. The built-in simulated person (`--sim`
without `--person`) skips the gate, and says so; a person on the simulator does not.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import logging
import shutil
import sys
import textwrap
from dataclasses import dataclass, replace
from typing import Any

from firmware_bridge.cli.person import (
    SIMULATED_PERSON,
    ask_questions,
    describe,
    plan_for,
)
from firmware_bridge.person import Plan, Screening, SessionFacts, status
from firmware_bridge.record import RatingSource, SessionRecord
from firmware_bridge.safety import SafetySettings
from firmware_bridge.store import Store, StoreError
from profiles.model import Profile

_LOGGER = logging.getLogger(__name__)
SIM_DEVICE = "simulator"  # calibrations made on the simulator are kept apart from real devices


class GateRefusal(Exception):  # noqa: N818 - a refusal, not an error: the person is told why
    """No session now; the message says why and what to do (one or two lines)."""


@dataclass
class PersonGate:
    """One run's person: their store and plan. `store` is None for the simulated person."""

    person: str
    demo: bool  # the built-in simulated person: no gate, no course
    store: Store | None
    before: int | None = None  # how the foot felt before the session (asked on a terminal)
    plan: Plan | None = None
    facts: SessionFacts | None = None

    def close(self) -> None:
        if self.store is not None:
            self.store.close()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _tty() -> bool:
    """A person at this terminal, in the foreground (a background job must never wait)."""
    from firmware_bridge.cli.keys import interactive

    try:
        fd = sys.stdin.fileno()
    except (AttributeError, OSError, ValueError):  # no stdin, or one without a descriptor
        return False
    return interactive(fd) and sys.stderr.isatty()


def open_gate(args: argparse.Namespace) -> PersonGate:
    """Before connecting: the person, their screening, and whether today allows a session.

    Raises GateRefusal (say it, exit 2) or StoreError (a one-line problem with the store).
    """
    explicit = getattr(args, "person", None)
    if args.sim and not explicit:
        _say("Demo: simulated person, no screening or course (--person NAME for yours).")
        return PersonGate(SIMULATED_PERSON, demo=True, store=None)
    from firmware_bridge.cli.person import person_of

    person = person_of(args)
    store = Store.open()
    try:
        _check(store, person, args)
    except BaseException:
        store.close()
        raise
    # Asked before connecting: nothing waits on the answer (no device, no event loop yet).
    before = _ask("How does your foot feel now, before the session? 0-10, Enter to skip: ")
    return PersonGate(person, demo=False, store=store, before=before)


def _check(store: Store, person: str, args: argparse.Namespace, *, ask: bool = True) -> None:
    """Raise GateRefusal unless `person` may have a session now (asking on a terminal)."""
    store.ensure_person(person)
    store.import_journal(person)  # a session a crash cut short is part of the history
    done = len(store.sessions(person))
    latest = store.latest_screening(person)
    screening = status(latest, done)
    if screening.needed:
        if not (ask and _tty()):
            raise GateRefusal(
                f"{person} has not answered the screening questions"
                + (" recently" if latest is not None else "")
                + ": run `massager setup` on a terminal, or `massager setup --answers FILE` "
                "or `massager setup --none-apply`"
            )
        latest = Screening(_now(), ask_questions(), "interactive", sessions_at=done)
        store.add_screening(person, latest)
        screening = status(latest, done)
    if screening.blocked:
        raise GateRefusal(describe(screening, person))
    plan = plan_for(store, person, device=SIM_DEVICE, cap=args.cap, now=_now())
    if not plan.allowed:
        raise GateRefusal(f"not now for {person}: {plan.why}")


def gate_for(person: str, cap: int) -> PersonGate:
    """A person's gate without questions (a fleet: no one at this terminal answers for them).
    Raises GateRefusal or StoreError, as `open_gate`."""
    store = Store.open()
    try:
        _check(store, person, argparse.Namespace(cap=cap), ask=False)
    except BaseException:
        store.close()
        raise
    return PersonGate(person, demo=False, store=store)


def settle(
    gate: PersonGate,
    args: argparse.Namespace,
    *,
    device: str,
    profile: Profile,
    settings: SafetySettings,
    session_id: str,
    journal_file: str | None,
) -> SafetySettings:
    """After connecting: this device's ceiling and length from the plan, and the store's row."""
    if gate.demo or gate.store is None:
        return settings
    plan = plan_for(gate.store, gate.person, device=device, cap=settings.cap, now=_now())
    if not plan.allowed:  # another session of this person started meanwhile (a second run)
        raise GateRefusal(f"not now for {gate.person}: {plan.why}")
    gate.plan = plan
    limit = settings.max_session_s
    if plan.duration_factor < 1:  # after a worse morning: about 20 % shorter (S12) than the
        # session would otherwise be (the profile, or the limit when that is shorter)
        limit = min(profile.duration_s, limit) * plan.duration_factor
    settled = replace(settings, personal_ceiling=plan.ceiling, max_session_s=limit)
    gate.facts = SessionFacts(
        id=session_id,
        started_at=_now(),
        profile=profile.name,
        device=device,
        ceiling=plan.ceiling,
        cap=settings.cap,
        planned_s=settled.session_limit_s,
        before=gate.before,
        simulated=False,
    )
    gate.store.begin_session(gate.person, gate.facts, journal_file)
    _say(
        f"{gate.person}: session {plan.done + 1} of the course ({plan.phase}); ceiling "
        f"{plan.ceiling:.0%} of the device, limit {settled.session_limit_s / 60:.1f} min. "
        f"{plan.why[:1].upper() + plan.why[1:]}."
    )
    return settled


async def finish(gate: PersonGate, record: SessionRecord) -> dict[str, Any]:
    """After the session: its outcome, samples and ratings in the person's store."""
    if gate.demo or gate.store is None or gate.facts is None:
        return {"person": gate.person}
    store, session_id = gate.store, gate.facts.id
    reason = record.stop_reason.value if record.stop_reason else "fault"

    def write() -> None:
        store.add_samples(session_id, record.samples)
        for t, nrs, source in _ratings(record):
            store.add_rating(session_id, t, nrs, source)
        store.finish_session(session_id, duration_s=record.duration_s, stop_reason=reason)

    try:
        await asyncio.to_thread(write)
    except StoreError as exc:  # the journal still has it: completed from there next time
        print(f"massager: warning: {exc}", file=sys.stderr)
    plan = gate.plan
    return {
        "person": gate.person,
        "ceiling": None if plan is None else round(plan.ceiling, 4),
        "course": None if plan is None else {"done": plan.done + 1, "planned": plan.planned},
        "before": gate.before,
    }


def ask_after(gate: PersonGate) -> None:
    """Once everything is closed: how the foot feels now (skippable), into the store."""
    if gate.demo or gate.store is None or gate.facts is None:
        return
    after = _ask("How does your foot feel now, after the session? 0-10, Enter to skip: ")
    if after is not None:
        try:
            gate.store.set_after(gate.facts.id, after)
        except StoreError as exc:
            print(f"massager: warning: {exc}", file=sys.stderr)
    _say("Tomorrow morning, tell how the foot feels: massager checkin N (0-10).")


def _ratings(record: SessionRecord) -> list[tuple[float, int, RatingSource]]:
    return [(t, nrs, record.rating_source(i)) for i, (t, nrs) in enumerate(record.ratings)]


def _say(text: str) -> None:
    """A line for the person on stderr, folded to fit the terminal (a live screen follows)."""
    width = min(shutil.get_terminal_size((80, 24)).columns, 100) - 2
    print(textwrap.fill(text, width=max(40, width)), file=sys.stderr, flush=True)


def _ask(prompt: str) -> int | None:
    """A 0-10 rating from the terminal; None when skipped or without a terminal."""
    if not _tty():
        return None
    with contextlib.suppress(EOFError, OSError):
        while True:
            print(prompt, end="", file=sys.stderr, flush=True)
            reply = sys.stdin.readline().strip()
            if not reply:
                return None
            if reply.isascii() and reply.isdigit() and 0 <= int(reply) <= 10:
                return int(reply)
            print("  a whole number 0-10, or Enter to skip", file=sys.stderr)
    return None
