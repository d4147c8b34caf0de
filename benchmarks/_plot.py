"""A PNG of the latency percentiles per case: one panel per CPU placement, log scale."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ._report import PIN_TITLES

MARKERS = (("p50", "o", "p50"), ("p90", "s", "p90"), ("p99", "D", "p99"), ("p99.9", "^", "p99.9"))


def plot_latency(path: Path, doc: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(pin, s["latency"]) for pin, s in doc["results"].items() if "latency" in s]
    if not panels:
        raise ValueError("no latency results to plot")
    n_cases = max(len(rows) for _, rows in panels)
    fig, axes = plt.subplots(
        1, len(panels), figsize=(7.5 * len(panels), 0.32 * n_cases + 1.8), squeeze=False
    )
    for ax, (pin, rows) in zip(axes[0], panels, strict=True):
        ok = {k: v for k, v in rows.items() if not v.get("error")}
        names = sorted(ok, key=lambda k: ok[k]["p50"], reverse=True)
        ys = range(len(names))
        for y, name in zip(ys, names, strict=True):
            r = ok[name]
            ax.hlines(y, r["p50"], r["p99.9"], color="0.75", linewidth=2, zorder=1)
        for key, marker, label in MARKERS:
            ax.scatter([ok[n][key] for n in names], list(ys), marker=marker, label=label, zorder=2)
        ax.set_yticks(list(ys), names, fontsize=8)
        ax.set_xscale("log")
        ax.set_xlabel("one-way wakeup latency, µs (log scale)")
        ax.set_title(PIN_TITLES[pin], fontsize=10)
        ax.grid(axis="x", which="both", alpha=0.3)
        ax.legend(loc="upper right", fontsize=8)  # the fastest cases, top left, leave it free
    m = doc["machine"]
    fig.suptitle(f"aiowake wakeup latency · {m['python']} · {m['cpu']}", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
