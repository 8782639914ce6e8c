"""The safety invariants, checked against the simulator's own record of what reached the motors.

Pure functions over `AppliedLevels` records (device clock) and what the campaign did when:
each returns a list of violations (empty when the rule held), worded so a failing example says
what went wrong and when.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from sim.firmware import AppliedLevels

EPS = 1e-9
# The rules as written, not imported from the code they check (a mutant there must not move
# the oracle with it): S2's one perceptual step of 2.5 dB per 3 s, from 5 % in the first 3 s.
RISE_PERIOD_S = 3.0
STEP_FACTOR = 10 ** (2.5 / 20)
RISE_FLOOR = 0.05
JUMP_ALLOWANCE_S = 0.5  # a clock jump looks like a pause to the governor, which counts any
# gap as at most 0.5 s of rise (docs/safety.md, S2): the envelope may run that much ahead


def rise_bound(elapsed_s: float) -> float:
    """The highest fraction of the device maximum S2 allows `elapsed_s` after a start from zero.

    The governor's envelope: linear to RISE_FLOOR over one rise period, then one 2.5 dB step
    per rise period. Pauses only slow it (a gap counts as at most 0.5 s), so this bounds it.
    """
    if elapsed_s <= 0:
        return 0.0
    if elapsed_s <= RISE_PERIOD_S:
        return RISE_FLOOR * elapsed_s / RISE_PERIOD_S
    steps = (elapsed_s - RISE_PERIOD_S) / RISE_PERIOD_S
    return min(1.0, RISE_FLOOR * math.pow(STEP_FACTOR, steps))


def allowed_level(fraction: float, max_level: int) -> int:
    """Levels round down (S1): the highest level a fraction permits."""
    return math.floor(fraction * max_level + EPS)


@dataclass(frozen=True)
class CapChange:
    """The cap was lowered to `cap` at device time `t`."""

    t: float
    cap: int


def cap_violations(
    applied: Sequence[AppliedLevels],
    start_cap: int,
    lowered: Sequence[CapChange],
    max_level: int,
    *,
    settle_s: float,
    device_limit: float = 1.0,
) -> list[str]:
    """S1/S6: no record above the cap in force (a lowered one from `settle_s` after it)."""
    problems = []
    for record in applied:
        cap = min([start_cap, *(c.cap for c in lowered if c.t + settle_s <= record.t)])
        limit = allowed_level(min(cap / 10, device_limit), max_level)
        if max(record.levels) > limit:
            problems.append(
                f"t={record.t:.3f}: levels {record.levels} above cap {cap} (at most {limit})"
            )
    return problems


def rise_violations(
    applied: Sequence[AppliedLevels],
    started_at: float,
    max_level: int,
    jumps: Sequence[float] = (),
) -> list[str]:
    """S2: nothing above what the envelope could have reached since the session started
    (plus JUMP_ALLOWANCE_S for each controller clock jump before it, at device times `jumps`)."""
    problems = []
    for record in applied:
        if not any(record.levels):
            continue
        if record.t < started_at:
            problems.append(f"t={record.t:.3f}: levels {record.levels} before the start")
            continue
        allowance = JUMP_ALLOWANCE_S * sum(1 for jump in jumps if jump <= record.t)
        limit = allowed_level(rise_bound(record.t - started_at + allowance), max_level)
        if max(record.levels) > limit:
            problems.append(
                f"t={record.t:.3f}: levels {record.levels} {record.t - started_at:.2f} s after "
                f"the start; S2 allows at most {limit}"
            )
    return problems


def level_at(applied: Sequence[AppliedLevels], t: float) -> tuple[int, ...] | None:
    """The levels on the motors at device time `t` (None before the first record)."""
    current = None
    for record in applied:
        if record.t > t:
            break
        current = record.levels
    return current


@dataclass(frozen=True)
class StopRequest:
    """A stop from some interface at device time `t`; `bound_s` is how soon zero must follow."""

    t: float
    source: str
    bound_s: float


def stop_violations(applied: Sequence[AppliedLevels], stops: Sequence[StopRequest]) -> list[str]:
    """S3/S4/S5: each stop reaches zero within its bound, and nothing non-zero follows it."""
    problems = []
    for stop in stops:
        at = level_at(applied, stop.t + stop.bound_s)
        if at is not None and any(at):
            problems.append(
                f"{stop.source} stop at t={stop.t:.3f}: motors still at {at} "
                f"{stop.bound_s:.2f} s later"
            )
        late = [r for r in applied if r.t > stop.t + stop.bound_s and any(r.levels)]
        if late:
            problems.append(
                f"{stop.source} stop at t={stop.t:.3f}: output {late[0].levels} again at "
                f"t={late[0].t:.3f} without a new start"
            )
    return problems
