"""The benchmark suite runs every case, ends, and reports sane numbers (never checks speed)."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import gc
import io
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

import aiowake
from benchmarks import _cases, _harness, _machine, _mechanisms, _queues
from benchmarks._cases import FLOOD, QUEUE_LATENCY, QUEUE_TO_LOOP, QUEUE_TO_THREAD, all_cases
from benchmarks._cli import parse_args, run_suite
from benchmarks._flood import STEP
from benchmarks._harness import pin_plan, run_burst, run_latency
from benchmarks._mechanisms import Mechanism, Probe, Wake, WakerOnSelectors
from benchmarks._memory import PeakRss
from benchmarks._queue_harness import run_queue
from benchmarks._report import print_report, write_json
from benchmarks._scenarios import FloodSummary, QueueLatency, QueueThroughput
from benchmarks._stats import percentile, summarize_latency
from benchmarks._targets import TARGETS, check, host_spread, targets_table

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _no_rloop_in_this_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """rloop 0.5 closes its self-pipe's descriptors itself when a run ends, then drops the Python
    sockets that still hold those numbers, which close them again when collected: by then the
    number may be someone else's descriptor, which is closed under them. In the test process
    that someone is the next test, so rloop's cases run only in the suite's own subprocess
    (test_every_case_runs_and_reports_positive_numbers)."""
    monkeypatch.delitem(_mechanisms.LOOPS, "rloop", raising=False)


@pytest.mark.timeout(240)
def test_every_case_runs_and_reports_positive_numbers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.undo()  # rloop too: the suite runs in a subprocess here
    out_json, out_png = tmp_path / "bench.json", tmp_path / "bench.png"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--rounds=2",
            "--samples=5",
            "--warmup=2",
            "--busy-samples=1",
            "--busy-ms=1",
            "--burst-n=300",
            "--producers=2",
            "--pin=same,split,none",
            "--scenarios=latency,working,busy,burst",  # the others: test_queue_and_flood_...
            f"--json={out_json}",
            f"--plot={out_png}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=220,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Wakeup latency, idle producer" in proc.stdout
    assert "Wakeup latency, working producer" in proc.stdout
    assert "Burst throughput" in proc.stdout
    assert "GC off ÷ uvloop cst" in proc.stdout
    assert "Targets" in proc.stdout
    doc: dict[str, Any] = json.loads(out_json.read_text())
    assert doc["machine"]["python"].startswith("CPython") or doc["machine"]["python"]
    cases = {c.name: c for c in all_cases()}
    assert set(doc["cases"]) == set(cases)
    for mode, scenarios in doc["results"].items():
        assert mode in ("same", "split", "none")
        for scenario, rows in scenarios.items():
            expected = {n for n, c in cases.items() if scenario in c.scenarios}
            assert set(rows) == expected, (mode, scenario)
            for name, row in rows.items():
                assert "error" not in row, (mode, scenario, name, row)
                if scenario == "burst":
                    assert row["callbacks_per_s"] > 0
                    assert len(row["rounds_callbacks_per_s"]) == 2
                    assert row["callbacks_per_s_gc_off"] > 0
                    assert len(row["rounds_callbacks_per_s_gc_off"]) == 2
                    assert 0 <= row["gc_share"] < 1
                else:
                    values = [row[k] for k in ("p50", "p90", "p99", "p99.9", "max")]
                    assert all(v > 0 for v in values), (name, values)
                    assert values[1:] == sorted(values[1:]), "pooled percentiles are ordered"
                    assert row["p50"] <= row["max"]
                    assert row["samples"] == 2 * (1 if scenario == "busy" else 5)
                    assert 0 <= row["loop_first"] <= 1
                    # A reader that drains (a Waker, a bare eventfd) is timed twice, and the time
                    # after its drain can only be later.
                    drains = "/waker:" in name or "/bare:" in name
                    assert ("p50_drained" in row) == drains, (name, row)
                    if drains:
                        assert row["p50_drained"] >= row["p50"], (name, row)
    assert out_png.read_bytes().startswith(b"\x89PNG")


def unpinned_latency_run(name: str, samples: int, warmup: int) -> _harness.LatencyRun:
    case = next(c for c in all_cases() if c.name == name)
    plan = pin_plan("none")
    assert plan is not None
    run = run_latency(case.make, samples=samples, warmup=warmup, pin=plan, timeout=10.0)
    assert run.error is None
    return run


def test_latency_run_counts_its_samples() -> None:
    run = unpinned_latency_run("selectors/waker:pipe", samples=20, warmup=3)
    assert len(run.samples_ns) == 20
    assert all(s > 0 for s in run.samples_ns)
    assert run.loop_first is not None
    assert 0 <= run.loop_first <= 1
    # The same wakes, timed again after the drain: one each, each one later.
    assert len(run.drained_ns) == 20
    assert all(d > s for s, d in zip(run.samples_ns, run.drained_ns, strict=True))


def test_a_reader_that_does_not_drain_is_timed_once() -> None:
    run = unpinned_latency_run("asyncio/call_soon_threadsafe", samples=5, warmup=1)
    assert len(run.samples_ns) == 5
    assert run.drained_ns == []


def test_a_working_producer_lets_other_threads_run_between_its_wakes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The working gap computes in C with the GIL released, so the loop thread is never kept
    waiting by it (a pure-Python spin would hold the GIL for the whole switch interval)."""
    monkeypatch.setattr(_harness, "IDLE_GAP_S", 1.0)  # one long gap
    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(30.0)  # a GIL-holding gap would starve this thread for 1 s
    worker = threading.Thread(target=_harness.work_gap, daemon=True)
    try:
        worker.start()
        time.sleep(0.05)  # hands the GIL to the worker; getting it back needs the worker's help
        still_working = worker.is_alive()
    finally:
        sys.setswitchinterval(old_interval)
        worker.join()
    assert still_working, "this thread only ran again once the working gap had ended"


