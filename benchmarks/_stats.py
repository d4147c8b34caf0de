"""Percentiles and summaries."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

PERCENTILES = (50.0, 90.0, 99.0, 99.9)


def percentile(sorted_values: Sequence[int], p: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        raise ValueError("no values")
    # p * n / 100 computed so that 99.9 * 1000 / 100 is 999, not 999.0000000000001
    rank = max(1, math.ceil(round(p * len(sorted_values) / 100, 9)))
    return float(sorted_values[rank - 1])


def summarize_latency(rounds: Sequence[Sequence[int]]) -> dict[str, float]:
    """Microseconds. p50 is the median of the rounds' own p50s (robust to drift between rounds);
    the tail percentiles and max come from all samples pooled."""
    pooled = sorted(v for r in rounds for v in r)
    out = {f"p{p:g}": percentile(pooled, p) / 1000 for p in PERCENTILES}
    out["p50"] = statistics.median(percentile(sorted(r), 50) for r in rounds if r) / 1000
    out["max"] = pooled[-1] / 1000
    out["samples"] = float(len(pooled))
    return out


def median_or_none(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None
