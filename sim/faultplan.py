"""A `FaultPlan` from a TOML file (`massager sim serve --fault-plan FILE.toml`).

The keys are `FaultPlan`'s field names; every one is optional:

    drop_notify = 0.1         # probability 0-1 that a notification never arrives
    garble_notify = 0.0       # probability 0-1 that one byte of a notification is corrupted
    delay_notify_s = 0.05     # extra latency on every notification, s
    slow_write_s = 0.0        # the device takes this long to accept each write, s
    disconnect_at_s = 30      # the device drops the link at this device time, s
    reboot_at_s = 60          # the device reboots at this device time, s
    mute_at_s = 45            # from this device time on nothing is notified, s
    no_watchdog = false       # firmware without a dead-man watchdog
    nack_types = ["SET_TIMER"]  # commands refused with BUSY (frame type names)
    seed = 0                  # random seed of the probabilistic faults
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from pathlib import Path

from firmware_bridge.protocol import FrameType
from sim.firmware import FaultPlan

PROBABILITIES = ("drop_notify", "garble_notify")
DURATIONS = ("delay_notify_s", "slow_write_s")
MOMENTS = ("disconnect_at_s", "reboot_at_s", "mute_at_s")


class FaultPlanError(ValueError):
    """A fault-plan file that cannot be used: one line naming the file and the field."""


def load_fault_plan(path: str | Path) -> FaultPlan:
    """Read `path`; raises FaultPlanError (one line: file, field, what is wrong)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise FaultPlanError(f"{path}: cannot read the fault plan: {reason}") from exc
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise FaultPlanError(f"{path}: not valid TOML: {exc}") from exc
    return plan_from_table(table, where=str(path))


def plan_from_table(table: dict[str, object], *, where: str) -> FaultPlan:
    """A `FaultPlan` from parsed TOML; `where` names the file in error messages."""
    known = {f.name for f in dataclasses.fields(FaultPlan)}
    values: dict[str, object] = {}
    for key, value in table.items():
        if key not in known:
            raise FaultPlanError(
                f"{where}: {key}: unknown field (known: {', '.join(sorted(known))})"
            )
        values[key] = _checked(key, value, where)
    return FaultPlan(**values)  # type: ignore[arg-type]  # each value checked above


def _checked(key: str, value: object, where: str) -> object:
    if key in PROBABILITIES:
        number = _number(key, value, where)
        if not 0.0 <= number <= 1.0:
            raise FaultPlanError(f"{where}: {key}: a probability from 0 to 1, got {value!r}")
        return number
    if key in DURATIONS or key in MOMENTS:
        number = _number(key, value, where)
        if number < 0:
            raise FaultPlanError(f"{where}: {key}: seconds ≥ 0, got {value!r}")
        return number
    if key == "no_watchdog":
        if not isinstance(value, bool):
            raise FaultPlanError(f"{where}: {key}: true or false, got {value!r}")
        return value
    if key == "seed":
        if isinstance(value, bool) or not isinstance(value, int):
            raise FaultPlanError(f"{where}: {key}: an integer, got {value!r}")
        return value
    if key == "nack_types":
        return _frame_types(key, value, where)
    raise FaultPlanError(f"{where}: {key}: cannot be set from a file")  # a future field


def _number(key: str, value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise FaultPlanError(f"{where}: {key}: a number, got {value!r}")
    return float(value)


def _frame_types(key: str, value: object, where: str) -> frozenset[FrameType]:
    names = {member.name for member in FrameType}
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise FaultPlanError(f"{where}: {key}: a list of frame type names, got {value!r}")
    unknown = [item for item in value if item.upper() not in names]
    if unknown:
        raise FaultPlanError(
            f"{where}: {key}: unknown frame type {unknown[0]!r} (known: {', '.join(sorted(names))})"
        )
    return frozenset(FrameType[item.upper()] for item in value)


__all__ = ["FaultPlanError", "load_fault_plan", "plan_from_table"]