def test_loop_first_counts_wakes_handled_before_the_wake_call_returned() -> None:
    """A "loop" that runs inside the wake call itself is first every time."""

    class Inline(WakerOnSelectors):
        def wake_fn(self) -> Wake:
            return self.probe.both  # the probe runs before the wake call returns

    plan = pin_plan("none")
    assert plan is not None
    run = run_latency(functools.partial(Inline, backend="pipe"), 10, 2, plan, timeout=10.0)
    assert run.error is None
    assert run.loop_first == 1.0


def test_burst_run_reports_a_rate() -> None:
    case = next(c for c in all_cases() if c.name == "asyncio/Dispatcher")
    plan = pin_plan("none")
    assert plan is not None
    # A young generation of 100, so that the collector surely runs while 3,000 new tracked
    # objects come and go: with 3.13's default of 2,000 a loop that keeps up with the posts may
    # never let that many pile up, and there would be nothing to time.
    threshold = gc.get_threshold()
    gc.set_threshold(100)
    try:
        run = run_burst(case.make, producers=3, per_producer=1000, pin=plan, timeout=10.0)
    finally:
        gc.set_threshold(*threshold)
    assert run.error is None
    assert run.callbacks_per_s > 0
    assert run.writes_per_callback is None or 0 < run.writes_per_callback < 1
    assert 0 < run.gc_share < 1


@pytest.mark.parametrize("enabled_before", [True, False])
def test_a_burst_with_the_collector_off_collects_nothing_and_restores_it(
    enabled_before: bool,
) -> None:
    case = next(c for c in all_cases() if c.name == "asyncio/Dispatcher")
    plan = pin_plan("none")
    assert plan is not None
    collections: list[str] = []

    def seen(phase: str, info: dict[str, int]) -> None:
        collections.append(phase)

    was = gc.isenabled()
    (gc.enable if enabled_before else gc.disable)()
    gc.callbacks.append(seen)
    try:
        run = run_burst(case.make, 3, 1000, plan, timeout=10.0, gc_off=True)
        assert gc.isenabled() == enabled_before
    finally:
        gc.callbacks.remove(seen)
        (gc.enable if was else gc.disable)()
    assert run.error is None
    assert run.gc_share == 0
    assert collections == ["start", "stop"]  # only the full collection before the burst


