"""The flood: one producer thread posts as fast as it can for a while, on the loop's CPU.

What a producer that outruns its loop leaves behind: how many callbacks were queued and not yet
run at the worst moment (the backlog), how much resident memory that took, and how long the loop
needed to catch up once the producer stopped. A mechanism whose posts make a system call gives
the loop the GIL at each one, so its backlog stays short; one that coalesces wakeups lets the
producer run on, and only backpressure (a poster that waits past some backlog) bounds it.

The producer posts in steps of ``STEP`` callbacks; after each step it reads the backlog and the
clock. The backlog is the mechanism's own queue length where it has one we can read (stock
asyncio's ready queue, the Dispatcher's channel), else posted minus run (uvloop, rloop: their
queues are out of reach). Both are kept; the peak is the largest reading, so it may miss the true
peak by up to a step. The time to drain runs from the producer's last flood post to the moment a
final marker callback, posted after it, runs: each mechanism runs its callbacks in order.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from ._harness import Pin, _pin_this_thread, _reporting, _serve, _start
from ._mechanisms import Mechanism, Probe
from ._memory import PeakRss

#: Posts between two readings of the backlog and the clock.
STEP = 256


@dataclass
class FloodRun:
    posted: int = 0
    posts_per_s: float = 0.0
    #: The largest backlog read: the mechanism's queue length if ``backlog_read``, else
    #: posted minus run.
    peak_backlog: int = 0
    backlog_read: bool = False
    #: The largest posted-minus-run, whichever way ``peak_backlog`` was read.
    peak_unrun: int = 0
    #: The share of the posts the loop had run by the time the producer stopped.
    ran_share: float = 0.0
    #: Peak resident-memory growth, bytes; None where the kernel does not say.
    rss_growth: int | None = None
    drain_s: float = 0.0
    error: str | None = None


def run_flood(
    make: Callable[[Probe], Mechanism], seconds: float, pin: Pin, timeout: float
) -> FloodRun:
    result = FloodRun()
    rss = PeakRss()
    rss.start()
    ran = 0
    ran_at_stop = 0
    marks = {"stop": 0, "drained": 0}
    started, drained = threading.Event(), threading.Event()

    def callback() -> None:
        nonlocal ran
        ran += 1  # only the loop thread runs callbacks

    def finish() -> None:
        marks["drained"] = time.perf_counter_ns()
        drained.set()

    errors: list[str] = []
    mech = make(Probe.of(lambda: None))
    post, backlog = mech.post_fn(), mech.backlog_fn()
    if post is None:
        raise ValueError("not a flood case")
    result.backlog_read = backlog is not None
    loop_thread = _start(_serve(mech, pin[0], errors, drained.set), "bench-loop")

    def produce() -> None:
        nonlocal ran_at_stop
        _pin_this_thread(pin[1])
        post(started.set)
        if not started.wait(timeout):
            raise RuntimeError(f"the loop did not run a callback within {timeout} s")
        perf = time.perf_counter_ns
        t0 = perf()
        stop_at = t0 + int(seconds * 1e9)
        n = peak = peak_unrun = 0
        while True:
            for _ in range(STEP):
                post(callback)
            n += STEP
            unrun = n - ran
            peak_unrun = max(peak_unrun, unrun)
            peak = max(peak, backlog() if backlog is not None else unrun)
            if perf() >= stop_at:
                break
        marks["stop"] = t1 = perf()
        ran_at_stop = ran
        post(finish)
        result.posted, result.posts_per_s = n, n / ((t1 - t0) / 1e9)
        result.peak_backlog, result.peak_unrun = peak, peak_unrun

    producer = _start(_reporting(produce, errors, "producer thread", drained.set), "bench-flood")
    seen = -1
    while not drained.wait(timeout):  # fail only when nothing runs for that long
        if ran == seen:
            errors.append(f"no callback ran for {timeout} s ({ran} of {result.posted} ran)")
            break
        seen = ran
    producer.join(timeout)
    mech.stop()
    loop_thread.join(timeout)
    result.rss_growth = rss.growth()  # the peak stays the peak (see _queue_harness)
    if loop_thread.is_alive() and not errors:
        errors.append("the loop thread did not stop")
    if errors:
        result.error = "; ".join(errors)
        return result
    result.ran_share = ran_at_stop / result.posted
    result.drain_s = (marks["drained"] - marks["stop"]) / 1e9
    return result
