"""``python -m benchmarks``: run the suite, print the comparison, write JSON and a plot."""

from __future__ import annotations

import argparse
import fnmatch
import random
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ._cases import (
    BURST,
    BUSY,
    FLOOD,
    ONE_CPU,
    QUEUE_THROUGHPUT,
    SCENARIOS,
    WORKING,
    Case,
    all_cases,
)
from ._harness import (
    BurstRun,
    LatencyRun,
    Pin,
    pin_plan,
    run_burst,
    run_latency,
    sleep_gap,
    work_gap,
)
from ._machine import describe
from ._report import print_report, row_error, write_json
from ._scenarios import Run, Settings, measure, summarize
from ._stats import median_or_none, summarize_latency

QUICK = {
    "rounds": 5,
    "samples": 300,
    "busy_samples": 6,
    "burst_n": 20_000,
    "queue_n": 2_000,
    "queue_rounds": 3,
    "flood_s": 1.0,
    "flood_rounds": 1,
}
FULL = {
    "rounds": 15,
    "samples": 1000,
    "busy_samples": 30,
    "burst_n": 50_000,
    "queue_n": 20_000,
    "queue_rounds": 5,
    "flood_s": 5.0,
    "flood_rounds": 2,
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=(
            "Wakeup latency, burst throughput, thread <-> loop queues and floods: aiowake vs "
            "stock asyncio, uvloop and rloop, and the queue libraries."
        ),
    )
    p.add_argument("--full", action="store_true", help="the published numbers (a few minutes)")
    p.add_argument("--cases", help="comma-separated glob patterns of case names, e.g. 'uvloop/*'")
    p.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help=f"comma-separated, of {', '.join(SCENARIOS)} (default: all)",
    )
    p.add_argument("--pin", default="same,split", help="comma-separated: same, split, none")
    p.add_argument("--rounds", type=int, help="interleaved rounds (quick 5, full 15)")
    p.add_argument("--samples", type=int, help="latency samples per case per round")
    p.add_argument("--busy-samples", type=int, help="busy-producer samples per case per round")
    p.add_argument("--busy-ms", type=float, help="producer's computing after each wake, ms")
    p.add_argument("--burst-n", type=int, help="callbacks per producer thread in a burst")
    p.add_argument("--producers", type=int, default=4, help="producer threads in a burst")
    p.add_argument("--queue-n", type=int, help="items per producer thread in a queue run")
    p.add_argument("--queue-rounds", type=int, help="rounds of the queue throughput scenarios")
    p.add_argument("--flood-s", type=float, help="seconds the flood's producer posts")
    p.add_argument("--flood-rounds", type=int, help="rounds of the flood scenario")
    p.add_argument("--warmup", type=int, default=50, help="discarded samples per run")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds before a case fails")
    p.add_argument("--seed", type=int, default=None, help="seed for the round shuffles")
    p.add_argument("--json", type=Path, help="write all results here")
    p.add_argument("--plot", type=Path, help="write a PNG of the latency percentiles here")
    p.add_argument("--list", action="store_true", help="list the cases and exit")
    args = p.parse_args(argv)
    preset = FULL if args.full else QUICK
    for key, value in preset.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.busy_ms is None:
        args.busy_ms = 2 * sys.getswitchinterval() * 1000  # comfortably past one switch interval
    for name in (
        "rounds",
        "samples",
        "busy_samples",
        "burst_n",
        "producers",
        "queue_n",
        "queue_rounds",
        "flood_rounds",
    ):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.warmup < 0 or args.timeout <= 0 or args.busy_ms <= 0 or args.flood_s <= 0:
        p.error("--warmup must be >= 0, --timeout, --busy-ms and --flood-s > 0")
    args.scenarios = _split(args.scenarios, SCENARIOS, "--scenarios", p)
    args.pin = _split(args.pin, ("same", "split", "none"), "--pin", p)
    return args


