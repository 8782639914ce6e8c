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


def plot_all(results: dict[str, Any], out: Path) -> list[Path]:
    """Every benchmark in `results` as out/NAME.png."""
    return [
        plot(name, b, out / f"{name}.png")
        for name, b in results["benchmarks"].items()
        if b["figures"]
    ]
