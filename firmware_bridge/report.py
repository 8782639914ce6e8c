"""Reports: a session or a course as a PNG (matplotlib, an optional extra), CSV or JSON.

The data comes from the person's store (samples, ratings, the plan) and, for a session's
events, from its journal file. matplotlib is imported only to draw, with the Agg backend: no
display is needed, and a missing matplotlib is one clear line (`ReportUnavailableError`).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from firmware_bridge.durable import json_object, read_start, replace_private
from firmware_bridge.errors import MassagerError
from firmware_bridge.person.facts import SessionFacts
from firmware_bridge.person.rules import Plan
from firmware_bridge.record import Sample
from profiles.model import ZONES  # the zone names profiles use, in device order

MAX_EVENTS_BYTES = 16 * 1024 * 1024  # a 30-minute journal is about 1 MB; read no more than this
ANNOTATED = {"stop", "limit", "link_lost", "fault", "paused", "resumed"}  # marked on the plot
SIZE_IN = (10.0, 5.6)  # inches at DPI: 1000 x 560 pixels, readable on a laptop screen
DPI = 100
SOURCE_MARKERS = {"person": "o", "remote": "s", "simulated": "^"}
SOURCE_COLOURS = {"person": "tab:red", "remote": "tab:purple", "simulated": "tab:brown"}


class ReportUnavailableError(MassagerError):
    """matplotlib is not installed: `pip install 'firmware-bridge[report]'`."""


@dataclass(frozen=True)
class SessionReport:
    """Everything a session's report shows."""

    facts: SessionFacts
    samples: Sequence[Sample]
    events: Sequence[dict[str, Any]] = field(default=())

    def rows(self) -> list[dict[str, Any]]:
        """One row per second: the CSV/JSON export."""
        out = []
        for s in self.samples:
            row: dict[str, Any] = {"t": s.elapsed_s, "segment": s.segment}
            row |= {
                f"commanded_{ZONES[i] if i < len(ZONES) else i}": z for i, z in enumerate(s.zones)
            }
            row |= {"intensity": s.intensity, "applied": s.applied, "nrs": s.nrs}
            row |= {"battery": s.battery, "temperature_c": s.temperature_c}
            out.append(row)
        return out

    def as_json(self) -> dict[str, Any]:
        f = self.facts
        return {
            "session": f.id,
            "profile": f.profile,
            "started_at": f.started_at.isoformat(),
            "ceiling": f.ceiling,
            "cap": f.cap,
            "stop_reason": f.stop_reason,
            "duration_s": f.duration_s,
            "ratings": [{"t": t, "nrs": n, "source": src} for t, n, src in f.ratings],
            "events": list(self.events),
            "samples": self.rows(),
        }


def read_events(path: Path) -> list[dict[str, Any]]:
    """The events of a journal file (bounded read; a missing or damaged file gives none)."""
    try:
        data, _ = read_start(path, MAX_EVENTS_BYTES)
    except OSError:
        return []
    events = []
    for raw in data.split(b"\n"):
        item = json_object(raw) if raw.strip() else None
        if item is not None and item.get("kind") == "event":
            events.append({k: v for k, v in item.items() if k != "kind"})
    return events


def to_csv(rows: Sequence[dict[str, Any]]) -> str:
    """Rows as CSV text with a header (the union of the rows' keys, in first-seen order)."""
    names: dict[str, None] = {}
    for row in rows:
        names |= dict.fromkeys(row)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(names), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _pyplot() -> Any:
    try:
        import matplotlib  # noqa: PLC0415 - optional, and slow to import: only when drawing

        matplotlib.use("Agg")  # files only: no display, no GUI toolkit
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError as exc:
        raise ReportUnavailableError(
            "reports need matplotlib: pip install 'firmware-bridge[report]'"
        ) from exc
    return plt


