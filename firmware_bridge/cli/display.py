"""The terminal's words: the notice, plain progress lines and the end-of-session summary."""

from __future__ import annotations

import textwrap
from typing import Any

from firmware_bridge.record import Event, RatingSource, SessionRecord

# Folded to fit an 80-column terminal: a line the terminal has to wrap breaks mid-word.
NOTICE = """\
Comfort and relaxation only; this is not a medical device and makes no
treatment claims. Do not use it over wounds, inflammation, skin disease,
varicose veins or thrombosis, in fever, pregnancy, with a pacemaker or
implant, with loss of sensation in the feet (diabetes, neuropathy), or with
cancer, unless a clinician has said it is fine for you. Intensity should stay
at mild discomfort at most, never pain: stop at any time (Ctrl-C, or the
device button)."""

BAR_WIDTH = 12
# Who gave a rating, in the person's words (the JSON summary keeps the short names).
SOURCE_WORDS: dict[RatingSource, str] = {
    "person": "you",
    "remote": "remote (MQTT)",
    "simulated": "simulated person",
}
# What last changed the simulated motors (its record's cause), in words.
_CAUSES = {
    "stop": "a STOP",
    "set": "a level write",
    "watchdog": "its watchdog",
    None: "nothing",
}
# Without a screen, one line each for these (a log, a service, `--json` on stderr).
PLAIN_EVENTS = frozenset(
    {
        "segment",
        "discomfort",
        "paused",
        "resumed",
        "cap_lowered",
        "limit",
        "button",
        "link_lost",
        "reconnected",
        "device_silent",
        "fault",
        "stop",
    }
)


def mmss(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60:02d}:{seconds % 60:02d}"


def bar(fraction: float, width: int = BAR_WIDTH) -> str:
    filled = round(max(0.0, min(1.0, fraction)) * width)
    return "█" * filled + "·" * (width - filled)


def event_detail(event: Event) -> str:
    """The few words after an event's type in a line of progress."""
    d = event.detail
    if event.type == "discomfort":
        who = SOURCE_WORDS.get(d.get("source", "person"), str(d.get("source")))
        return f"{d.get('nrs')} by {who} ({d.get('decision')})"
    if event.type == "cap_lowered":
        return f"to {d.get('cap')}"
    if event.type == "resumed":
        return f"after {mmss(float(d.get('paused_s', 0.0)))}"
    if event.type == "paused":
        return "output at zero"
    text = d.get("label") or d.get("reason")
    if text:
        return str(text)
    return ", ".join(f"{k}={v}" for k, v in d.items())


def plain_line(event: Event) -> str:
    return f"{mmss(event.t)} {event.type} {event_detail(event)}".rstrip()


def human_summary(record: SessionRecord, extra: dict[str, Any], width: int | None = None) -> str:
    """What happened, in sentences; folded to `width` columns when printed on a terminal."""
    reason = record.stop_reason.value if record.stop_reason else "unknown"
    lines = [
        f"Session {reason.replace('_', ' ')} after {mmss(record.duration_s)} "
        f"(profile {record.profile}).",
        f"Highest intensity sent: {record.max_intensity:.0%} of the device maximum "
        f"(cap {record.cap} = {record.cap / 10:.0%}).",
    ]
    if record.stop_confirmed:
        latency = record.stop_latency_s
        after = "" if latency is None else f" {latency * 1000:.1f} ms after the stop"
        lines.append(f"The device confirmed zero output{after}.")
    elif record.stop_confirmed is False:
        lines.append("The device did not confirm zero; its watchdog stops it within 1.5 s.")
    lines += _person_lines(record)
    if "device" in extra:
        lines.append(f"Device: {extra['device']['name']} (failsafe {extra['device']['failsafe']}).")
    if "sim" in extra:
        levels = " ".join(str(level) for level in extra["sim"]["final_levels"])
        change = extra["sim"]["last_change"]
        if change is None:  # nothing ever reached the motors
            lines.append(f"Simulated massager: motors at {levels} at the end, never driven.")
        else:
            cause = _CAUSES.get(change, change)
            lines.append(f"Simulated massager: motors at {levels} at the end, last set by {cause}.")
    if width is None:
        return "\n".join(lines)
    return "\n".join(textwrap.fill(line, max(20, width - 1)) for line in lines)


def _person_lines(record: SessionRecord) -> list[str]:
    """Ratings by who gave them, pauses and a lowered cap."""
    lines = []
    if record.ratings:
        by: dict[str, list[str]] = {}
        for index, (_, nrs) in enumerate(record.ratings):
            by.setdefault(SOURCE_WORDS[record.rating_source(index)], []).append(str(nrs))
        lines.append("Ratings: " + "; ".join(f"{who} {' '.join(n)}" for who, n in by.items()))
    pauses = [e for e in record.events if e.type in {"paused", "resumed"}]
    if pauses:
        held, since = 0.0, None
        for event in pauses:  # they alternate: paused, resumed, paused, ...
            if event.type == "paused":
                since = event.t
            elif since is not None:
                held, since = held + event.t - since, None
        if since is not None:  # still paused when the session ended
            held += max(0.0, record.duration_s - since)
        count = sum(1 for e in pauses if e.type == "paused")
        lines.append(f"Paused {count} time(s), {mmss(held)} in all (output at zero).")
    caps = [e for e in record.events if e.type == "cap_lowered"]
    if caps:
        lines.append(f"Cap lowered during the session to {caps[-1].detail.get('cap')}.")
    return lines