def test_a_stuck_case_is_reported_not_hung() -> None:
    """A mechanism whose wake never reaches the loop fails the case after the timeout."""

    class Deaf(WakerOnSelectors):
        def wake_fn(self) -> Wake:
            return lambda: None  # the producer's wakes go nowhere

    plan = pin_plan("none")
    assert plan is not None
    deaf = functools.partial(Deaf, backend="pipe")
    run = run_latency(deaf, samples=3, warmup=0, pin=plan, timeout=0.5)
    assert run.error is not None
    assert "no wakeup within" in run.error


def test_every_case_can_be_woken_before_its_loop_thread_starts() -> None:
    """The producer asks for wake_fn() and wakes as soon as both threads start, which may be
    before the loop thread has set anything up."""
    for case in all_cases():
        mech = case.make(Probe.of(lambda: None))
        mech.wake_fn()()
        mech.stop()
        mech.serve()  # sets up, handles the wake and the stop, tears down, closes


def test_a_producer_that_raises_fails_the_case() -> None:
    class Broken(WakerOnSelectors):
        def wake_fn(self) -> Wake:
            def wake() -> None:
                raise RuntimeError("the wake broke")

            return wake

    plan = pin_plan("none")
    assert plan is not None
    run = run_latency(functools.partial(Broken, backend="pipe"), 5, 0, plan, timeout=10.0)
    assert run.error is not None
    assert "producer thread: RuntimeError('the wake broke')" in run.error


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs os.sched_setaffinity")
@pytest.mark.parametrize(
    ("how", "error"),
    [
        ("a producer cannot pin", r"producer thread \d: OSError\(22,"),  # EINVAL
        ("a post raises", r"producer thread \d: RuntimeError\('the post broke'\)"),
        ("the loop dies", r"loop thread: RuntimeError\('the loop broke'\)"),
    ],
    ids=["a producer cannot pin", "a post raises", "the loop dies"],
)
def test_a_burst_whose_thread_fails_reports_it_and_never_hangs(how: str, error: str) -> None:
    """A producer that died before the start barrier used to leave the run waiting there for
    good; one that died mid-burst, or a dead loop, waiting out the whole timeout."""
    case = next(c for c in all_cases() if c.name == "asyncio/Dispatcher")
    make: Callable[[Probe], Mechanism] = case.make
    plan = pin_plan("none")
    assert plan is not None
    if how == "a producer cannot pin":
        plan = (None, frozenset({max(os.sched_getaffinity(0)) + 4096}))  # no such CPU
    elif how == "a post raises":

        def make(probe: Probe) -> Mechanism:
            mech = case.make(probe)
            mech.post_fn = lambda: _raise_on_post  # type: ignore[method-assign]
            return mech

    else:
        make = _DeadLoop
    # A timeout longer than the test's own: the run must end on the failure, not wait it out.
    run = run_burst(make, producers=2, per_producer=100, pin=plan, timeout=3600.0)
    assert run.error is not None
    assert re.search(error, run.error), run.error


def _raise_on_post(callback: object) -> None:
    raise RuntimeError("the post broke")


class _DeadLoop(Mechanism):
    def serve(self) -> None:
        raise RuntimeError("the loop broke")

    def stop(self) -> None:
        pass

    def post_fn(self) -> Callable[[Callable[[], None]], object]:
        return lambda callback: None  # posts into the void: only the loop's failure ends the run


def test_percentiles() -> None:
    values = list(range(1, 1001))
    assert percentile(values, 50) == 500
    assert percentile(values, 99.9) == 999
    assert percentile([7], 99) == 7
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)
    s = summarize_latency([[1000, 2000, 3000], [4000, 5000, 6000]])
    assert s["p50"] == 3.5  # median of the rounds' p50s (2 µs and 5 µs)
    assert s["max"] == 6.0