def draw_session(report: SessionReport, out: Path) -> None:
    """Commanded vs applied per zone, cap and ceiling, ratings by source, stops and limits."""
    plt = _pyplot()
    f = report.facts
    fig, ax = plt.subplots(figsize=SIZE_IN, dpi=DPI)
    try:
        t = [s.elapsed_s / 60 for s in report.samples]
        zones = max((len(s.zones) for s in report.samples), default=0)
        for i in range(zones):
            name = ZONES[i] if i < len(ZONES) else f"zone {i + 1}"
            ax.plot(
                t,
                [s.zones[i] if i < len(s.zones) else 0 for s in report.samples],
                lw=1.2,
                label=f"commanded: {name}",
            )
        ax.plot(t, [s.applied for s in report.samples], "k--", lw=1.5, label="applied (device)")
        ax.axhline(f.cap / 10, color="tab:red", lw=1, ls=":", label=f"cap {f.cap}")
        ax.axhline(f.ceiling, color="tab:purple", lw=1, ls="-.", label=f"ceiling {f.ceiling:.0%}")
        ax.set_xlabel("session time (min)")
        ax.set_ylabel("intensity (fraction of the device maximum)")
        ax.set_ylim(0, 1.05)
        rate = ax.twinx()
        rate.set_ylim(0, 10.5)
        rate.set_ylabel("discomfort rating (0-10)")
        for source, marker in SOURCE_MARKERS.items():
            points = [(tt / 60, n) for tt, n, src in f.ratings if src == source]
            if points:
                xs, ys = zip(*points, strict=True)
                rate.scatter(
                    xs,
                    ys,
                    marker=marker,
                    s=30,
                    zorder=3,
                    color=SOURCE_COLOURS[source],
                    label=f"rating: {source}",
                )
        for event in report.events:
            if event.get("type") in ANNOTATED and isinstance(event.get("t"), int | float):
                x = float(event["t"]) / 60
                ax.axvline(x, color="grey", lw=0.8)
                what = event.get("reason") or event.get("what") or event["type"]
                ax.annotate(str(what), (x, 1.0), rotation=90, fontsize=8, va="top", ha="right")
        handles = ax.get_legend_handles_labels()
        more = rate.get_legend_handles_labels()
        ax.legend(handles[0] + more[0], handles[1] + more[1], fontsize=7, loc="upper left")
        ax.set_title(
            f"{f.profile}, {f.started_at:%Y-%m-%d %H:%M} UTC: {f.stop_reason or 'interrupted'}"
        )
        _save(fig, out)
    finally:
        plt.close(fig)


def draw_course(person: str, plan: Plan, sessions: Sequence[SessionFacts], out: Path) -> None:
    """The ceiling session by session, with the ratings before, after and the next morning."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=SIZE_IN, dpi=DPI)
    try:
        days = [step.day for step in plan.steps]
        ax.step(
            days, [step.ceiling for step in plan.steps], where="post", lw=2, label="ceiling played"
        )
        if sessions:
            cap = sessions[-1].cap / 10
            ax.axhline(cap, color="tab:red", ls=":", lw=1, label=f"cap {sessions[-1].cap}")
        ax.set_ylim(0, 1.0)
        ax.set_ylabel("ceiling (fraction of the device maximum)")
        rate = ax.twinx()
        rate.set_ylim(0, 10.5)
        rate.set_ylabel("rating (0-10)")
        for what, style in (("before", "o"), ("morning", "s")):
            points = [(s.day, getattr(s, what)) for s in sessions if getattr(s, what) is not None]
            if points:
                xs, ys = zip(*points, strict=True)
                rate.plot(xs, ys, style, ms=5, label=f"rating {what}")
        missing = [s.day for s in sessions if s.morning is None]
        if missing:
            rate.plot(missing, [0.3] * len(missing), "x", color="grey", label="no check-in")
        handles = ax.get_legend_handles_labels()
        more = rate.get_legend_handles_labels()
        ax.legend(handles[0] + more[0], handles[1] + more[1], fontsize=8, loc="upper left")
        where = (
            f"{plan.done} of {plan.planned} sessions of the course"
            if plan.phase == "course"
            else f"course of {plan.planned} done, {plan.done} sessions in all: maintenance"
        )
        ax.set_title(f"{person}: {where}")
        fig.autofmt_xdate()
        _save(fig, out)
    finally:
        plt.close(fig)


def _save(fig: Any, out: Path) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    replace_private(out, buffer.getvalue())  # whole or not at all, user-only (health data)
