"""Shared arithmetic for the benchmarks: median and tail percentiles over every sample."""

from __future__ import annotations

import statistics


def summary(samples_s: list[float]) -> dict[str, float]:
    """n, median, p90, p99 and max of samples given in seconds, reported in milliseconds."""
    ms = sorted(s * 1000 for s in samples_s)
    # One sample is every percentile of itself (quantiles() needs two).
    pct = statistics.quantiles(ms, n=100, method="inclusive") if len(ms) > 1 else ms * 99
    return {
        "n": len(ms),
        "median_ms": round(statistics.median(ms), 3),
        "p90_ms": round(pct[89], 3),
        "p99_ms": round(pct[98], 3),
        "max_ms": round(ms[-1], 3),
    }
