"""The lifecycle state machine (issue 17): create, post, set, put, close, stop, fork, at once.

Hypothesis drives random sequences of what the world does to aiowake's objects over their lives,
on stock asyncio (debug mode) and on uvloop, with the collector at its most eager
(``gc.set_threshold(1)``: a finalizer may run at nearly any bytecode of any thread) and threads
switching as often as the interpreter allows (``sys.setswitchinterval(1e-6)``):

- Dispatchers made (by the test thread or a worker), posted to by the test thread and by several
  workers at once (every way to post), closed (also while workers post: by the test thread, a
  worker or a task), abandoned to the collector unclosed; workers making, posting to and closing
  their own Dispatchers while the loop runs;
- Events made, waited on by tasks, set (by the test thread, a worker, several workers, or a worker
  while the loop runs), cleared; waiters cancelled, or abandoned to the collector mid-wait;
- Queues made, put to and got from by the test thread, by threads into a task and by a task into
  threads (bounded: backpressure both ways), shut down or closed (also with threads and tasks
  waiting in ``get()`` or ``put()``, by the test thread, a worker or a task);
- the loop run a few iterations, run until everything accepted has run, run until a worker
  stops it; stopped and closed (the Dispatchers closed before it, after it, or by a worker racing
  the stop and close, while workers may still post), and a fresh loop takes its place;
- fork (by the test thread or a worker, other threads churning or not): the child checks its
  inherited Waker, Dispatcher, Event and Queue, then works with a fresh loop of its own.

After every step: every post that returned normally ran at most once and in its producer's order,
and after a settle exactly once (a post whose loop was closed before it could run is dropped with
the loop, as asyncio drops its own callbacks); every queue item put was got at most once, and
exactly once where the queue was drained before it closed; nothing hung (every wait is bounded);
the loop's exception handler received only what the steps made fail. Whenever a loop closes, and
at the end: the loop is freed (weakref after ``gc.collect()``) and the process holds the
descriptors it started with.

A long run (the pytest timeout grows with it)::

    AIOWAKE_HYPOTHESIS_EXAMPLES=1000 .venv/bin/python -m pytest tests/test_lifecycle_machine.py

``AIOWAKE_HYPOTHESIS_STEPS`` sets the steps per example (default 20).
"""

from __future__ import annotations

import asyncio
import faulthandler
import functools
import gc
import os
import selectors
import signal
import sys
import threading
import traceback
import warnings
import weakref
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, Final, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

import aiowake
from aiowake import (
    AsyncQueueShutDown,
    SyncQueueEmpty,
    SyncQueueFull,
    SyncQueueShutDown,
)

from .conftest import LOOP_FACTORIES, LoopFactory, open_fds, readable

T = TypeVar("T")


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value else default


