"""The cases, by name: ``<loop>/<mechanism>``. Names are what ``--cases`` patterns match."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from dataclasses import dataclass

import aiowake

from ._mechanisms import (
    BARE,
    LOOPS,
    CallSoonThreadsafe,
    DispatcherOnLoop,
    DispatcherPostOnLoop,
    EventOnLoop,
    Mechanism,
    Probe,
    RawEventfdFloor,
    StockEventOnLoop,
    WakerOnLoop,
    WakerOnSelectors,
)
from ._queues import QueueKind, QueueOnLoop, queue_kinds

#: latency: the producer sleeps between wakes; working: it computes in C with the GIL released
#: between wakes; busy: it computes holding the GIL after each wake; burst: throughput.
LATENCY, WORKING, BUSY, BURST = "latency", "working", "busy", "burst"
#: Queues: throughput from threads to a task and from a task to a thread, each unbounded and
#: bounded; put -> get latency (an idle producer). flood: one producer posting for seconds.
QUEUE_TO_LOOP, QUEUE_TO_THREAD = "queue-to-loop", "queue-to-thread"
QUEUE_LATENCY, FLOOD = "queue-latency", "flood"
SCENARIOS = (LATENCY, WORKING, BUSY, BURST, QUEUE_TO_LOOP, QUEUE_TO_THREAD, QUEUE_LATENCY, FLOOD)
#: The scenarios that measure one wake from a producer that then goes idle.
ONE_WAKE = (LATENCY, WORKING)
QUEUE_THROUGHPUT = (QUEUE_TO_LOOP, QUEUE_TO_THREAD)
#: Scenarios run with both threads on one CPU only (``--pin same``; see benchmarks/README.md).
ONE_CPU = (*QUEUE_THROUGHPUT, QUEUE_LATENCY, FLOOD)

FLOOR = "floor/eventfd"
STOCK_QUEUE = "stock"  # the queue kind made of asyncio.Queue and queue.Queue
STOCK = "asyncio/call_soon_threadsafe"
UVLOOP = "uvloop/call_soon_threadsafe"


@dataclass(frozen=True)
class Case:
    name: str
    make: Callable[[Probe], Mechanism]
    scenarios: frozenset[str]
    what: str
    #: False where the wakeup is a socket send(), which /proc/self/io's write count does not see.
    writes_counted: bool = True
    #: A queue case's loop and queue, for the throughput scenarios.
    queue: tuple[str, QueueKind] | None = None


def all_cases() -> list[Case]:
    auto = aiowake.Waker.backends()[0]
    cases: list[Case] = []
    main = {LATENCY, WORKING, BUSY}  # the comparison's main cases; other backends: LATENCY only

    def add(
        name: str,
        make: Callable[..., Mechanism],
        scenarios: set[str],
        what: str,
        writes_counted: bool = True,
        queue: tuple[str, QueueKind] | None = None,
    ) -> None:
        cases.append(Case(name, make, frozenset(scenarios), what, writes_counted, queue))

    if sys.platform == "linux":
        add(FLOOR, RawEventfdFloor, main, "two threads on a raw eventfd, no loop")
    for loop in LOOPS:
        p = functools.partial
        add(
            f"{loop}/call_soon_threadsafe",
            p(CallSoonThreadsafe, loop_kind=loop),
            main | {BURST, FLOOD},
            f"{loop}'s own loop.call_soon_threadsafe",
            writes_counted=loop != "asyncio",  # stock asyncio wakes its self-pipe with send()
        )
        if sys.platform == "linux":
            add(
                f"{loop}/{BARE}:eventfd",
                p(WakerOnLoop, loop_kind=loop, backend=BARE),
                {LATENCY, WORKING},
                "a bare eventfd via loop.add_reader, written directly: the loop's own cost",
            )
        for backend in aiowake.Waker.backends():
            add(
                f"{loop}/waker:{backend}",
                p(WakerOnLoop, loop_kind=loop, backend=backend),
                main if backend == auto else {LATENCY},
                f"aiowake.Waker({backend!r}) via loop.add_reader",
            )
        add(
            f"{loop}/aiowake.Event",
            p(EventOnLoop, loop_kind=loop),
            main | {QUEUE_LATENCY},
            "a task awaiting aiowake.Event, set() from the producer",
        )
        add(
            f"{loop}/asyncio.Event+cst",
            p(StockEventOnLoop, loop_kind=loop),
            {LATENCY, WORKING},
            "a task awaiting asyncio.Event, set via loop.call_soon_threadsafe",
            writes_counted=loop != "asyncio",
        )
        add(
            f"{loop}/Dispatcher",
            p(DispatcherOnLoop, loop_kind=loop),
            main | {BURST, FLOOD},
            "aiowake.Dispatcher(loop).call_soon_threadsafe",
        )
        add(
            f"{loop}/Dispatcher.post",
            p(DispatcherPostOnLoop, loop_kind=loop),
            {BURST, FLOOD},
            "aiowake.Dispatcher(loop).post: no handle to cancel",
        )
        for kind in queue_kinds():
            if kind.open is not None:  # else unavailable: no case (see _queues)
                add(
                    f"{loop}/queue:{kind.name}",
                    p(QueueOnLoop, loop_kind=loop, kind=kind),
                    {QUEUE_TO_LOOP, QUEUE_TO_THREAD, QUEUE_LATENCY},
                    kind.what,
                    writes_counted=not (loop == "asyncio" and kind.name == STOCK_QUEUE),
                    queue=(loop, kind),
                )
    if sys.platform == "linux":
        add(
            f"selectors/{BARE}:eventfd",
            functools.partial(WakerOnSelectors, backend=BARE),
            {LATENCY, WORKING},
            "a bare eventfd in a plain selectors loop, written directly: the loop's own cost",
        )
    for backend in aiowake.Waker.backends():
        add(
            f"selectors/waker:{backend}",
            functools.partial(WakerOnSelectors, backend=backend),
            main if backend == auto else {LATENCY},
            f"aiowake.Waker({backend!r}) in a plain selectors loop",
        )
    return cases