def _split(value: str, allowed: tuple[str, ...], opt: str, p: argparse.ArgumentParser) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    bad = [v for v in items if v not in allowed]
    if bad or not items:
        p.error(f"{opt} takes a comma-separated list of {', '.join(allowed)}; got {value!r}")
    return items


def select_cases(patterns: str | None) -> list[Case]:
    cases = all_cases()
    if not patterns:
        return cases
    pats = [x.strip() for x in patterns.split(",") if x.strip()]
    chosen = [c for c in cases if any(fnmatch.fnmatchcase(c.name, pat) for pat in pats)]
    if not chosen:
        raise SystemExit(f"no case matches {patterns!r}; see --list")
    return chosen


def run_suite(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    cases = select_cases(args.cases)
    rng = random.Random(args.seed)
    plans: dict[str, Pin] = {}
    for mode in args.pin:
        plan = pin_plan(mode)
        if plan is None:
            console.print(f"[yellow]--pin {mode}: not possible on this machine, skipped[/yellow]")
        else:
            plans[mode] = plan
    # The queue and flood scenarios run with both threads on one CPU only (without pinning where
    # that is all the machine can do): see benchmarks/README.md.
    one_cpu = next((m for m in ("same", "none") if m in plans), None)
    if one_cpu is None and set(args.scenarios) & set(ONE_CPU):
        console.print(
            "[yellow]queue and flood scenarios need --pin same (or none): skipped[/yellow]"
        )
    work = [
        (mode, scenario, [c for c in cases if scenario in c.scenarios])
        for mode in plans
        for scenario in args.scenarios
        if scenario not in ONE_CPU or mode == one_cpu
    ]
    work = [w for w in work if w[2]]
    total = sum(len(cs) * _rounds(args, scenario) for _, scenario, cs in work)
    # Rows: a dict per case for the first four scenarios, a dataclass for the others.
    results: dict[str, dict[str, dict[str, Any]]] = {}
    busy_ns = int(args.busy_ms * 1e6)
    settings = Settings(
        args.producers, args.queue_n, args.samples, args.warmup, args.flood_s, args.timeout
    )
    # No auto-refresh: a refresh thread would take the GIL in the middle of measurements.
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        auto_refresh=False,
        transient=True,
    ) as progress:
        task = progress.add_task("measuring", total=total)
        for mode, scenario, scase in work:
            lat: dict[str, list[LatencyRun]] = defaultdict(list)
            bursts: dict[str, list[BurstRun]] = defaultdict(list)
            bursts_gc_off: dict[str, list[BurstRun]] = defaultdict(list)
            other: dict[str, list[Run]] = defaultdict(list)
            rounds = _rounds(args, scenario)
            for r in range(rounds):
                order = list(scase)
                rng.shuffle(order)
                for case in order:
                    desc = f"{mode} · {scenario} · round {r + 1}/{rounds} · {case.name}"
                    progress.update(task, description=desc)
                    progress.refresh()
                    if scenario in ONE_CPU:
                        other[case.name].append(measure(scenario, case, plans[mode], settings))
                    elif scenario == BURST:
                        for gc_off, runs in ((False, bursts), (True, bursts_gc_off)):
                            runs[case.name].append(
                                run_burst(
                                    case.make,
                                    args.producers,
                                    args.burst_n,
                                    plans[mode],
                                    args.timeout,
                                    gc_off,
                                )
                            )
                    else:
                        busy = scenario == BUSY
                        lat[case.name].append(
                            run_latency(
                                case.make,
                                args.busy_samples if busy else args.samples,
                                2 if busy else args.warmup,
                                plans[mode],
                                args.timeout,
                                busy_ns if busy else 0,
                                work_gap if scenario == WORKING else sleep_gap,
                            )
                        )
                    progress.advance(task)
            counted = {c.name: c.writes_counted for c in scase}
            summary: dict[str, Any]
            if scenario in ONE_CPU:
                summary = dict(summarize(scenario, other))
            elif scenario == BURST:
                summary = _summarize_bursts(bursts, bursts_gc_off, counted)
            else:
                summary = _summarize_latency(lat, counted)
            results.setdefault(mode, {})[scenario] = summary
    return {
        "machine": describe(),
        "config": {
            "rounds": args.rounds,
            "samples": args.samples,
            "busy_samples": args.busy_samples,
            "busy_ms": args.busy_ms,
            "burst_n": args.burst_n,
            "producers": args.producers,
            "queue_n": args.queue_n,
            "queue_rounds": args.queue_rounds,
            "flood_s": args.flood_s,
            "flood_rounds": args.flood_rounds,
            "warmup": args.warmup,
            "pin": list(plans),
            "command": "python -m benchmarks " + " ".join(sys.argv[1:]),
        },
        "cases": {c.name: c.what for c in cases},
        "results": results,
    }