@pytest.mark.parametrize(
    "argv",
    [
        ["--rounds=0"],
        ["--pin=diagonal"],
        ["--scenarios=speed"],
        ["--timeout=0"],
        ["--samples=-1"],
        ["--queue-n=0"],
        ["--queue-rounds=0"],
        ["--flood-s=0"],
        ["--flood-rounds=0"],
    ],
)
def test_bad_arguments_are_refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        parse_args(argv)
    assert info.value.code == 2
    assert "error" in capsys.readouterr().err


def test_full_preset_is_larger() -> None:
    quick, full = parse_args([]), parse_args(["--full"])
    assert full.rounds > quick.rounds
    assert full.samples > quick.samples
    assert parse_args(["--full", "--rounds=3"]).rounds == 3


@pytest.mark.parametrize(
    "name",
    [
        "asyncio/waker:pipe",
        "uvloop/waker:pipe",
        "selectors/waker:pipe",
        "asyncio/aiowake.Event",
        "asyncio/asyncio.Event+cst",
    ],
)
def test_back_to_back_wakes_are_never_lost(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """With no idle gap the producer wakes again the moment the loop acknowledges: a case that
    acknowledged before draining its Waker (or clearing its Event) would lose that wake."""
    monkeypatch.setattr(_harness, "IDLE_GAP_S", 0)
    case = next(c for c in all_cases() if c.name == name)
    plan = pin_plan("none")
    assert plan is not None
    run = run_latency(case.make, samples=2000, warmup=0, pin=plan, timeout=5.0)
    assert run.error is None
    assert len(run.samples_ns) == 2000


def test_every_target_names_cases_of_the_suite() -> None:
    names = {c.name for c in all_cases()}
    auto = aiowake.Waker.backends()[0]
    for t in TARGETS:
        case, ref = t.cases(auto)
        if sys.platform == "linux":
            assert {case, ref} <= names, t
        assert all(t.scenario in c.scenarios for c in all_cases() if c.name in (case, ref)), t


def test_targets_are_ratios_of_one_run_checked_each_way() -> None:
    latency = {
        "floor/eventfd": {"p50": 10.0},
        "uvloop/waker:eventfd": {"p50": 11.0},  # 1.1x floor: met (at most 1.15x)
        "selectors/waker:eventfd": {"p50": 16.0},  # 1.6x floor: not met (at most 1.5x)
        "asyncio/call_soon_threadsafe": {"p50": 20.0},
        "asyncio/waker:eventfd": {"error": "no wakeup"},  # failed: neither met nor unmet
    }
    working = {  # the same cases with a working producer are checked on their own
        "floor/eventfd": {"p50": 4.0},
        "uvloop/waker:eventfd": {"p50": 5.0},  # 1.25x floor: not met
        "selectors/waker:eventfd": {"p50": 5.6},  # 1.4x floor: met
    }
    burst = {
        "asyncio/call_soon_threadsafe": {"callbacks_per_s": 1e5},
        "uvloop/call_soon_threadsafe": {"callbacks_per_s": 4e5},
        "asyncio/Dispatcher": {"callbacks_per_s": 3.4e5},  # 3.4x stock, 0.85x uvloop: met
        "uvloop/Dispatcher": {"callbacks_per_s": 3.9e5},  # 0.975x uvloop: not met (at least 1x)
    }
    doc = {
        "machine": {"auto_backend": "eventfd"},
        "results": {"same": {"latency": latency, "working": working, "burst": burst}},
    }
    checks = check(doc)
    assert len(checks) == len(TARGETS)
    got = {
        (c.target.scenario, c.target.case, c.target.ref): (
            None if c.ratio is None else round(c.ratio, 3),
            c.met,
        )
        for c in checks
    }
    assert len(got) == len(checks), "every target is a distinct (scenario, case, reference)"
    assert got[("latency", "uvloop/waker:{auto}", "floor/eventfd")] == (1.1, True)
    assert got[("latency", "selectors/waker:{auto}", "floor/eventfd")] == (1.6, False)
    assert got[("working", "uvloop/waker:{auto}", "floor/eventfd")] == (1.25, False)
    assert got[("working", "selectors/waker:{auto}", "floor/eventfd")] == (1.4, True)
    stock = "asyncio/call_soon_threadsafe"
    assert got[("latency", "asyncio/waker:{auto}", stock)] == (None, None)
    assert got[("working", "asyncio/waker:{auto}", stock)] == (None, None)
    assert got[("latency", "asyncio/aiowake.Event", "asyncio/asyncio.Event+cst")] == (None, None)
    assert got[("burst", "asyncio/Dispatcher", stock)] == (3.4, True)
    assert got[("burst", "asyncio/Dispatcher", "uvloop/call_soon_threadsafe")] == (0.85, True)
    assert got[("burst", "uvloop/Dispatcher", "uvloop/call_soon_threadsafe")] == (0.975, False)


def test_a_check_is_out_of_reach_where_even_the_bare_eventfd_misses_its_limit() -> None:
    working = {
        "floor/eventfd": {"p50": 4.0},
        "uvloop/bare:eventfd": {"p50": 5.0},  # 1.25x the floor, past the limit of 1.15x
        "uvloop/waker:eventfd": {"p50": 5.4},  # 1.35x: missed, and out of reach
        "selectors/bare:eventfd": {"p50": 4.8},  # 1.2x, within the limit of 1.5x
        "selectors/waker:eventfd": {"p50": 6.4},  # 1.6x: missed, though within reach
        "asyncio/call_soon_threadsafe": {"p50": 10.0},
        "asyncio/waker:eventfd": {"p50": 7.0},  # 0.7x: met; its bare case is not in the run
    }
    burst = {
        "asyncio/call_soon_threadsafe": {"callbacks_per_s": 1e5},
        "asyncio/Dispatcher": {"callbacks_per_s": 2e5},  # 2x: missed; a burst has no bound
    }
    doc = {
        "machine": {"auto_backend": "eventfd"},
        "results": {"same": {"working": working, "burst": burst}},
    }
    checks = [c for c in check(doc) if c.ratio is not None]
    by = {(c.target.case.split("/")[0], c.target.scenario): c for c in checks}
    uv, sel = by["uvloop", "working"], by["selectors", "working"]
    aio, burst_check = by["asyncio", "working"], by["asyncio", "burst"]
    assert (uv.met, uv.bare, uv.out_of_reach) == (False, 1.25, True)
    assert (sel.met, sel.bare, sel.out_of_reach) == (False, 1.2, False)
    assert (aio.met, aio.bare, aio.out_of_reach) == (True, None, False)
    assert (burst_check.met, burst_check.bare, burst_check.out_of_reach) == (False, None, False)

    console = Console(record=True, width=300, file=io.StringIO())
    console.print(targets_table(checks, "eventfd"))
    cells = [
        [cell.strip() for cell in line.split("│")[1:-1]]
        for line in console.export_text().splitlines()
        if line.startswith("│")
    ]
    bare_and_met = {(row[0], row[1]): (row[-2], row[-1]) for row in cells}
    times = "\N{MULTIPLICATION SIGN}"
    assert bare_and_met["Waker via add_reader, uvloop", "working"] == (
        f"1.25{times}",
        "no (out of reach)",
    )
    assert bare_and_met["Waker in a selectors loop", "working"] == (f"1.20{times}", "no")
    assert bare_and_met["Waker via add_reader, asyncio", "working"] == ("—", "yes")
    assert bare_and_met["Dispatcher burst, asyncio", "burst"] == ("—", "no")


def test_host_spread_tells_a_steady_run_from_a_noisy_one() -> None:
    def doc(rounds: list[float] | None) -> dict[str, Any]:
        working = {} if rounds is None else {"floor/eventfd": {"rounds_p50": rounds}}
        return {"results": {"same": {"working": working}}}

    steady = host_spread(doc([3.9, 3.9, 4.0, 3.9, 3.9, 3.8, 3.9, 3.9]))
    noisy = host_spread(doc([3.9, 7.2, 4.0, 8.4, 5.5, 6.4, 4.1, 6.3]))
    assert steady is not None
    assert noisy is not None
    assert steady < 0.02 < 0.15 < noisy
    assert host_spread(doc(None)) is None
    assert host_spread(doc([3.9, 4.0])) is None  # too few rounds to say


def test_a_check_says_when_its_limit_lies_within_the_per_round_spread() -> None:
    floor = {"p50": 4.0, "rounds_p50": [4.0] * 8}
    swinging = [4.0, 5.2, 4.4, 5.0, 4.6, 4.8, 4.2, 5.4]  # 1.00-1.35x the floor, round by round
    working = {
        "floor/eventfd": floor,
        "uvloop/waker:eventfd": {"p50": 4.6, "rounds_p50": swinging},  # limit 1.15x: inside
        "selectors/waker:eventfd": {"p50": 5.6, "rounds_p50": [5.6] * 8},  # 1.4x every round
    }
    doc = {"machine": {"auto_backend": "eventfd"}, "results": {"same": {"working": working}}}
    by_case = {c.target.case: c for c in check(doc) if c.target.scenario == "working"}
    uv, sel = by_case["uvloop/waker:{auto}"], by_case["selectors/waker:{auto}"]
    assert uv.rounds is not None
    assert uv.rounds[0] < 1.15 < uv.rounds[1]
    assert uv.close
    assert sel.rounds == pytest.approx((1.4, 1.4))
    assert sel.met
    assert not sel.close
    no_rounds = by_case["asyncio/aiowake.Event"]  # not in the run
    assert no_rounds.rounds is None
    assert not no_rounds.close


def _tiny_run(tmp_path: Path, scenarios: str, *extra: str) -> tuple[dict[str, Any], str]:
    """The suite in this process, tiny, unpinned; the report's text; the JSON written and read."""
    args = parse_args([f"--scenarios={scenarios}", "--pin=none", "--producers=2", *extra])
    console = Console(record=True, width=250, file=io.StringIO())
    doc = run_suite(args, console)
    print_report(console, doc)
    write_json(tmp_path / "bench.json", doc)
    assert json.loads((tmp_path / "bench.json").read_text())["results"].keys() == {"none"}
    return doc, console.export_text()


def _expected(scenario: str) -> set[str]:
    return {c.name for c in all_cases() if scenario in c.scenarios}


def test_the_queue_scenarios_run_tiny_and_report_their_shape(tmp_path: Path) -> None:
    doc, text = _tiny_run(
        tmp_path,
        f"{QUEUE_TO_LOOP},{QUEUE_TO_THREAD},{QUEUE_LATENCY}",
        "--queue-rounds=1",
        "--queue-n=50",
        "--rounds=2",
        "--samples=5",
        "--warmup=1",
    )
    times = "\N{MULTIPLICATION SIGN}"
    assert f"Queue throughput, 2 threads {times} 50 items → one task" in text
    assert "Queue throughput, one task → one thread, 100 items" in text
    assert "Queue put → get latency" in text
    assert "Queue targets (issue 18)" in text
    results = doc["results"]["none"]
    kinds = {c.name: c.queue[1] for c in all_cases() if c.queue is not None}
    assert {k.name for k in kinds.values()} == {
        k.name for k in _queues.queue_kinds() if k.open is not None
    }
    for scenario in (QUEUE_TO_LOOP, QUEUE_TO_THREAD):
        rows = results[scenario]
        assert set(rows) == _expected(scenario) == set(kinds)
        for name, row in rows.items():
            assert isinstance(row, QueueThroughput)
            assert row.error is None, (scenario, name, row.error)
            assert row.unbounded is not None
            assert (row.bounded is not None) == kinds[name].bounded, name
            for size in (row.unbounded, row.bounded):
                if size is not None:
                    assert size.items_per_s > 0
                    assert len(size.rounds_items_per_s) == 1
                    assert size.rss_growth is None or size.rss_growth >= 0
    rows = results[QUEUE_LATENCY]
    assert set(rows) == _expected(QUEUE_LATENCY)
    assert {n for n in rows if n.endswith("/aiowake.Event")}, "the Event is the latency reference"
    for name, row in rows.items():
        assert isinstance(row, QueueLatency)
        assert row.error is None, (name, row.error)
        assert 0 < row.p50 <= row.max
        assert row.p90 <= row.p99 <= row.p99_9 <= row.max
        assert row.samples == 2 * 5
        assert len(row.rounds_p50) == 2


def test_the_flood_runs_tiny_and_reports_backlog_memory_and_drain(tmp_path: Path) -> None:
    doc, text = _tiny_run(tmp_path, FLOOD, "--flood-s=0.02", "--flood-rounds=1")
    assert "Flood: one producer posting for 0.02 s" in text
    rows = doc["results"]["none"][FLOOD]
    assert set(rows) == _expected(FLOOD)
    assert {"asyncio/call_soon_threadsafe", "asyncio/Dispatcher", "asyncio/Dispatcher.post"} <= set(
        rows
    )
    for name, row in rows.items():
        assert isinstance(row, FloodSummary)
        assert row.error is None, (name, row.error)
        assert row.posted >= STEP
        assert row.posts_per_s > 0
        assert 0 <= row.peak_unrun <= row.posted
        assert row.peak_backlog >= 0
        # Stock asyncio's ready queue and the Dispatcher's channel are read; uvloop's and
        # rloop's are out of reach, so their posts are counted.
        readable = name.startswith("asyncio/") or "/Dispatcher" in name
        assert row.backlog_read == readable, name
        assert 0 <= row.ran_share <= 1
        assert row.drain_s >= 0
        assert row.rss_growth is None or row.rss_growth >= 0
        assert len(row.rounds) == 1


def test_a_queue_library_that_cannot_be_imported_has_no_case_and_says_why(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    missing = _queues._load(
        "nowhere.Queue", "no_such_queue_module", "Queue", None, _queues._mixed, "absent"
    )
    assert missing.open is None
    assert missing.unavailable is not None
    assert "ModuleNotFoundError" in missing.unavailable
    kinds = (missing, *_queues.queue_kinds())
    monkeypatch.setattr(_cases, "queue_kinds", lambda: kinds)
    monkeypatch.setattr(_machine, "queue_kinds", lambda: kinds)
    assert not [c.name for c in all_cases() if "nowhere" in c.name]
    machine = _machine.describe()
    assert "nowhere.Queue" in machine["unavailable"]
    assert "nowhere.Queue" not in machine["queues"]
    console = Console(record=True, width=250, file=io.StringIO())
    doc = {"machine": machine, "config": parse_args(["--pin=none"]).__dict__, "results": {}}
    doc["config"]["command"] = "test"
    print_report(console, doc)
    assert "nowhere.Queue: unavailable (ModuleNotFoundError" in console.export_text()


def test_a_queue_run_that_stops_making_progress_fails_and_never_hangs() -> None:
    def deaf(maxsize: int, loop: asyncio.AbstractEventLoop) -> _queues.Ends:
        ends = _queues._stock(maxsize, loop)
        return dataclasses.replace(ends, thread_put=lambda item: None)  # puts go nowhere

    kind = _queues.QueueKind("deaf", "a queue whose puts go nowhere", deaf, bounded=False)
    plan = pin_plan("none")
    assert plan is not None
    run = run_queue(kind, "asyncio", True, 0, 2, 10, plan, timeout=0.3)
    assert run.error is not None
    assert "only 0 of 20 items arrived, none more for 0.3 s" in run.error


def test_peak_rss_sees_memory_touched_during_a_run() -> None:
    rss = PeakRss()
    rss.start()
    block = bytearray(64 * 2**20)  # filled with zeros: every page touched
    grown = rss.growth()
    del block
    if grown is None:
        pytest.skip("this kernel does not report a resettable peak RSS")
    assert grown >= 48 * 2**20
