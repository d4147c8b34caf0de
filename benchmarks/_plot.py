"""A PNG of the latency percentiles per case: a panel per producer and CPU placement, log scale."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from ._cases import ONE_WAKE
from ._report import PIN_TITLES, PRODUCER_TITLES

MARKERS = (("p50", "o", "p50"), ("p90", "s", "p90"), ("p99", "D", "p99"), ("p99.9", "^", "p99.9"))


def plot_latency(path: Path, doc: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    results = doc["results"]
    pins = [pin for pin, s in results.items() if any(k in s for k in ONE_WAKE)]
    scenarios = [k for k in ONE_WAKE if any(k in results[pin] for pin in pins)]
    if not pins:
        raise ValueError("no latency results to plot")
    n_cases = max(len(results[pin].get(k, {})) for pin in pins for k in scenarios)
    fig, axes = plt.subplots(
        len(scenarios),
        len(pins),
        figsize=(7.5 * len(pins), (0.32 * n_cases + 1.2) * len(scenarios) + 0.6),
        squeeze=False,
    )
    for (i, scenario), (j, pin) in itertools.product(enumerate(scenarios), enumerate(pins)):
        ax, rows = axes[i][j], results[pin].get(scenario, {})
        ax.set_title(f"{PRODUCER_TITLES[scenario]},\n{PIN_TITLES[pin]}", fontsize=10)
        if not rows:
            ax.set_axis_off()
            continue
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
        # Plain numbers, on 1-2-5 ticks only: matplotlib labels every minor tick of a narrow log
        # axis in scientific notation (2e1, 3e1, ...), and the labels overlap.
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(
            ticker.FuncFormatter(lambda v, _: f"{v:g}" if f"{v:g}"[0] in "25" else "")
        )
        ax.set_xlabel("one-way wakeup latency, µs (log scale)")
        ax.grid(axis="x", which="both", alpha=0.3)
        ax.legend(loc="upper right", fontsize=8)  # the fastest cases, top left, leave it free
    m = doc["machine"]
    fig.suptitle(f"aiowake wakeup latency · {m['python']} · {m['cpu']}", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.98))  # room for the suptitle
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
