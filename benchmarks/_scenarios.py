"""The queue and flood scenarios: one measurement of a case, and the summary of its rounds.

The results are dataclasses; ``--json`` writes them as objects of the same fields.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from ._cases import FLOOD, QUEUE_LATENCY, QUEUE_TO_LOOP, QUEUE_TO_THREAD, Case
from ._flood import FloodRun, run_flood
from ._harness import LatencyRun, Pin, run_latency, sleep_gap
from ._queue_harness import QueueRun, run_queue
from ._queues import BOUNDED
from ._stats import median_or_none, summarize_latency


@dataclass(frozen=True)
class Settings:
    """What the new scenarios take from the command line."""

    producers: int
    queue_n: int
    samples: int
    warmup: int
    flood_s: float
    timeout: float


@dataclass
class QueuePair:
    """One round of a throughput scenario: the queue unbounded, then bounded (None: the queue
    has no maxsize)."""

    unbounded: QueueRun
    bounded: QueueRun | None


Run = QueuePair | LatencyRun | FloodRun


def measure(scenario: str, case: Case, pin: Pin, s: Settings) -> Run:
    if scenario in (QUEUE_TO_LOOP, QUEUE_TO_THREAD):
        assert case.queue is not None
        loop, kind = case.queue
        to_loop = scenario == QUEUE_TO_LOOP
        runs = [
            run_queue(kind, loop, to_loop, size, s.producers, s.queue_n, pin, s.timeout)
            for size in ((0, BOUNDED) if kind.bounded else (0,))
        ]
        return QueuePair(runs[0], runs[1] if kind.bounded else None)
    if scenario == QUEUE_LATENCY:
        return run_latency(case.make, s.samples, s.warmup, pin, s.timeout, 0, sleep_gap)
    if scenario == FLOOD:
        return run_flood(case.make, s.flood_s, pin, s.timeout)
    raise ValueError(f"not a queue or flood scenario: {scenario!r}")


@dataclass
class SizeFigures:
    """A queue's throughput at one size, over the rounds."""

    items_per_s: float
    rounds_items_per_s: list[float]
    #: Median over the rounds of the peak resident-memory growth, bytes.
    rss_growth: float | None


@dataclass
class QueueThroughput:
    unbounded: SizeFigures | None = None
    #: None where the queue has no maxsize.
    bounded: SizeFigures | None = None
    error: str | None = None


@dataclass
class QueueLatency:
    """Microseconds, as the latency tables: p50 is the median of the rounds' p50s."""

    p50: float = 0.0
    p90: float = 0.0
    p99: float = 0.0
    p99_9: float = 0.0
    max: float = 0.0
    samples: int = 0
    rounds_p50: list[float] = field(default_factory=list)
    loop_first: float | None = None
    error: str | None = None


@dataclass
class FloodSummary:
    """Medians over the rounds; ``rounds`` holds each round's figures."""

    posted: float = 0.0
    posts_per_s: float = 0.0
    peak_backlog: float = 0.0
    backlog_read: bool = False
    peak_unrun: float = 0.0
    ran_share: float = 0.0
    rss_growth: float | None = None
    drain_s: float = 0.0
    rounds: list[FloodRun] = field(default_factory=list)
    error: str | None = None


Summary = QueueThroughput | QueueLatency | FloodSummary


def _sizes(runs: Sequence[QueueRun]) -> SizeFigures:
    rates = [r.items_per_s for r in runs]
    growth = [None if r.rss_growth is None else float(r.rss_growth) for r in runs]
    return SizeFigures(statistics.median(rates), rates, median_or_none(growth))


def _throughput(pairs: list[QueuePair]) -> QueueThroughput:
    runs = [r for p in pairs for r in (p.unbounded, p.bounded) if r is not None]
    errors = [r.error for r in runs if r.error]
    if errors:
        return QueueThroughput(error=errors[0])
    bounded = [p.bounded for p in pairs if p.bounded is not None]
    return QueueThroughput(
        _sizes([p.unbounded for p in pairs]), _sizes(bounded) if bounded else None
    )


def _latency(runs: list[LatencyRun]) -> QueueLatency:
    errors = [r.error for r in runs if r.error]
    if errors:
        return QueueLatency(error=errors[0])
    s = summarize_latency([r.samples_ns for r in runs])
    return QueueLatency(
        s["p50"],
        s["p90"],
        s["p99"],
        s["p99.9"],
        s["max"],
        int(s["samples"]),
        [summarize_latency([r.samples_ns])["p50"] for r in runs],
        median_or_none([r.loop_first for r in runs]),
    )


def _flood(runs: list[FloodRun]) -> FloodSummary:
    errors = [r.error for r in runs if r.error]
    if errors:
        return FloodSummary(rounds=runs, error=errors[0])
    med = statistics.median
    growth = [None if r.rss_growth is None else float(r.rss_growth) for r in runs]
    return FloodSummary(
        med(r.posted for r in runs),
        med(r.posts_per_s for r in runs),
        med(r.peak_backlog for r in runs),
        runs[0].backlog_read,
        med(r.peak_unrun for r in runs),
        med(r.ran_share for r in runs),
        median_or_none(growth),
        med(r.drain_s for r in runs),
        runs,
    )


def summarize(scenario: str, runs: dict[str, list[Run]]) -> dict[str, Summary]:
    out: dict[str, Summary] = {}
    for name, rs in runs.items():
        if scenario == QUEUE_LATENCY:
            out[name] = _latency([r for r in rs if isinstance(r, LatencyRun)])
        elif scenario == FLOOD:
            out[name] = _flood([r for r in rs if isinstance(r, FloodRun)])
        else:
            out[name] = _throughput([r for r in rs if isinstance(r, QueuePair)])
    return out