DEFAULT_EXAMPLES: Final = 15
DEFAULT_STEPS: Final = 20
EXAMPLES: Final = _env_int("AIOWAKE_HYPOTHESIS_EXAMPLES", DEFAULT_EXAMPLES)
STEPS: Final = _env_int("AIOWAKE_HYPOTHESIS_STEPS", DEFAULT_STEPS)
SETTINGS: Final = settings(
    max_examples=EXAMPLES,
    stateful_step_count=STEPS,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
#: pytest-timeout's guard for the whole run, grown with a long run's size.
RUN_TIMEOUT: Final = 120 * max(1, (EXAMPLES * STEPS) // (DEFAULT_EXAMPLES * DEFAULT_STEPS))

GUARD: Final = 20.0  # seconds; a hang guard on every wait, never a speed check
IDX = st.integers(0, 3)  # which one of a list, taken modulo its length
POST_METHODS = st.sampled_from(["call_soon_threadsafe", "post", "post_bare", "try_post", "fail"])
RACE_POSTS: Final = 300  # the most posts one worker makes while racing a close
DESTROYED: Final = "Task was destroyed but it is pending!"

Item = tuple[int, int]  # a queue item: (producer, seq)


def pick(items: list[T], i: int) -> T:
    return items[i % len(items)]


def readable_within(fd: int, timeout: float) -> bool:
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        return bool(sel.select(timeout))


class Boom(Exception):
    """What a failing callback raises: the one report the loop's exception handler expects."""


# --- what the callbacks and consumers record ---------------------------------------------------


class Producer:
    """One sequence of posts, by one thread through one Dispatcher: 0, 1, 2, ... The first
    ``accepted`` of them returned normally; ``ran`` is what the loop ran, in its order."""

    __slots__ = ("accepted", "name", "ran")

    def __init__(self, name: str) -> None:
        self.name = name
        self.accepted = 0
        self.ran: list[int] = []


class Record:
    """What one loop's callbacks write. It refers to nothing of the loop's (but a pending
    settle's future), so that a closed loop can be freed while its record lives on."""

    def __init__(self) -> None:
        self.producers: dict[str, Producer] = {}
        self.ran_total = 0
        self.failed = 0  # failing callbacks that ran: each must reach the exception handler
        self.closed = False  # the loop is closed: nothing may run any more
        self.late: list[str] = []  # what ran all the same
        self.settle: tuple[asyncio.Future[None], int] | None = None

    def producer(self, name: str) -> Producer:
        """Test thread, before the producer's thread starts."""
        prod = self.producers[name] = Producer(name)
        return prod

    def run(self, prod: Producer, seq: int) -> None:
        """Loop thread: callback *seq* of *prod*."""
        if self.closed:
            self.late.append(f"{prod.name}#{seq}")
        prod.ran.append(seq)
        self.ran_total += 1
        settle = self.settle
        if settle is not None and self.ran_total >= settle[1] and not settle[0].done():
            settle[0].set_result(None)

    def fail(self, prod: Producer, seq: int) -> None:
        self.run(prod, seq)
        self.failed += 1
        raise Boom(f"{prod.name}#{seq}")

    def accepted(self) -> int:
        return sum(p.accepted for p in self.producers.values())

    def missing(self) -> dict[str, int]:
        return {
            p.name: p.accepted - len(p.ran)
            for p in self.producers.values()
            if len(p.ran) != p.accepted
        }

    def check(self, all_ran: bool) -> None:
        """Each producer's callbacks ran at most once and in order (a prefix of what it posted);
        with *all_ran*, every accepted one."""
        for prod in self.producers.values():
            n = len(prod.ran)
            assert prod.ran == list(range(n)), (
                f"{prod.name}: not each once in order: {prod.ran[:40]}..."
            )
            assert n <= prod.accepted, f"{prod.name}: {prod.accepted} accepted, {n} ran"
            if all_ran:
                assert n == prod.accepted, f"lost: {prod.name}: {prod.accepted} accepted, {n} ran"


class Handler:
    """The loop's exception handler: what it received, as text (a context refers to the loop,
    which must be freed once closed)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        message = str(context.get("message"))
        if isinstance(exc, BaseException):
            self.calls.append((type(exc).__name__, f"{message}: {exc!r}"))
        elif message == DESTROYED:
            # The message alone. This call comes from the task's finalizer, run by the collector,
            # often in the collection that frees the closed loop too; repr() of the task there
            # crashes CPython 3.12.1 itself (a segfault in the collector's finalize_garbage, with
            # stock asyncio and uvloop alike; not 3.11.7 nor 3.13.0; no aiowake needed).
            self.calls.append((message, message))
        else:
            self.calls.append((message, repr(context)))

    def check(self, failed: int, abandoned: int) -> None:
        kinds = Counter(kind for kind, _ in self.calls)
        assert kinds["Boom"] == failed, f"{failed} callbacks failed, reported: {kinds['Boom']}"
        assert kinds[DESTROYED] <= abandoned, f"{kinds[DESTROYED]} tasks destroyed"
        unexpected = [text for kind, text in self.calls if kind not in ("Boom", DESTROYED)]
        assert not unexpected, f"unexpected calls of the loop's exception handler: {unexpected}"


class OrderCheck:
    """What one consumer got: each producer's items in the order they were put."""

    def __init__(self) -> None:
        self.last: dict[int, int] = {}

    def see(self, item: Item) -> None:
        producer, seq = item
        last = self.last.get(producer, -1)
        assert seq > last, f"queue producer {producer}: {seq} after {last}"
        self.last[producer] = seq


class Workers:
    """*n* threads that start together (with *extra* more parties at the barrier, such as the
    test thread) and run ``target(i)``. An exception in one is a failure of the machine; joins
    are bounded, and a thread still alive then has hung."""

    def __init__(
        self, failures: list[str], n: int, target: Callable[[int], object], extra: int = 0
    ) -> None:
        self.failures = failures
        self.barrier = threading.Barrier(n + extra)
        self.threads = [
            threading.Thread(target=self._run, args=(target, i), name=f"machine-{i}", daemon=True)
            for i in range(n)
        ]
        for t in self.threads:
            t.start()

    def _run(self, target: Callable[[int], object], i: int) -> None:
        try:
            self.barrier.wait(GUARD)
            target(i)
        except BaseException:
            self.failures.append(traceback.format_exc())

    def join(self) -> None:
        for t in self.threads:
            t.join(GUARD)
            if t.is_alive():
                self.failures.append(f"hung: {t.name} still running after {GUARD} s")

    async def join_async(self) -> None:
        await asyncio.to_thread(self.join)


def post_one(d: aiowake.Dispatcher, method: str, record: Record, prod: Producer, seq: int) -> bool:
    """Post callback *seq* of *prod* through *d*: True if accepted (returned normally, or
    try_post said True), False if refused (RuntimeError, or try_post said False)."""
    if method == "try_post":
        return d.try_post(record.run, prod, seq)
    try:
        if method == "call_soon_threadsafe":
            d.call_soon_threadsafe(record.run, prod, seq)
        elif method == "post":
            d.post(record.run, prod, seq)
        elif method == "post_bare":  # from a worker (empty context): the callback alone
            d.post(functools.partial(record.run, prod, seq))
        else:
            d.post(record.fail, prod, seq)
    except RuntimeError:
        return False
    return True


# --- the objects of one loop's life -----------------------------------------------------------


class EventModel:
    """An Event and its model: set or not, the tasks waiting, which of them a set reached."""

    def __init__(self) -> None:
        self.event = aiowake.Event()
        self.is_set = False
        self.live: dict[int, asyncio.Task[bool]] = {}
        self.should_be_done: set[int] = set()


class QueueModel:
    """A Queue and what went in and out of it."""

    def __init__(self, maxsize: int) -> None:
        self.q: aiowake.Queue[Item] = aiowake.Queue(maxsize)
        self.maxsize = maxsize
        self.put: list[Item] = []
        self.got: list[Item] = []
        self.shut = False
        #: Every item put must have been got: drained before an immediate close, or after a
        #: plain shutdown.
        self.exact = False

    def left(self) -> list[Item]:
        return sorted((Counter(self.put) - Counter(self.got)).elements())

    def check(self, exact: bool) -> None:
        got = Counter(self.got)
        twice = [item for item, n in got.items() if n > 1]
        assert not twice, f"queue items got more than once: {twice}"
        never_put = got - Counter(self.put)
        assert not never_put, f"queue items got and never put: {list(never_put)}"
        if exact:
            lost = Counter(self.put) - got
            assert not lost, f"lost: queue items put, drained and never got: {list(lost)}"


class Gen:
    """One loop and the objects of its life; when it closes, a fresh one takes its place."""

    def __init__(self, factory: LoopFactory) -> None:
        self.loop = factory()
        self.handler = Handler()
        self.loop.set_exception_handler(self.handler)
        self.record = Record()
        self.dispatchers: list[aiowake.Dispatcher] = []
        self.events: list[EventModel] = []
        self.queues: list[QueueModel] = []
        self.tasks: list[asyncio.Task[Any]] = []  # every task made, to end with the loop
        self.abandoned = 0  # tasks left to the collector while waiting on an Event
        # One of each to start with, so that the rules that need one are enabled at once.
        self.dispatchers.append(aiowake.Dispatcher(self.loop))
        self.events.append(EventModel())
        self.queues.append(QueueModel(1))

    def open_dispatchers(self) -> list[aiowake.Dispatcher]:
        return [d for d in self.dispatchers if not d.closed]

    def open_queues(self) -> list[QueueModel]:
        return [qm for qm in self.queues if not qm.shut]


# --- the fork's child ----------------------------------------------------------------------------


def run_child(child: Callable[[], None]) -> None:  # pragma: no cover - runs in the child
    """In a forked child: run *child*, then exit at once, 0 if it returned (never back into
    pytest or hypothesis). A hung child dumps its stacks and exits after GUARD."""
    code = 1
    try:
        faulthandler.dump_traceback_later(GUARD, exit=True)
        child()
        code = 0
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
    finally:
        os._exit(code)


def a_fresh_loop_works(factory: LoopFactory) -> None:  # pragma: no cover - runs in the child
    """A forked child's own loop, Dispatcher, Event and Queue, fed by a thread of its own."""
    loop = factory()
    handler = Handler()
    loop.set_exception_handler(handler)

    async def main() -> None:
        ran: list[int] = []
        q: aiowake.Queue[int] = aiowake.Queue(2)
        ev = aiowake.Event()
        all_ran = loop.create_future()
        with aiowake.Dispatcher() as d:

            def produce() -> None:
                for i in range(30):
                    assert d.try_post(ran.append, i)
                d.post(all_ran.set_result, None)
                ev.set()
                for i in range(6):
                    q.sync_q.put(i, timeout=GUARD)

            waiter = asyncio.ensure_future(ev.wait())
            t = threading.Thread(target=produce)
            t.start()
            got = [await asyncio.wait_for(q.async_q.get(), GUARD) for _ in range(6)]
            await asyncio.wait_for(all_ran, GUARD)
            assert await asyncio.wait_for(waiter, GUARD) is True
            await asyncio.to_thread(t.join, GUARD)
        assert ran == list(range(30))
        assert got == list(range(6))

    try:
        loop.run_until_complete(main())
        loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        loop.close()
    handler.check(0, 0)


# --- the machine ---------------------------------------------------------------------------------


def lifecycle_machine(factory: LoopFactory) -> type[RuleBasedStateMachine]:
    class LifecycleMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            gc.collect()  # what earlier tests left for the collector
            self.fds_start = open_fds()
            self.failures: list[str] = []  # from worker threads
            self.records: list[Record] = []  # of closed loops: nothing may run there any more
            self.serial = 0
            self.waker = aiowake.Waker()
            self.waker_pending = False
            self.fds_base = open_fds()  # the Waker's, and no loop's
            self.gen = Gen(factory)

        # --- helpers -------------------------------------------------------------------------

        def _name(self, what: str) -> str:
            self.serial += 1
            return f"{what}{self.serial}"

        def _pid(self) -> int:
            self.serial += 1
            return self.serial

        def _run(self, aw: Coroutine[Any, Any, T] | asyncio.Future[T]) -> T:
            return self.gen.loop.run_until_complete(aw)

        def _iterations(self, n: int) -> None:
            async def iterations() -> None:
                for _ in range(n):
                    await asyncio.sleep(0)

            self._run(iterations())

        def _in_thread(self, fn: Callable[[], object]) -> None:
            Workers(self.failures, 1, lambda _: fn()).join()

        async def _settled(self) -> None:
            """Loop: until every post accepted so far has run, and every Event waiter that a
            set reached has returned. Bounded: what does not come in GUARD is lost or hung."""
            gen = self.gen
            rec = gen.record
            target = rec.accepted()
            if rec.ran_total < target:
                fut = gen.loop.create_future()
                rec.settle = (fut, target)
                try:
                    await asyncio.wait_for(fut, GUARD)
                except TimeoutError:
                    raise AssertionError(f"lost or hung: never ran: {rec.missing()}") from None
                finally:
                    rec.settle = None
            woken = [em.live[k] for em in gen.events for k in em.should_be_done if k in em.live]
            if woken:
                _, pending = await asyncio.wait(woken, timeout=GUARD)
                assert not pending, f"hung: {len(pending)} woken Event waiters never returned"
            for _ in range(3):  # what the last ones woke takes its steps
                await asyncio.sleep(0)

        def _check_settled(self) -> None:
            self.gen.record.check(all_ran=True)
            for em in self.gen.events:
                for k, task in list(em.live.items()):
                    assert task.done() is (k in em.should_be_done), (
                        f"Event waiter {k}: done={task.done()}, set={em.is_set}"
                    )
                    if task.done():
                        assert task.result() is True
                        del em.live[k]
                        em.should_be_done.discard(k)

        def _settle(self) -> None:
            self._run(self._settled())
            self._check_settled()

        def _drain(self, qm: QueueModel) -> None:
            """Test thread: get every item left."""
            while True:
                try:
                    item = qm.q.sync_q.get_nowait()
                except (SyncQueueEmpty, SyncQueueShutDown):
                    return
                qm.got.append(item)
                qm.q.sync_q.task_done()

        # --- the Waker ------------------------------------------------------------------------

        @rule(threads=st.integers(0, 3))
        def wake_the_waker(self, threads: int) -> None:
            if threads:
                Workers(self.failures, threads, lambda _: self.waker.wake()).join()
            else:
                self.waker.wake()
            self.waker_pending = not self.waker.closed

        @rule()
        def drain_the_waker(self) -> None:
            assert self.waker.drain() is self.waker_pending
            self.waker_pending = False

        @precondition(lambda self: not self.waker.closed)
        @rule()
        def close_the_waker(self) -> None:
            self.waker.close()
            self.waker_pending = False

        # --- Dispatchers ----------------------------------------------------------------------

        @precondition(lambda self: len(self.gen.open_dispatchers()) < 4)
        @rule(from_thread=st.booleans())
        def new_dispatcher(self, from_thread: bool) -> None:
            made: list[aiowake.Dispatcher] = []
            loop = self.gen.loop
            if from_thread:
                self._in_thread(lambda: made.append(aiowake.Dispatcher(loop)))
            else:
                made.append(aiowake.Dispatcher(loop))
            self.gen.dispatchers.extend(made)

        @precondition(lambda self: self.gen.dispatchers)
        @rule(i=IDX, method=POST_METHODS, n=st.integers(1, 5))
        def post_from_the_test_thread(self, i: int, method: str, n: int) -> None:
            gen = self.gen
            d = pick(gen.dispatchers, i)
            # One sequence per Dispatcher for all the test thread's posts: order across steps.
            name = f"test-thread/dispatcher-{gen.dispatchers.index(d)}"
            prod = gen.record.producers.get(name) or gen.record.producer(name)
            for _ in range(n):
                accepted = post_one(d, method, gen.record, prod, prod.accepted)
                assert accepted is not d.closed, f"{method} on {d!r}: accepted={accepted}"
                prod.accepted += accepted

        @precondition(lambda self: self.gen.dispatchers)
        @rule(i=IDX, method=POST_METHODS, threads=st.integers(2, 4), n=st.integers(1, 150))
        def post_from_workers(self, i: int, method: str, threads: int, n: int) -> None:
            """Several workers at once, the loop idle (a post then never waits for it)."""
            gen = self.gen
            d = pick(gen.dispatchers, i)
            closed = d.closed
            prods = [gen.record.producer(self._name("worker-")) for _ in range(threads)]

            def produce(k: int) -> None:
                prod = prods[k]
                for seq in range(n):
                    accepted = post_one(d, method, gen.record, prod, seq)
                    assert accepted is not closed, f"{method} on {d!r}: accepted={accepted}"
                    prod.accepted += accepted

            Workers(self.failures, threads, produce).join()

        @rule(
            i=IDX,
            method=POST_METHODS,
            threads=st.integers(1, 4),
            n=st.integers(1, 150),
            own=st.booleans(),
        )
        def post_from_workers_while_the_loop_runs(
            self, i: int, method: str, threads: int, n: int, own: bool
        ) -> None:
            """Workers post while the loop runs; with *own*, each makes its own Dispatcher (the
            loop then registers the channel, if new), posts, and closes it (the last close of
            the channel racing its own posts' batch)."""
            gen = self.gen
            shared = gen.open_dispatchers()
            d = None if own or not shared else pick(shared, i)
            prods = [gen.record.producer(self._name("running-")) for _ in range(threads)]

            def produce(k: int) -> None:
                mine = aiowake.Dispatcher(gen.loop) if d is None else d
                try:
                    prod = prods[k]
                    for seq in range(n):
                        assert post_one(mine, method, gen.record, prod, seq), f"refused: {mine!r}"
                        prod.accepted += 1
                finally:
                    if d is None:
                        mine.close()

            workers = Workers(self.failures, threads, produce)

            async def settle() -> None:
                await workers.join_async()
                await self._settled()

            self._run(settle())
            self._check_settled()

        @precondition(lambda self: self.gen.open_dispatchers())
        @rule(
            i=IDX,
            threads=st.integers(2, 4),
            closer=st.sampled_from(["test thread", "worker", "task"]),
        )
        def close_while_workers_post(self, i: int, threads: int, closer: str) -> None:
            """Workers post (try_post, counting the accepted) while the Dispatcher is closed:
            every accepted post runs (issue 17, #3)."""
            gen = self.gen
            d = pick(gen.open_dispatchers(), i)
            rec = gen.record
            prods = [rec.producer(self._name("racing-")) for _ in range(threads)]

            def produce(k: int) -> None:
                if k == threads:  # the closing worker
                    d.close()
                    return
                prod = prods[k]
                for seq in range(RACE_POSTS):
                    if not d.try_post(rec.run, prod, seq):
                        return
                    prod.accepted += 1

            if closer == "worker":
                Workers(self.failures, threads + 1, produce).join()
            elif closer == "test thread":
                workers = Workers(self.failures, threads, produce, extra=1)
                workers.barrier.wait(GUARD)
                d.close()
                workers.join()
            else:
                workers = Workers(self.failures, threads, produce, extra=1)

                async def close_in_a_task() -> None:
                    await asyncio.to_thread(workers.barrier.wait, GUARD)
                    d.close()
                    await workers.join_async()
                    await self._settled()

                self._run(close_in_a_task())
                self._check_settled()
            assert d.closed

        @precondition(lambda self: self.gen.open_dispatchers())
        @rule(i=IDX, from_thread=st.booleans())
        def close_dispatcher(self, i: int, from_thread: bool) -> None:
            d = pick(self.gen.open_dispatchers(), i)
            self._in_thread(d.close) if from_thread else d.close()
            assert d.closed
            d.close()  # idempotent

        @rule(n=st.integers(0, 5))
        def abandon_a_dispatcher(self, n: int) -> None:
            """An unclosed Dispatcher in a reference cycle, with posts queued: the collector
            finalizes it wherever it strikes; what it accepted still runs."""
            gen = self.gen
            prod = gen.record.producer(self._name("abandoned-"))
            cycle: list[object] = [aiowake.Dispatcher(gen.loop)]
            cycle.append(cycle)
            d = cycle[0]
            assert isinstance(d, aiowake.Dispatcher)
            for seq in range(n):
                d.post(gen.record.run, prod, seq)
                prod.accepted += 1
            del d, cycle

        # --- Events ---------------------------------------------------------------------------

        @precondition(lambda self: len(self.gen.events) < 3)
        @rule()
        def new_event(self) -> None:
            self.gen.events.append(EventModel())

        @precondition(lambda self: self.gen.events)
        @rule(e=IDX, n=st.integers(1, 3))
        def start_waiters(self, e: int, n: int) -> None:
            gen = self.gen
            em = pick(gen.events, e)
            for _ in range(n):
                k = self._pid()
                em.live[k] = task = gen.loop.create_task(em.event.wait())
                gen.tasks.append(task)
                if em.is_set:
                    em.should_be_done.add(k)
            self._iterations(1)  # each takes its first step: from then on it waits (or is done)

        @precondition(lambda self: self.gen.events)
        @rule(e=IDX, by=st.sampled_from(["test thread", "worker", "workers", "running"]))
        def set_event(self, e: int, by: str) -> None:
            em = pick(self.gen.events, e)
            if by == "test thread":
                em.event.set()
            elif by == "worker":
                self._in_thread(em.event.set)
            elif by == "workers":
                Workers(self.failures, 3, lambda _: em.event.set()).join()
            else:  # a worker sets it while the loop runs, blocked in its poll or not
                waiting = list(em.live.values())
                workers = Workers(self.failures, 1, lambda _: em.event.set())

                async def until_woken() -> None:
                    if waiting:
                        _, pending = await asyncio.wait(waiting, timeout=GUARD)
                        assert not pending, f"hung: {len(pending)} Event waiters never woke"
                    await workers.join_async()

                self._run(until_woken())
            em.is_set = True
            em.should_be_done |= set(em.live)

        @precondition(lambda self: self.gen.events)
        @rule(e=IDX)
        def clear_event(self, e: int) -> None:
            em = pick(self.gen.events, e)
            em.event.clear()
            em.is_set = False

        @precondition(lambda self: any(em.live for em in self.gen.events))
        @rule(e=IDX)
        def cancel_a_waiter(self, e: int) -> None:
            em = pick([em for em in self.gen.events if em.live], e)
            k = next(iter(em.live))
            em.live.pop(k).cancel()
            em.should_be_done.discard(k)

        @rule()
        def abandon_an_event_waiter(self) -> None:
            """A task left waiting on an Event nothing else refers to: the collector finalizes
            it at whatever bytecode of whichever thread, and its wait's ``finally`` gives the
            channel use back there (issue 17, #2)."""

            async def abandon() -> None:
                ev = aiowake.Event()
                task = asyncio.ensure_future(ev.wait())
                await asyncio.sleep(0)
                assert not task.done()  # waiting; and nothing but the collector ends it

            self._run(abandon())
            self.gen.abandoned += 1

        # --- Queues ---------------------------------------------------------------------------

        @precondition(lambda self: len(self.gen.queues) < 3)
        @rule(maxsize=st.sampled_from([0, 1, 3]))
        def new_queue(self, maxsize: int) -> None:
            self.gen.queues.append(QueueModel(maxsize))

        @precondition(lambda self: self.gen.queues)
        @rule(qi=IDX, n=st.integers(1, 4), face=st.sampled_from(["sync_q", "async_q"]))
        def put_from_the_test_thread(self, qi: int, n: int, face: str) -> None:
            qm = pick(self.gen.queues, qi)
            put_nowait = getattr(qm.q, face).put_nowait
            pid = self._pid()
            for seq in range(n):
                full = 0 < qm.maxsize <= qm.q.sync_q.qsize()
                try:
                    put_nowait((pid, seq))
                except (SyncQueueShutDown, AsyncQueueShutDown):
                    assert qm.shut
                    return
                except (SyncQueueFull, asyncio.QueueFull):
                    assert full, "queue.Full, with room"
                    assert not qm.shut
                    return
                assert not qm.shut, "a put accepted after shutdown"
                assert not full, "a put beyond maxsize"
                qm.put.append((pid, seq))

        @precondition(lambda self: self.gen.queues)
        @rule(qi=IDX, n=st.integers(1, 4), face=st.sampled_from(["sync_q", "async_q"]))
        def get_from_the_test_thread(self, qi: int, n: int, face: str) -> None:
            qm = pick(self.gen.queues, qi)
            side = getattr(qm.q, face)
            for _ in range(n):
                empty = qm.q.sync_q.empty()
                try:
                    item = side.get_nowait()
                except (SyncQueueShutDown, AsyncQueueShutDown):
                    assert qm.shut
                    assert empty, "ShutDown with items left"
                    return
                except (SyncQueueEmpty, asyncio.QueueEmpty):
                    assert empty, "queue.Empty with items left"
                    assert not qm.shut
                    return
                qm.got.append(item)
                side.task_done()

        @precondition(lambda self: self.gen.open_queues())
        @rule(qi=IDX, threads=st.integers(1, 3), n=st.integers(1, 60))
        def threads_put_a_task_gets(self, qi: int, threads: int, n: int) -> None:
            """Workers put (blocking while full), a task gets, until join() says all is done."""
            qm = pick(self.gen.open_queues(), qi)
            q = qm.q
            pids = [self._pid() for _ in range(threads)]

            def produce(k: int) -> None:
                for seq in range(n):
                    q.sync_q.put((pids[k], seq), timeout=GUARD)  # queue.Full: hung
                    qm.put.append((pids[k], seq))

            workers = Workers(self.failures, threads, produce)

            async def consume() -> None:
                order = OrderCheck()

                async def getter() -> None:
                    while True:
                        item = await q.async_q.get()
                        order.see(item)
                        qm.got.append(item)
                        q.async_q.task_done()

                task = asyncio.ensure_future(getter())
                self.gen.tasks.append(task)
                await workers.join_async()
                try:
                    await asyncio.wait_for(q.async_q.join(), GUARD)
                except TimeoutError:
                    raise AssertionError(f"hung: {q!r}: join() never returned") from None
                finally:
                    task.cancel()
                    await asyncio.wait({task}, timeout=GUARD)
                assert task.cancelled(), task

            self._run(consume())

        @precondition(lambda self: self.gen.open_queues())
        @rule(qi=IDX, threads=st.integers(1, 3), n=st.integers(1, 60))
        def a_task_puts_threads_get(self, qi: int, threads: int, n: int) -> None:
            """A task puts (waiting while full), workers get until each takes a stop item."""
            qm = pick(self.gen.open_queues(), qi)
            q = qm.q
            pid, stop = self._pid(), self._pid()

            def consume(k: int) -> None:
                order = OrderCheck()
                while True:
                    item = q.sync_q.get(timeout=GUARD)  # queue.Empty: hung
                    q.sync_q.task_done()
                    if item[0] == stop:
                        return
                    order.see(item)
                    qm.got.append(item)

            workers = Workers(self.failures, threads, consume)

            async def produce() -> None:
                for seq in range(threads * n):
                    await asyncio.wait_for(q.async_q.put((pid, seq)), GUARD)
                    qm.put.append((pid, seq))
                for k in range(threads):
                    await asyncio.wait_for(q.async_q.put((stop, k)), GUARD)
                await workers.join_async()
                await asyncio.wait_for(q.async_q.join(), GUARD)

            self._run(produce())

        @precondition(lambda self: self.gen.open_queues())
        @rule(
            qi=IDX,
            how=st.sampled_from(["shutdown", "shutdown(immediate=True)", "close", "aclose"]),
            waiters=st.sampled_from(["none", "getters", "putters"]),
            drain_first=st.booleans(),
            closer=st.sampled_from(["test thread", "worker", "task"]),
        )
        def close_queue(
            self, qi: int, how: str, waiters: str, drain_first: bool, closer: str
        ) -> None:
            """Shut down or close a queue, maybe with threads and tasks waiting in get() (the
            queue drained) or put() (the queue full): every one of them is released with the
            face's ShutDown, none hangs."""
            gen = self.gen
            qm = pick(gen.open_queues(), qi)
            q = qm.q
            if waiters == "putters" and qm.maxsize <= 0:
                waiters = "none"  # an unbounded queue never makes a putter wait
            if how == "aclose":
                closer = "task"
            drained = drain_first or waiters == "getters"
            if drained:
                self._drain(qm)
            pid = self._pid()
            seq = 0
            if waiters == "putters":
                while True:
                    try:
                        q.sync_q.put_nowait((pid, seq))
                    except SyncQueueFull:
                        break
                    qm.put.append((pid, seq))
                    seq += 1
            outcomes: list[str] = []

            def close_it() -> None:
                if how == "shutdown":
                    q.shutdown()
                elif how == "shutdown(immediate=True)":
                    q.shutdown(immediate=True)
                else:
                    q.close()

            def thread_waiter(k: int) -> None:
                if k == 2:  # the closing worker
                    close_it()
                    return
                try:
                    if waiters == "getters":
                        item = q.sync_q.get(timeout=GUARD)
                        qm.got.append(item)
                        q.sync_q.task_done()
                    else:
                        q.sync_q.put((pid, seq + 1 + k), timeout=GUARD)
                        qm.put.append((pid, seq + 1 + k))
                    outcomes.append("returned")
                except SyncQueueShutDown:
                    outcomes.append("shut down")
                except (SyncQueueEmpty, SyncQueueFull):
                    outcomes.append("hung")

            async def task_waiter(k: int) -> None:
                try:
                    if waiters == "getters":
                        item = await q.async_q.get()
                        qm.got.append(item)
                        q.async_q.task_done()
                    else:
                        await q.async_q.put((pid, seq + 3 + k))
                        qm.put.append((pid, seq + 3 + k))
                    outcomes.append("returned")
                except AsyncQueueShutDown:
                    outcomes.append("shut down")

            tasks: list[asyncio.Task[None]] = []
            n_waiters = 0
            if waiters != "none":
                tasks = [gen.loop.create_task(task_waiter(k)) for k in range(2)]
                gen.tasks.extend(tasks)
                self._iterations(1)  # they wait now
                n_waiters = 4
            n_threads = (2 if waiters != "none" else 0) + (closer == "worker")
            if closer == "worker" and waiters == "none":
                workers = Workers(self.failures, 1, lambda _: close_it(), extra=1)
            else:
                workers = Workers(self.failures, n_threads, thread_waiter, extra=1)
            workers.barrier.wait(GUARD)
            if closer == "test thread":
                close_it()

            async def finish() -> None:
                if closer == "task":
                    if how == "aclose":
                        await asyncio.wait_for(q.aclose(), GUARD)
                    else:
                        close_it()
                if tasks:
                    _, pending = await asyncio.wait(tasks, timeout=GUARD)
                    assert not pending, f"hung: {len(pending)} tasks still waiting on {q!r}"
                await workers.join_async()

            self._run(finish())
            assert q.closed
            assert outcomes == ["shut down"] * n_waiters, outcomes
            qm.shut = True
            with pytest.raises(SyncQueueShutDown):
                q.sync_q.put_nowait((pid, -1))
            with pytest.raises(AsyncQueueShutDown):
                q.async_q.put_nowait((pid, -1))
            immediate = how != "shutdown"
            if not immediate:
                self._drain(qm)  # a plain shutdown leaves the items to get
            qm.exact = not immediate or (drained and waiters != "putters")
            qm.check(qm.exact)
            assert q.sync_q.qsize() == 0
            assert q.sync_q.unfinished_tasks == 0

        # --- the loop -------------------------------------------------------------------------

        @rule(n=st.integers(1, 5))
        def run_a_few_iterations(self, n: int) -> None:
            self._iterations(n)

        @rule()
        def settle(self) -> None:
            self._settle()

        @precondition(lambda self: self.gen.open_dispatchers())
        @rule(i=IDX, n=st.integers(0, 100))
        def run_until_a_worker_stops_it(self, i: int, n: int) -> None:
            """run_forever(); a worker posts, then posts loop.stop: what it posted before has
            run when run_forever() returns."""
            gen = self.gen
            loop = gen.loop
            d = pick(gen.open_dispatchers(), i)
            prod = gen.record.producer(self._name("stopper-"))

            def produce(_: int) -> None:
                for seq in range(n):
                    assert d.try_post(gen.record.run, prod, seq)
                    prod.accepted += 1
                d.post(loop.stop)

            fired: list[bool] = []

            def guard() -> None:
                fired.append(True)
                loop.stop()

            timer = loop.call_later(GUARD, guard)
            workers = Workers(self.failures, 1, produce)
            loop.run_forever()
            timer.cancel()
            workers.join()
            assert not fired, "hung: the worker's loop.stop never came"
            assert prod.ran == list(range(n)), f"ran {len(prod.ran)} of {n} before the stop"

        @rule(
            order=st.sampled_from(["dispatchers first", "loop first", "racing closer"]),
            racing_posts=st.booleans(),
            drain_queues=st.booleans(),
        )
        def stop_and_close_the_loop(
            self, order: str, racing_posts: bool, drain_queues: bool
        ) -> None:
            self._end_gen(order, racing_posts, drain_queues)
            self.gen = Gen(factory)

        def _end_gen(self, order: str, racing_posts: bool, drain_queues: bool) -> None:
            """Close the loop and check that it, and all it held, is freed."""
            ref, record, handler, abandoned = self._close_gen(order, racing_posts, drain_queues)
            del self.gen
            gc.collect()  # the cycles, and the tasks abandoned mid-wait
            self.records.append(record)
            handler.check(record.failed, abandoned)
            loop = ref()
            assert loop is None, f"a closed loop is still alive, held by {_holders(loop)}"
            leaked = open_fds() - self.fds_base
            assert not leaked, f"descriptors leaked: {sorted(leaked)}"

        def _close_gen(
            self, order: str, racing_posts: bool, drain_queues: bool
        ) -> tuple[weakref.ref[asyncio.AbstractEventLoop], Record, Handler, int]:
            gen = self.gen
            loop = gen.loop
            rec = gen.record
            # The tasks end first, as asyncio.run() ends them.
            pending = [t for t in gen.tasks if not t.done()]
            for t in pending:
                t.cancel()
            if pending:
                self._run(asyncio.wait(pending, timeout=GUARD))
                hung = [t for t in pending if not t.done()]
                assert not hung, f"hung: {len(hung)} tasks never finished being cancelled"
            for em in gen.events:
                em.live.clear()
            for qm in gen.queues:
                if drain_queues:
                    self._drain(qm)
                if not qm.shut:
                    qm.q.close()
                    qm.shut = True
                    qm.exact = drain_queues
                qm.check(qm.exact)
            self._run(loop.shutdown_default_executor())
            racers = None
            shared = gen.open_dispatchers()
            if racing_posts and shared:
                prods = [rec.producer(self._name("closing-")) for _ in range(3)]

                def post_until_refused(k: int) -> None:
                    d = pick(shared, k)
                    for seq in range(RACE_POSTS):
                        if not d.try_post(rec.run, prods[k], seq):
                            return
                        prods[k].accepted += 1

                racers = Workers(self.failures, 3, post_until_refused, extra=1)
                racers.barrier.wait(GUARD)
            if order == "dispatchers first":  # the documented order
                for d in gen.dispatchers:
                    d.close()
                loop.close()
            elif order == "loop first":
                loop.close()
                for d in gen.dispatchers:
                    d.close()
            else:  # a worker closes them while the loop stops and closes (issue 17, #6)
                # The close runs on the worker once the loop has stopped, and the loop's thread
                # closes the loop between its look and its calls: close() must not raise (it
                # did, in about one race in ten on stock asyncio, before the fix).
                go = threading.Event()

                def close_all(_: int) -> None:
                    go.wait(GUARD)
                    for d in gen.dispatchers:
                        d.close()

                closer = Workers(self.failures, 1, close_all)

                async def stop_soon() -> None:
                    go.set()
                    await asyncio.sleep(0)

                self._run(stop_soon())
                loop.close()
                closer.join()
            if racers is not None:
                racers.join()
            rec.closed = True
            for d in gen.dispatchers:
                assert d.closed
                d.close()  # idempotent, also once the loop is closed
                assert d.try_post(rec.run, rec.producer(self._name("late-")), 0) is False
                with pytest.raises(RuntimeError):
                    d.post(print)
            rec.check(all_ran=False)  # what the closed loop did not run, it dropped
            return weakref.ref(loop), rec, gen.handler, gen.abandoned

        # --- fork -----------------------------------------------------------------------------

        @precondition(lambda self: hasattr(os, "fork"))
        @rule(from_thread=st.booleans(), churn=st.booleans())
        def fork(self, from_thread: bool, churn: bool) -> None:
            """The child checks its inherited objects, then uses a fresh loop and objects of its
            own; the parent checks that nothing of the child's reached it."""
            gen = self.gen
            self._settle()  # nothing of the parent's is on its way while the child runs
            d = next(iter(gen.open_dispatchers()), None)
            channel_fd = None if d is None else d._channel._fd
            channel_pending = channel_fd is not None and readable(channel_fd)
            em = next((em for em in gen.events if em.live and not em.is_set), None)
            qm = next((qm for qm in gen.queues if qm.q.sync_q.qsize()), None)
            items = [] if qm is None else qm.left()
            child = functools.partial(
                self._child,
                d,
                None if em is None else em.event,
                None if qm is None else qm.q,
                items,
            )
            stop = threading.Event()
            noise = self._churn(stop) if churn else None
            try:
                status = self._fork_and_wait(child, from_thread)
            finally:
                stop.set()
                if noise is not None:
                    noise[1].close()  # releases its blocked threads
                    noise[0].join()
            assert status == 0, f"the child's checks failed with {status} (see its stderr)"
            if not self.waker.closed:
                assert readable(self.waker) is self.waker_pending, "the child's wake came here"
            if channel_fd is not None:
                assert readable(channel_fd) is channel_pending, "the child's post woke the parent"
            if qm is not None:
                assert qm.left() == items, "the child's gets reached the parent's queue"
                assert qm.q.sync_q.qsize() == len(items)
            self._settle()  # the Event's waiters were not woken by the child's set()

        def _fork_and_wait(self, child: Callable[[], None], from_thread: bool) -> int:
            pids: list[int] = []

            def fork() -> None:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: with threads
                    pid = os.fork()
                if pid == 0:  # pragma: no cover - the child
                    run_child(child)
                pids.append(pid)

            r, w = os.pipe()  # the child's copy of w closes when it exits: end of file
            try:
                self._in_thread(fork) if from_thread else fork()
            finally:
                os.close(w)
            try:
                assert pids, "fork failed"
                [pid] = pids
                exited = readable_within(r, GUARD)
                if not exited:
                    os.kill(pid, signal.SIGKILL)
                _, status = os.waitpid(pid, 0)
            finally:
                os.close(r)
            assert exited, "hung: the forked child"
            return os.waitstatus_to_exitcode(status)

        def _child(
            self,
            d: aiowake.Dispatcher | None,
            event: aiowake.Event | None,
            queue: aiowake.Queue[Item] | None,
            items: list[Item],
        ) -> None:  # pragma: no cover - runs in the child
            w = self.waker
            if w.closed:
                w.wake()  # silent
                assert w.drain() is False
            else:
                assert not readable(w), "the child's Waker starts idle, whatever the parent's"
                w.wake()
                assert readable(w)
                assert w.drain()
                w.wake()  # left pending: the parent checks that it never sees it
            if d is not None:
                ran: list[int] = []
                assert d.try_post(ran.append, 1), "an open Dispatcher accepts posts here"
                assert readable(d._channel._fd), "a post wakes the child's own channel"
                d.close()
                assert d.try_post(ran.append, 2) is False
            if event is not None:
                event.set()  # its waiters are the parent's tasks: the resume stays here
            if queue is not None:
                got: list[Item] = []
                while True:
                    try:
                        got.append(queue.sync_q.get_nowait())
                    except (SyncQueueEmpty, SyncQueueShutDown):
                        break
                assert sorted(got) == items, "the child keeps the inherited items"
            a_fresh_loop_works(factory)

        def _churn(self, stop: threading.Event) -> tuple[Workers, aiowake.Queue[int]]:
            """Threads busy while the fork happens: Wakers made, woken and closed; items passed
            between two threads; garbage for the collector."""
            q: aiowake.Queue[int] = aiowake.Queue(2)

            def work(k: int) -> None:
                try:
                    while not stop.is_set():
                        if k == 0:
                            with aiowake.Waker() as w:
                                w.wake()
                                w.drain()
                        elif k == 1:
                            q.sync_q.put(k, timeout=GUARD)
                            cycle: list[object] = []
                            cycle.append(cycle)
                        else:
                            q.sync_q.get(timeout=GUARD)
                except SyncQueueShutDown:
                    pass  # the step is over

            return Workers(self.failures, 3, work), q

        # --- invariants and the end ----------------------------------------------------------

        @invariant()
        def nothing_lost_twice_reordered_or_hung(self) -> None:
            assert not self.failures, "\n".join(self.failures)
            late = [x for r in self.records for x in r.late]
            assert not late, f"ran after their loop was closed: {late}"
            if not hasattr(self, "gen"):
                return
            gen = self.gen
            gen.record.check(all_ran=False)
            for qm in gen.queues:
                qm.check(exact=False)
            gen.handler.check(gen.record.failed, gen.abandoned)
            if not self.waker.closed:
                assert readable(self.waker) is self.waker_pending

        def teardown(self) -> None:
            failing = sys.exc_info()[0] is not None  # a step failed: clean up, report that
            try:
                if hasattr(self, "gen"):
                    self._end_gen("dispatchers first", racing_posts=False, drain_queues=True)
                self.waker.close()
                gc.collect()
                leaked = open_fds() - self.fds_start
                assert not leaked, f"descriptors leaked: {sorted(leaked)}"
                assert not self.failures, "\n".join(self.failures)
            except BaseException:
                if hasattr(self, "gen") and not self.gen.loop.is_closed():
                    for d in self.gen.dispatchers:
                        d.close()
                    self.gen.loop.close()
                self.waker.close()
                if not failing:
                    raise

    return LifecycleMachine


def _holders(obj: object) -> list[str]:
    return [type(r).__name__ for r in gc.get_referrers(obj)]


@contextmanager
def eager_collector_and_fast_switching() -> Iterator[None]:
    """The collector at its most eager, threads switching as often as they can; restored."""
    threshold = gc.get_threshold()
    interval = sys.getswitchinterval()
    gc.set_threshold(1)
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        sys.setswitchinterval(interval)


@pytest.mark.timeout(RUN_TIMEOUT)
@pytest.mark.parametrize("kind", list(LOOP_FACTORIES))
def test_lifecycle(kind: str) -> None:
    with warnings.catch_warnings():
        # The abandoned Dispatchers' finalizers say so, on whichever thread the collector ran.
        warnings.filterwarnings("ignore", r"unclosed <aiowake\.Dispatcher", ResourceWarning)
        with eager_collector_and_fast_switching():
            run_state_machine_as_test(lifecycle_machine(LOOP_FACTORIES[kind]), settings=SETTINGS)
