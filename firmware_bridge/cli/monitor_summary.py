"""The fleet summary of `massager monitor`: counts first, then the devices that need a look.

A table of 1,000 devices does not fit a terminal; a summary does. It says how many devices are
in each state, why the stopped ones stopped, the spread of commanded intensity, and then lists
(as table rows, as many as fit) the devices that need attention: offline, link lost, faulted,
stale, low battery, unreadable payloads, or a rating of 6 or more. Pure: tests need no broker.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable

from firmware_bridge.cli.monitor import ACTIVE, BAD, DeviceView

LOW_BATTERY_PCT = 15  # worth a look before the device's own 5 % stop
HIGH_RATING = 6  # S6: a rating that dropped output; someone may want to check on them
TROUBLE_STATES = frozenset({"link_lost", "fault"})
TROUBLE_REASONS = frozenset(
    {"link_lost", "fault", "low_battery", "over_temperature", "device_silent"}
)


def needs_attention(view: DeviceView) -> str | None:
    """Why this device needs a look, in a few words; None when it does not."""
    state = view.state.state if view.state else None
    sample = view.telemetry
    if view.bad:
        return "unreadable " + ", ".join(sorted(view.bad))
    if view.availability == "offline" and state in ACTIVE:
        return "offline while running"
    if state in TROUBLE_STATES:
        return state
    if view.stop_reason in TROUBLE_REASONS:
        return f"stopped: {view.stop_reason}"
    if state in ACTIVE and sample is not None:
        if sample.battery is not None and sample.battery < LOW_BATTERY_PCT:
            return f"battery {sample.battery}%"
        if sample.stale:
            return "stale telemetry"
    if view.last_rating is not None and view.last_rating >= HIGH_RATING and state in ACTIVE:
        return f"rated {view.last_rating}"
    return None


def render_summary(
    views: Iterable[DeviceView], *, rows: int = 24, rate: float | None = None
) -> list[str]:
    """At most `rows` lines: the fleet's counts, then the devices that need attention."""
    views = list(views)
    if not views:
        return ["no massagers seen yet"]
    states = Counter(
        BAD if "state" in v.bad else (v.state.state if v.state else "unknown") for v in views
    )
    online = sum(1 for v in views if v.availability == "online")
    lines = [
        f"{len(views)} devices, {online} online: "
        + ", ".join(f"{n} {state}" for state, n in states.most_common()),
    ]
    reasons = Counter(v.stop_reason for v in views if v.stop_reason)
    if reasons:
        lines.append("stop reasons: " + ", ".join(f"{n} {why}" for why, n in reasons.most_common()))
    intensities = [
        v.telemetry.intensity
        for v in views
        if v.telemetry is not None and v.state is not None and v.state.state in ACTIVE
    ]
    if intensities:
        lines.append(
            f"intensity of the {len(intensities)} playing: median "
            f"{statistics.median(intensities):.0%}, highest {max(intensities):.0%}"
            + ("" if rate is None else f"; {rate:,.0f} messages/s")
        )
    flagged = [(v, why) for v in views if (why := needs_attention(v)) is not None]
    if not flagged:
        lines.append("nothing needs attention")
        return lines[:rows]
    lines.append(f"needs attention ({len(flagged)}):")
    room = rows - len(lines) - 1  # the rows' header takes one line
    shown = sorted(flagged, key=lambda pair: pair[0].device_id)[: max(0, room)]
    if len(flagged) > len(shown) and shown:
        shown = shown[:-1]  # its line says how many more there are
    table = [("DEVICE", "LINK", "STATE", "WHY", "CMD")]
    table += [_row(view, why) for view, why in shown]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines += [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in table
    ]
    if len(flagged) > len(shown):
        lines.append(f"… and {len(flagged) - len(shown)} more (--device-id ID shows one)")
    return lines[:rows]


def _row(view: DeviceView, why: str) -> tuple[str, str, str, str, str]:
    """A short row (fits 80 columns): the full table has `massager monitor --device-id ID`."""
    state = BAD if "state" in view.bad else (view.state.state if view.state else "?")
    sample = view.telemetry
    command = "-" if sample is None or "telemetry" in view.bad else f"{sample.intensity:.0%}"
    return view.device_id, view.availability or "?", state, why, command
