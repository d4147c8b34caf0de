"""The queue and flood tables, and the queue's targets (issue 18), from typed summaries."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.table import Table

from ._cases import FLOOD, QUEUE_LATENCY, QUEUE_TO_LOOP, QUEUE_TO_THREAD
from ._queues import BOUNDED, queue_kinds
from ._scenarios import FloodSummary, QueueLatency, QueueThroughput, SizeFigures

AIOWAKE = "aiowake.Queue"
REF = "culsans"  # the ratio column's reference: the fastest bounded anchor of the table


def _loop(name: str) -> str:
    return name.split("/", 1)[0]


def _ratio(v: float | None, ref: float | None) -> str:
    return "—" if v is None or not ref else f"{v / ref:.2f}×"


def _us(v: float) -> str:
    return f"{v:.1f}" if v >= 100 else f"{v:.2f}"


def _mib(v: float | None) -> str:
    return "—" if v is None else f"{v / 2**20:.1f}"


def _rate(v: float | None) -> str:
    return "—" if v is None else f"{v / 1e6:.3f} M"


def _of(rows: Mapping[str, Any], cls: type[Any]) -> dict[str, Any]:
    return {k: v for k, v in rows.items() if isinstance(v, cls)}


def _size(row: QueueThroughput | None, bounded: bool) -> SizeFigures | None:
    if row is None or row.error:
        return None
    return row.bounded if bounded else row.unbounded


def throughput_table(title: str, rows: Mapping[str, Any]) -> Table:
    typed: dict[str, QueueThroughput] = _of(rows, QueueThroughput)
    t = Table(
        title=title,
        title_justify="left",
        header_style="bold",
        caption=(
            "items/s: from the start until the consumer took the last item (median of the "
            f"rounds); ÷ {REF}: the same loop's {REF} at the same size; peak RSS: how much the "
            "process's peak resident memory grew during the run. — : the queue has no maxsize "
            "(stock: asyncio.Queue fed by call_soon_threadsafe to the loop, queue.Queue to a "
            "thread; aiologic.SimpleQueue)."
        ),
        caption_justify="left",
    )
    t.add_column("case")
    for size in ("unbounded", f"maxsize {BOUNDED}"):
        t.add_column(f"{size} items/s", justify="right")
        t.add_column(f"÷ {REF}", justify="right")
        t.add_column("peak RSS MiB", justify="right")

    def rate(name: str, bounded: bool) -> float | None:
        figures = _size(typed.get(name), bounded)
        return None if figures is None else figures.items_per_s

    for name, r in sorted(typed.items(), key=lambda kv: -(rate(kv[0], False) or 0.0)):
        if r.error:
            t.add_row(name, f"[red]FAILED: {r.error}[/red]")
            continue
        cells = [name]
        for bounded in (False, True):
            figures = _size(r, bounded)
            ref = rate(f"{_loop(name)}/queue:{REF}", bounded)
            if figures is None:
                cells += ["—", "—", "—"]
            else:
                rss = figures.rss_growth
                cells += [_rate(figures.items_per_s), _ratio(figures.items_per_s, ref), _mib(rss)]
        t.add_row(*cells)
    return t


def latency_table(title: str, rows: Mapping[str, Any]) -> Table:
    typed: dict[str, QueueLatency] = _of(rows, QueueLatency)
    t = Table(
        title=title,
        title_justify="left",
        header_style="bold",
        caption=(
            "From just before a thread's put to the next line of the task awaiting get(); the "
            "producer sleeps between puts, as in the idle-producer latency table. The "
            "aiowake.Event rows are that table's Event case, measured in the same rounds: the "
            "ratio column's reference."
        ),
        caption_justify="left",
    )
    t.add_column("case")
    for col in ("p50", "p90", "p99", "p99.9", "max"):
        t.add_column(f"{col} µs", justify="right")
    t.add_column(f"p50 ÷ {REF}", justify="right")
    t.add_column("p50 ÷ aiowake.Event", justify="right")
    t.add_column("loop first", justify="right")

    def p50(name: str) -> float | None:
        r = typed.get(name)
        return None if r is None or r.error else r.p50

    for name, r in sorted(typed.items(), key=lambda kv: p50(kv[0]) or float("inf")):
        if r.error:
            t.add_row(name, f"[red]FAILED: {r.error}[/red]")
            continue
        loop = _loop(name)
        t.add_row(
            name,
            *(_us(v) for v in (r.p50, r.p90, r.p99, r.p99_9, r.max)),
            _ratio(r.p50, p50(f"{loop}/queue:{REF}")),
            _ratio(r.p50, p50(f"{loop}/aiowake.Event")),
            "—" if r.loop_first is None else f"{r.loop_first:.0%}",
        )
    return t


def flood_table(title: str, rows: Mapping[str, Any]) -> Table:
    typed: dict[str, FloodSummary] = _of(rows, FloodSummary)
    t = Table(
        title=title,
        title_justify="left",
        header_style="bold",
        caption=(
            "peak backlog: callbacks posted and not yet run, at the worst of the readings the "
            "producer takes every few hundred posts, from the mechanism's own queue where it can "
            "be read, else counted (posted − run); peak RSS: how much the process's peak "
            "resident memory grew; run while posting: the share of the posts the loop had run "
            "when the producer stopped; drain: from the producer's last post until a marker "
            "posted after it ran."
        ),
        caption_justify="left",
    )
    t.add_column("case")
    t.add_column("posted", justify="right")
    t.add_column("posts/s", justify="right")
    t.add_column("peak backlog", justify="right")
    t.add_column("read from", justify="left")
    t.add_column("peak RSS MiB", justify="right")
    t.add_column("run while posting", justify="right")
    t.add_column("drain s", justify="right")
    for name, r in sorted(typed.items()):
        if r.error:
            t.add_row(name, f"[red]FAILED: {r.error}[/red]")
            continue
        t.add_row(
            name,
            f"{r.posted / 1e6:.2f} M",
            f"{r.posts_per_s / 1e6:.2f} M",
            f"{r.peak_backlog:,.0f}",
            "its queue" if r.backlog_read else "posted − run",
            _mib(r.rss_growth),
            f"{r.ran_share:.0%}",
            f"{r.drain_s:.3f}",
        )
    return t


@dataclass(frozen=True)
class QueueTarget:
    what: str
    scenario: str
    #: Which size a throughput target is about; None for latency.
    bounded: bool | None
    ref: str  # a queue kind's name, or "aiowake.Event"
    limit: float
    at_most: bool = False

    def ref_case(self, loop: str) -> str:
        return f"{loop}/{self.ref}" if self.ref == "aiowake.Event" else f"{loop}/queue:{self.ref}"


QUEUE_TARGETS = (
    QueueTarget("thread → loop, unbounded", QUEUE_TO_LOOP, False, "janus", 5.0),
    QueueTarget("thread → loop, unbounded", QUEUE_TO_LOOP, False, "culsans", 5.0),
    QueueTarget("thread → loop, unbounded", QUEUE_TO_LOOP, False, "aiologic.SimpleQueue", 2.5),
    QueueTarget(f"thread → loop, maxsize {BOUNDED}", QUEUE_TO_LOOP, True, "culsans", 5.0),
    QueueTarget("loop → thread, unbounded", QUEUE_TO_THREAD, False, "culsans", 2.0),
    QueueTarget(f"loop → thread, maxsize {BOUNDED}", QUEUE_TO_THREAD, True, "culsans", 2.0),
    QueueTarget("put → get latency p50", QUEUE_LATENCY, None, "culsans", 0.5, at_most=True),
    QueueTarget("put → get latency p50", QUEUE_LATENCY, None, "aiowake.Event", 1.2, at_most=True),
)


def _figure(row: object, t: QueueTarget) -> float | None:
    if isinstance(row, QueueLatency):
        return None if row.error else row.p50
    if isinstance(row, QueueThroughput):
        figures = _size(row, bool(t.bounded))
        return None if figures is None else figures.items_per_s
    return None


def queue_targets_table(scenarios: Mapping[str, Mapping[str, Any]]) -> Table | None:
    """Each target of issue 18, checked on each loop of the run: ``aiowake.Queue`` on a loop
    against the reference on the same loop. None if the run has no queue scenario."""
    if not any(t.scenario in scenarios for t in QUEUE_TARGETS):
        return None
    queue_scenarios = (QUEUE_TO_LOOP, QUEUE_TO_THREAD, QUEUE_LATENCY)
    loops = sorted({_loop(n) for s in queue_scenarios for n in scenarios.get(s, {})})
    aiowake = next(k for k in queue_kinds() if k.name == AIOWAKE)
    t = Table(
        title=f"Queue targets (issue 18): {AIOWAKE} ÷ reference, one CPU",
        title_justify="left",
        caption=None if aiowake.open else f"{AIOWAKE} unavailable: {aiowake.unavailable}",
        caption_justify="left",
    )
    t.add_column("target")
    t.add_column("reference")
    t.add_column("wanted", justify="right")
    for loop in loops:
        t.add_column(loop, justify="right")
    for target in QUEUE_TARGETS:
        rows = scenarios.get(target.scenario, {})
        cells = []
        for loop in loops:
            a = _figure(rows.get(f"{loop}/queue:{AIOWAKE}"), target)
            b = _figure(rows.get(target.ref_case(loop)), target)
            if a is None or not b:
                cells.append("—")
                continue
            ratio = a / b
            met = ratio <= target.limit if target.at_most else ratio >= target.limit
            cells.append(f"{ratio:.2f}× " + ("[green]yes[/green]" if met else "[red]no[/red]"))
        wanted = f"{'≤' if target.at_most else '≥'} {target.limit:g}×"
        t.add_row(target.what, target.ref, wanted, *cells)
    return t


def print_queue_and_flood(
    console: Console, scenarios: Mapping[str, Mapping[str, Any]], cfg: Mapping[str, Any]
) -> None:
    """The one-CPU tables of the queue and flood scenarios that ran."""
    n, p = cfg["queue_n"], cfg["producers"]
    if QUEUE_TO_LOOP in scenarios:
        title = f"Queue throughput, {p} threads × {n:,} items → one task, one CPU"
        console.print(throughput_table(title, scenarios[QUEUE_TO_LOOP]))
    if QUEUE_TO_THREAD in scenarios:
        title = f"Queue throughput, one task → one thread, {p * n:,} items, one CPU"
        console.print(throughput_table(title, scenarios[QUEUE_TO_THREAD]))
    if QUEUE_LATENCY in scenarios:
        title = "Queue put → get latency, idle producer (a thread's put → the task's get), one CPU"
        console.print(latency_table(title, scenarios[QUEUE_LATENCY]))
    table = queue_targets_table(scenarios)
    if table is not None:
        console.print(table)
    if FLOOD in scenarios:
        title = f"Flood: one producer posting for {cfg['flood_s']:g} s, one CPU"
        console.print(flood_table(title, scenarios[FLOOD]))
