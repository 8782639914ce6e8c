"""One PNG per benchmark: every figure beside its floor (p50 bar, p99 and max marked).

matplotlib is the `report` extra and is imported only here, when a plot is drawn.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.report import number

DPI = 110  # readable on a laptop screen and in a pull request, ~100 KB per plot
ROW_IN = 0.55  # height per figure row (inches): two bars and their labels
FIGURE_COLOUR = "#1f77b4"
FLOOR_COLOUR = "#b0b0b0"


def plot(name: str, bench: dict[str, Any], path: Path) -> Path:
    """Horizontal bars, log scale: for each figure its floor (grey) and itself (blue), at p50,
    with p99 (|) and max (x) marked; a setting floor is drawn as a bar at its value."""
    import matplotlib as mpl  # noqa: PLC0415 - the `report` extra, only when plotting

    mpl.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    figures = bench["figures"]
    fig, ax = plt.subplots(figsize=(12, 1.2 + ROW_IN * 2 * len(figures)))
    labels: list[str] = []
    ticks: list[float] = []
    y = 0.0
    for f in reversed(figures):
        ratio = f["ratio"]
        note = "" if ratio is None else f"  (× {ratio['p50']:.2f} floor)"
        rows = [(f, FIGURE_COLOUR, f"{f['group']}: {f['label']}", note)]
        if f["floor"] is not None:
            kind = " (setting)" if f["floor"]["kind"] == "setting" else ""
            rows.insert(0, (f["floor"], FLOOR_COLOUR, f"floor: {f['floor']['label']}{kind}", ""))
        for d, colour, label, extra in rows:
            ax.barh(y, d["p50"], color=colour, height=0.8)
            ax.plot([d["p99"]], [y], marker="|", color="black", markersize=14)
            ax.plot([d["max"]], [y], marker="x", color="black", markersize=6)
            ax.annotate(
                f"p50 {number(d['p50'])}{extra}",
                (max(d["p50"], d["max"]), y),
                va="center",
                fontsize=8,
                xytext=(8, 0),
                textcoords="offset points",
            )
            labels.append(_short(label))
            ticks.append(y)
            y += 1
        y += 0.5  # a gap between one figure and the next
    ax.set_yticks(ticks, labels, fontsize=8)
    ax.set_xscale("log")
    drawn = [v for d in _all(figures) for v in (d["p50"], d["max"]) if v > 0]
    if drawn:  # a log axis shows positive values only
        ax.set_xlim(min(drawn) / 2, max(drawn) * 40)  # room on the right for the labels
    unit = figures[0]["unit"] if figures else ""
    ax.set_xlabel(f"{unit}, log scale: bar p50, | p99, x max")
    ax.set_title(f"{bench['title']} ({bench['mode']} run, {bench['date']})")
    ax.grid(axis="x", which="both", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def _all(figures: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every distribution drawn: the figures and their floors."""
    return [*figures, *(f["floor"] for f in figures if f["floor"] is not None)]


def _short(label: str, width: int = 72) -> str:
    return label if len(label) <= width else label[: width - 1] + "…"


def plot_curve(bench: dict[str, Any], path: Path) -> Path:
    """Fleet scale against the device count (log-log): controller CPU, CPU per device,
    stop-all p99 beside its floor, and the share of control ticks missed."""
    import matplotlib as mpl  # noqa: PLC0415 - the `report` extra, only when plotting

    mpl.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    curve = bench["extra"]["curve"]
    counts = [point["devices"] for point in curve]
    stops = {f["group"]: f for f in bench["figures"] if f["label"].startswith("stop-all")}
    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    panels = [
        (axes[0][0], "controller CPU, % of one core", [p["cpu_pct_of_one_core"] for p in curve]),
        (axes[0][1], "CPU per device, ms per second", [p["cpu_ms_per_device_s"] for p in curve]),
        (axes[1][1], "control ticks > 50 ms late, %", [p["missed_pct"] for p in curve]),
    ]
    for ax, title, values in panels:
        ax.plot(counts, values, marker="o", color=FIGURE_COLOUR)
        ax.set_title(title, fontsize=10)
    axes[0][0].axhline(200, color=FLOOR_COLOUR, linestyle="--", label="both cores")
    axes[0][0].legend(fontsize=8)
    ax = axes[1][0]
    shown = [(c, stops.get(f"{c} devices")) for c in counts]
    ax.plot([c for c, f in shown if f], [f["p99"] for c, f in shown if f], marker="o",
            color=FIGURE_COLOUR, label="stop-all → zero confirmed, p99")  # fmt: skip
    ax.plot([c for c, f in shown if f], [f["floor"]["p99"] for c, f in shown if f], marker="o",
            color=FLOOR_COLOUR, label="floor: bare Write Requests at once, p99")  # fmt: skip
    ax.axhline(50, color="black", linestyle=":", label="goal: 50 ms")
    ax.set_title("stop-all, ms", fontsize=10)
    ax.legend(fontsize=8)
    for row in axes:
        for ax in row:
            ax.set_xscale("log")
            ax.set_xlabel("devices", fontsize=9)
            ax.grid(alpha=0.3, which="both")
    axes[1][0].set_yscale("log")
    fig.suptitle(f"{bench['title']}: cost against devices ({bench['mode']} run, {bench['date']})")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def plot_all(results: dict[str, Any], out: Path) -> list[Path]:
    """Every benchmark in `results` as out/NAME.png (and the fleet's curve)."""
    paths = [
        plot(name, b, out / f"{name}.png")
        for name, b in results["benchmarks"].items()
        if b["figures"]
    ]
    fleet = results["benchmarks"].get("fleet_scale")
    if fleet and fleet["extra"].get("curve"):
        paths.append(plot_curve(fleet, out / "fleet_scale_curve.png"))
    return paths