def _rounds(args: argparse.Namespace, scenario: str) -> int:
    if scenario in QUEUE_THROUGHPUT:
        return int(args.queue_rounds)
    if scenario == FLOOD:
        return int(args.flood_rounds)
    return int(args.rounds)


def _summarize_latency(
    runs: dict[str, list[LatencyRun]], counted: dict[str, bool]
) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, rs in runs.items():
        errors = [r.error for r in rs if r.error]
        if errors:
            out[name] = {"error": errors[0]}
            continue
        s: dict[str, Any] = summarize_latency([r.samples_ns for r in rs])
        s["rounds_p50"] = [summarize_latency([r.samples_ns])["p50"] for r in rs]
        s["switches"] = median_or_none([r.switches_per_wake for r in rs])
        s["writes"] = median_or_none([r.writes_per_wake for r in rs]) if counted[name] else None
        s["loop_first"] = median_or_none([r.loop_first for r in rs])
        if all(r.drained_ns for r in rs):  # a Waker's reader: the same wakes, after its drain
            drained = summarize_latency([r.drained_ns for r in rs])
            s["p50_drained"], s["p99_drained"] = drained["p50"], drained["p99"]
        out[name] = s
    return out


def _summarize_bursts(
    runs: dict[str, list[BurstRun]],
    runs_gc_off: dict[str, list[BurstRun]],
    counted: dict[str, bool],
) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, rs in runs.items():
        off = runs_gc_off[name]
        errors = [r.error for r in rs + off if r.error]
        if errors:
            out[name] = {"error": errors[0]}
            continue
        out[name] = {
            "callbacks_per_s": median_or_none([r.callbacks_per_s for r in rs]),
            "rounds_callbacks_per_s": [r.callbacks_per_s for r in rs],
            "gc_share": median_or_none([r.gc_share for r in rs]),
            "callbacks_per_s_gc_off": median_or_none([r.callbacks_per_s for r in off]),
            "rounds_callbacks_per_s_gc_off": [r.callbacks_per_s for r in off],
            "writes": (
                median_or_none([r.writes_per_callback for r in rs]) if counted[name] else None
            ),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console()
    if not console.is_terminal:
        console = Console(width=150)  # piped or captured: do not squeeze the tables to 80
    if args.list:
        for case in select_cases(args.cases):
            console.print(f"{case.name:34} {','.join(sorted(case.scenarios)):44} {case.what}")
        return 0
    doc = run_suite(args, console)
    print_report(console, doc)
    if args.json:
        write_json(args.json, doc)
        console.print(f"JSON: {args.json}")
    if args.plot:
        from ._plot import plot_latency

        plot_latency(args.plot, doc)
        console.print(f"plot: {args.plot}")
    failed = [
        f"{mode}/{scenario}/{name}"
        for mode, scenarios in doc["results"].items()
        for scenario, rows in scenarios.items()
        for name, row in rows.items()
        if row_error(row)
    ]
    if failed:
        console.print(f"[red]{len(failed)} case(s) failed: {', '.join(failed)}[/red]")
        return 1
    return 0
