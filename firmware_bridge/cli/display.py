"""The terminal: a live one-line progress display, notices and the end-of-session summary."""

from __future__ import annotations

from typing import Any, TextIO

from firmware_bridge.record import Event, Sample, SessionRecord

NOTICE = """\
Comfort and relaxation only; this is not a medical device and makes no treatment claims.
Do not use it over wounds, inflammation, skin disease, varicose veins or thrombosis, in fever,
pregnancy, with a pacemaker or implant, with loss of sensation in the feet (diabetes,
neuropathy), or with cancer, unless a clinician has said it is fine for you. Intensity should
stay at mild discomfort at most, never pain: stop at any time (Ctrl-C, or the device button)."""

BAR_WIDTH = 12
_NOTABLE = {"link_lost", "reconnected", "fault", "nack", "button", "limit", "stop"}


def mmss(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60:02d}:{seconds % 60:02d}"


def bar(fraction: float, width: int = BAR_WIDTH) -> str:
    filled = round(max(0.0, min(1.0, fraction)) * width)
    return "█" * filled + "·" * (width - filled)


class ProgressLine:
    """Rewrites one terminal line per sample; notable events get a line of their own."""

    def __init__(self, stream: TextIO, profile: str) -> None:
        self.stream = stream
        self.profile = profile
        self._shown = False

    def sample(self, s: Sample) -> None:
        rating = "-" if s.nrs is None else str(s.nrs)
        battery = "?" if s.battery is None else f"{s.battery}%"
        line = (
            f"{self.profile} | {s.segment[:28]:28} {mmss(s.elapsed_s)} left {mmss(s.remaining_s)}"
            f" | {bar(s.intensity)} {s.intensity:4.0%} applied {s.applied:4.0%}"
            f" | battery {battery} | rating {rating}"
        )
        self.stream.write("\r\x1b[2K" + line)
        self.stream.flush()
        self._shown = True

    def event(self, event: Event) -> None:
        if event.type not in _NOTABLE:
            return
        detail = ", ".join(f"{k}={v}" for k, v in event.detail.items())
        self.stream.write(("\n" if self._shown else "") + f"  [{event.type}] {detail}\n")
        self.stream.flush()
        self._shown = False

    def close(self) -> None:
        if self._shown:
            self.stream.write("\n")
            self.stream.flush()


def human_summary(record: SessionRecord, extra: dict[str, Any]) -> str:
    reason = record.stop_reason.value if record.stop_reason else "unknown"
    lines = [
        f"Session {reason.replace('_', ' ')} after {mmss(record.duration_s)} "
        f"(profile {record.profile}).",
        f"Highest intensity sent: {record.max_intensity:.0%} of the device maximum "
        f"(cap {record.cap} = {record.cap / 10:.0%}).",
    ]
    if record.stop_confirmed:
        lines.append("The device confirmed zero output.")
    elif record.stop_confirmed is False:
        lines.append("The device did not confirm zero; its watchdog stops it within 1.5 s.")
    if record.ratings:
        lines.append("Ratings: " + " ".join(str(n) for _, n in record.ratings))
    if "device" in extra:
        lines.append(f"Device: {extra['device']['name']} (failsafe {extra['device']['failsafe']}).")
    return "\n".join(lines)
