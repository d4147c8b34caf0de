"""The comparison tables (rich) and the JSON document."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from ._cases import BURST, BUSY, FLOOR, LATENCY, ONE_WAKE, STOCK, UVLOOP, WORKING
from ._queue_report import print_queue_and_flood
from ._targets import TARGETS, auto_backend, check, host_spread, targets_table

PRODUCER_TITLES = {
    LATENCY: "idle producer (sleeps between wakes)",
    WORKING: "working producer (computes in C, GIL released, between wakes)",
}
PIN_TITLES = {
    "same": "producer and loop pinned to one CPU",
    "split": "producer and loop on two CPUs",
    "none": "threads not pinned",
}


def row_error(row: Any) -> str | None:
    """A result row's failure: a dict's ``"error"`` key, or a typed summary's ``error``."""
    return row.get("error") if isinstance(row, dict) else getattr(row, "error", None)


def _us(v: float | None) -> str:
    return "—" if v is None else (f"{v:.1f}" if v >= 100 else f"{v:.2f}")


def _ratio(v: float | None, ref: float | None) -> str:
    return "—" if v is None or not ref else f"{v / ref:.2f}×"


def _share(v: float | None) -> str:
    return "—" if v is None else f"{v:.0%}"


def _count(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}"


def latency_table(title: str, rows: dict[str, dict[str, Any]], busy: bool = False) -> Table:
    t = Table(title=title, title_justify="left", header_style="bold")
    t.add_column("case")
    for col in ("p50", "p90", "p99", "p99.9", "max"):
        t.add_column(f"{col} µs", justify="right")
    t.add_column("p50 ÷ floor", justify="right")
    t.add_column("p50 ÷ asyncio", justify="right")
    t.add_column("after drain p50 µs", justify="right")
    t.add_column("loop cs", justify="right")
    if not busy:
        t.add_column("writes", justify="right")
        t.add_column("loop first", justify="right")
    floor = rows.get(FLOOR, {}).get("p50")
    stock = rows.get(STOCK, {}).get("p50")
    for name, r in sorted(rows.items(), key=lambda kv: kv[1].get("p50", float("inf"))):
        if r.get("error"):
            t.add_row(name, f"[red]FAILED: {r['error']}[/red]")
            continue
        cells = [name] + [_us(r[k]) for k in ("p50", "p90", "p99", "p99.9", "max")]
        cells += [_ratio(r["p50"], floor), _ratio(r["p50"], stock), _us(r.get("p50_drained"))]
        cells.append(_count(r["switches"]))
        if not busy:
            cells += [_count(r["writes"]), _share(r.get("loop_first"))]
        t.add_row(*cells)
    return t


def burst_table(title: str, rows: dict[str, dict[str, Any]]) -> Table:
    t = Table(title=title, title_justify="left", header_style="bold")
    t.add_column("case")
    t.add_column("callbacks/s", justify="right")
    t.add_column("÷ asyncio cst", justify="right")
    t.add_column("÷ uvloop cst", justify="right")
    t.add_column("in GC", justify="right")
    t.add_column("GC off", justify="right")
    t.add_column("GC off ÷ uvloop cst", justify="right")
    t.add_column("writes", justify="right")
    stock = rows.get(STOCK, {}).get("callbacks_per_s")
    uv = rows.get(UVLOOP, {}).get("callbacks_per_s")
    uv_off = rows.get(UVLOOP, {}).get("callbacks_per_s_gc_off")
    for name, r in sorted(rows.items(), key=lambda kv: -kv[1].get("callbacks_per_s", 0.0)):
        if r.get("error"):
            t.add_row(name, f"[red]FAILED: {r['error']}[/red]")
            continue
        rate, rate_off = r["callbacks_per_s"], r["callbacks_per_s_gc_off"]
        t.add_row(
            name,
            f"{rate / 1e6:.2f} M",
            _ratio(rate, stock),
            _ratio(rate, uv),
            _share(r["gc_share"]),
            f"{rate_off / 1e6:.2f} M",
            _ratio(rate_off, uv_off),
            "—" if r["writes"] is None else f"{r['writes']:.2g}",
        )
    return t


