"""Queue throughput, both directions: items per second and the peak resident-memory growth.

Thread -> loop: P producer threads put N items each, as fast as they can, into one queue that one
task empties with ``await get()``. Loop -> thread: one task puts P x N items with ``await put()``
(the stock pair: ``put_nowait``), and one thread takes them with its blocking ``get()``. The rate
is items from the start (a barrier all threads pass, the loop thread's included, inside its
coroutine) until the consumer took the last one. With a ``maxsize`` the queue is bounded, and a
full one makes the producing side wait: the backpressure a bounded queue is for.

Every run starts after a full collection (``PeakRss.start``), with the garbage collector on, as
programs run. A run that makes no progress for ``timeout`` seconds fails, with how far it got.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from ._harness import Pin, _pin_this_thread, _reporting, _start
from ._mechanisms import LOOPS, close_loop
from ._memory import PeakRss
from ._queues import Ends, QueueKind

#: The consumer counts its items in steps of this many (so that the run can tell a slow queue
#: from a stuck one) rather than one by one, which would add to every item's cost.
STEP = 256


@dataclass
class QueueRun:
    items_per_s: float = 0.0
    #: Peak resident-memory growth during the run, bytes; None where the kernel does not say.
    rss_growth: int | None = None
    error: str | None = None


def _steps(total: int) -> list[int]:
    return [STEP] * (total // STEP) + ([total % STEP] if total % STEP else [])


def run_queue(
    kind: QueueKind,
    loop_kind: str,
    to_loop: bool,
    maxsize: int,
    producers: int,
    per_producer: int,
    pin: Pin,
    timeout: float,
) -> QueueRun:
    if kind.open is None:
        raise ValueError(f"{kind.name} is unavailable: {kind.unavailable}")
    result = QueueRun()
    rss = PeakRss()
    rss.start()
    loop = LOOPS[loop_kind]()
    loop.set_debug(False)
    ends = kind.open(maxsize, loop)
    total = producers * per_producer
    threads = producers if to_loop else 1
    start = threading.Barrier(threads + 2)  # the threads, the loop thread, this one
    done = threading.Event()
    got = [0]  # items consumed, in steps
    end = [0]
    errors: list[str] = []

    def finish() -> None:
        end[0] = time.perf_counter_ns()
        done.set()

    def failed() -> None:  # a thread raised: nobody waits for the others in vain
        start.abort()
        done.set()

    main = (
        _to_loop(ends, total, got, start, timeout, finish)
        if to_loop
        else _to_thread(ends, total, start, timeout)
    )

    consumed = loop.create_future()  # loop -> thread: the consumer thread is done

    def serve() -> None:
        try:
            _pin_this_thread(pin[0])
            asyncio.set_event_loop(loop)
            loop.run_until_complete(main)
            if not to_loop:  # the queue stays open (and its loop running) until then
                loop.run_until_complete(consumed)
            if ends.aclose is not None:
                loop.run_until_complete(ends.aclose())
        finally:
            main.close()  # never started (the pinning failed): no "never awaited" warning
            asyncio.set_event_loop(None)
            # rloop leaves a loop whose run failed marked as running: closing it would raise,
            # and hide why the run failed.
            if not loop.is_running():
                close_loop(loop)

    def produce() -> None:
        _pin_this_thread(pin[1])
        put = ends.thread_put
        start.wait(timeout)
        for i in range(per_producer):
            put(i)

    def consume() -> None:
        _pin_this_thread(pin[1])
        get = ends.thread_get
        start.wait(timeout)
        for n in _steps(total):
            for _ in range(n):
                get()
            got[0] += n
        finish()
        loop.call_soon_threadsafe(consumed.set_result, None)

    loop_thread = _start(_reporting(serve, errors, "loop thread", failed), "bench-loop")
    body, who = (produce, "producer thread") if to_loop else (consume, "consumer thread")
    workers = [
        _start(_reporting(body, errors, f"{who} {i}", failed), f"bench-queue-{i}")
        for i in range(threads)
    ]
    t0 = time.perf_counter_ns()
    try:
        start.wait(timeout)
        seen = -1
        while not done.wait(timeout):
            if got[0] == seen:
                errors.append(f"only {got[0]} of {total} items arrived, none more for {timeout} s")
                break
            seen = got[0]
    except threading.BrokenBarrierError:
        if not errors:
            errors.append(f"the threads did not all start within {timeout} s")
    if errors and not loop.is_closed():
        try:
            loop.call_soon_threadsafe(loop.stop)  # ends run_until_complete with an error
        except RuntimeError:
            pass  # closed meanwhile
    for t in [*workers, loop_thread]:
        t.join(timeout)
    if loop_thread.is_alive() and not errors:
        errors.append("the loop thread did not stop")
    # The peak stays the peak: read it once the threads are done, not while they run (a file
    # opened here while a loop thread closes descriptors is one more chance for a library's
    # descriptor bug to strike: see close_loop).
    result.rss_growth = rss.growth()
    if errors:
        result.error = "; ".join(errors)
        return result
    result.items_per_s = total / ((end[0] - t0) / 1e9)
    return result


def _to_loop(
    ends: Ends,
    total: int,
    got: list[int],
    start: threading.Barrier,
    timeout: float,
    finish: Callable[[], None],
) -> Coroutine[Any, Any, None]:
    async def consume() -> None:
        get = ends.task_get
        start.wait(timeout)  # blocks the loop thread, before it has anything else to do
        for n in _steps(total):
            for _ in range(n):
                await get()
            got[0] += n
        finish()

    return consume()


def _to_thread(
    ends: Ends, total: int, start: threading.Barrier, timeout: float
) -> Coroutine[Any, Any, None]:
    put, put_nowait = ends.task_put, ends.task_put_nowait

    async def feed() -> None:
        start.wait(timeout)
        if put is not None:
            for i in range(total):
                await put(i)
        else:
            assert put_nowait is not None
            for i in range(total):
                put_nowait(i)

    return feed()
