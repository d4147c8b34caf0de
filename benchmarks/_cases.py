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

#: latency: the producer sleeps between wakes; working: it computes in C with the GIL released
#: between wakes; busy: it computes holding the GIL after each wake; burst: throughput.
LATENCY, WORKING, BUSY, BURST = "latency", "working", "busy", "burst"
SCENARIOS = (LATENCY, WORKING, BUSY, BURST)
#: The scenarios that measure one wake from a producer that then goes idle.
ONE_WAKE = (LATENCY, WORKING)

FLOOR = "floor/eventfd"
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
    ) -> None:
        cases.append(Case(name, make, frozenset(scenarios), what, writes_counted))

    if sys.platform == "linux":
        add(FLOOR, RawEventfdFloor, main, "two threads on a raw eventfd, no loop")
    for loop in LOOPS:
        p = functools.partial
        add(
            f"{loop}/call_soon_threadsafe",
            p(CallSoonThreadsafe, loop_kind=loop),
            main | {BURST},
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
            main,
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
            main | {BURST},
            "aiowake.Dispatcher(loop).call_soon_threadsafe",
        )
        add(
            f"{loop}/Dispatcher.post",
            p(DispatcherPostOnLoop, loop_kind=loop),
            {BURST},
            "aiowake.Dispatcher(loop).post: no handle to cancel",
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