def _explain_wake_tables(console: Console) -> None:
    console.print(
        "after drain: a Waker's reader is timed on its first line, where code that looks for "
        "work before draining starts (as stock asyncio runs call_soon_threadsafe callbacks and "
        "the Dispatcher its batch); this column is the same wakes after its drain(), where code "
        "that drains first starts (as uvloop does). "
        "writes: write(2) system calls per wake or callback, from /proc/self/io; — where the "
        "wakeup is a socket send(), which that count does not see (stock asyncio: one per "
        "call_soon_threadsafe). loop cs: context switches of the loop thread per wake. loop first: "
        "share of wakes whose loop callback started before the producer's wake call returned (the "
        "loop preempted the producer at its write: the fast mode on one CPU, which the kernel "
        "mostly picks when the producer was working and seldom when it had just woken up). "
        "Bursts: in GC: share of the burst spent in garbage collections (a post that queues a new "
        "handle keeps it tracked until it runs, and a long burst keeps many queued, so collections "
        "grow with the burst and weigh on mechanisms by the objects they queue; Dispatcher.post "
        "queues a bare callback); GC off: the same burst with the collector off, the mechanisms' "
        "own cost."
    )


def print_report(console: Console, doc: dict[str, Any]) -> None:
    m = doc["machine"]
    console.print(
        f"[bold]aiowake {m['aiowake']}[/bold] · {m['python']} · uvloop {m['uvloop']} · "
        f"rloop {m.get('rloop')} · {m['os']}\n{m['cpus']} CPUs: {m['cpu']}"
        + (" (virtual machine)" if m["virtual_machine"] else "")
        + f" · switch interval {m['switch_interval_ms']:g} ms"
    )
    queues = m.get("queues") or {}
    if queues:
        console.print(
            "queues: "
            + ", ".join(f"{k} {v}" for k, v in queues.items() if v is not None)
            + "".join(
                f"\n[yellow]{k}: unavailable ({why}), no case[/yellow]"
                for k, why in (m.get("unavailable") or {}).items()
            )
        )
    cfg = doc["config"]
    ran = {scenario for scenarios in doc["results"].values() for scenario in scenarios}
    console.print(
        f"{cfg['rounds']} interleaved rounds; latency {cfg['samples']} samples per case per round "
        f"(p50 = median of the rounds' p50s; tails pooled); burst {cfg['producers']} threads × "
        f"{cfg['burst_n']:,} callbacks; queues {cfg['queue_rounds']} rounds of "
        f"{cfg['producers']} threads × {cfg['queue_n']:,} items; flood "
        f"{cfg['flood_rounds']} × {cfg['flood_s']:g} s"
    )
    if m["virtual_machine"] and "split" in doc["results"]:
        console.print(
            "[yellow]On a VM a wake across CPUs waits for the hypervisor to wake the halted vCPU; "
            "that cost is the same for every mechanism and hides their differences. Compare "
            "mechanisms in the one-CPU tables.[/yellow]"
        )
    if ran & {LATENCY, WORKING, BUSY, BURST}:
        _explain_wake_tables(console)
    for pin, scenarios in doc["results"].items():
        where = PIN_TITLES[pin]
        for scenario in ONE_WAKE:
            if scenario in scenarios:
                title = f"Wakeup latency, {PRODUCER_TITLES[scenario]}, {where}"
                console.print(latency_table(title, scenarios[scenario]))
        if "busy" in scenarios:
            console.print(
                latency_table(
                    f"Latency with a busy producer ({cfg['busy_ms']:g} ms of computing after each "
                    f"wake), {where}",
                    scenarios["busy"],
                    busy=True,
                )
            )
        if "burst" in scenarios:
            console.print(burst_table(f"Burst throughput, {where}", scenarios["burst"]))
        print_queue_and_flood(console, scenarios, cfg)
    if any(t.scenario in doc["results"].get("same", {}) for t in TARGETS):
        console.print(targets_table(check(doc), auto_backend(doc)))
        spread = host_spread(doc)
        if spread is not None:
            console.print(
                "Host steadiness: the floor's per-round p50 (working producer) varied "
                f"±{spread:.0%} over the middle half of the rounds (a quiet host: about ±1%). A "
                "ratio within that of its limit can land on either side of it in another run."
            )


def write_json(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2, default=_plain) + "\n", encoding="utf-8")


def _plain(o: object) -> object:
    """JSON for the typed results: a dataclass as an object of its fields."""
    if dataclasses.is_dataclass(o) and not isinstance(o, type):
        return dataclasses.asdict(o)
    raise TypeError(f"{type(o).__name__} is not JSON serializable")
