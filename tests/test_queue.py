"""aiowake's Queue, LifoQueue and PriorityQueue on stock asyncio (debug mode) and uvloop: both
faces, both directions, bounds, timeouts, cancellation, shutdown and close, cost."""

from __future__ import annotations

import asyncio
import copy
import pickle
import queue
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

import pytest

import aiowake
from aiowake import _channel, _waker
from aiowake._queue import (
    AsyncQueueShutDown,
    LifoQueue,
    PriorityQueue,
    Queue,
    SyncQueueShutDown,
)

from .conftest import open_fds, start_thread

GUARD = 30.0
KINDS = [Queue, LifoQueue, PriorityQueue]

asyncio_tests = [pytest.mark.asyncio, pytest.mark.usefixtures("loop_errors")]


async def blocked(task: asyncio.Future[Any]) -> bool:
    """Let the loop run a few rounds, then say whether *task* is still waiting."""
    for _ in range(5):
        await asyncio.sleep(0)
    return not task.done()


async def until(condition: Callable[[], object]) -> None:
    """Let the loop run until *condition()* holds (another thread's progress); a hang guard."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + GUARD
    while not condition():
        assert loop.time() < deadline, "condition never held"
        await asyncio.sleep(0)


def thread_waits(threads: Any) -> Callable[[], bool]:
    return lambda: len(threads) > 0


def channel_of(loop: asyncio.AbstractEventLoop) -> _channel.Channel | None:
    return _channel._registry.get(id(loop))


def put_range(q: Queue[int], n: int, **kwargs: Any) -> Callable[[], None]:
    """A thread's job: put 0 .. n-1 with ``sync_q.put(i, **kwargs)``."""

    def run() -> None:
        for i in range(n):
            q.sync_q.put(i, **kwargs)

    return run


class Collector:
    """A thread running ``fn()`` whose result (or exception) a task can await."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.fn = fn
        self.result: Any = None
        self.error: BaseException | None = None
        self.thread = start_thread(self._run)

    def _run(self) -> None:
        try:
            self.result = self.fn()
        except BaseException as e:
            self.error = e

    async def join(self) -> Any:
        await asyncio.to_thread(self.thread.join, GUARD)
        assert not self.thread.is_alive()
        return self.result


# --- plain use, no loop -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.__name__)
def test_order_of_each_kind(kind: type[Queue[int]]) -> None:
    q = kind()
    for i in (3, 1, 2):
        q.sync_q.put(i)
    got = [q.sync_q.get_nowait(), q.async_q.get_nowait(), q.sync_q.get(timeout=0)]
    orders: dict[type[Any], list[int]] = {
        Queue: [3, 1, 2],
        LifoQueue: [2, 1, 3],
        PriorityQueue: [1, 2, 3],
    }
    assert got == orders[kind]
    with pytest.raises(queue.Empty):
        q.sync_q.get_nowait()
    with pytest.raises(asyncio.QueueEmpty):
        q.async_q.get_nowait()


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.__name__)
def test_bounds_and_sizes(kind: type[Queue[int]]) -> None:
    q = kind(2)
    assert q.maxsize == q.sync_q.maxsize == q.async_q.maxsize == 2
    assert q.sync_q.empty()
    assert q.async_q.empty()
    assert not q.sync_q.full()
    q.sync_q.put_nowait(1)
    q.async_q.put_nowait(2)
    assert q.sync_q.full()
    assert q.async_q.full()
    assert q.sync_q.qsize() == q.async_q.qsize() == 2
    with pytest.raises(queue.Full):
        q.sync_q.put_nowait(3)
    with pytest.raises(queue.Full):
        q.sync_q.put(3, timeout=0)
    with pytest.raises(queue.Full):
        q.sync_q.put(3, block=False)
    with pytest.raises(asyncio.QueueFull):
        q.async_q.put_nowait(3)
    assert q.sync_q.qsize() == 2
    assert q.sync_q.unfinished_tasks == 2


@pytest.mark.parametrize("maxsize", [0, -1])
def test_maxsize_zero_or_negative_is_unbounded(maxsize: int) -> None:
    q: Queue[int] = Queue(maxsize)
    for i in range(10_000):
        q.sync_q.put_nowait(i)
    assert not q.sync_q.full()
    assert q.sync_q.qsize() == 10_000


@pytest.mark.parametrize("maxsize", [1.5, "3", None])
def test_maxsize_must_be_an_int(maxsize: Any) -> None:
    with pytest.raises(TypeError, match="maxsize must be an int"):
        Queue(maxsize)


@pytest.mark.parametrize("method", ["get", "put"])
def test_bad_timeouts(method: str) -> None:
    q: Queue[int] = Queue(1)
    q.sync_q.put(0)  # full, so put() waits; get() is served at once, and still checks
    if method == "get":
        q.sync_q.get()

    def call(timeout: Any) -> None:
        if method == "get":
            q.sync_q.get(timeout=timeout)
        else:
            q.sync_q.put(1, timeout=timeout)

    for bad in (-1, -0.001, float("nan")):
        with pytest.raises(ValueError, match="'timeout' must be a non-negative number"):
            call(bad)
    with pytest.raises(TypeError, match="'timeout' must be a number or None, not str"):
        call("1")
    # block=False ignores the timeout, as queue.Queue does
    if method == "get":
        with pytest.raises(queue.Empty):
            q.sync_q.get(False, -1)
    else:
        with pytest.raises(queue.Full):
            q.sync_q.put(1, False, -1)


def test_timeouts_expire_and_lose_nothing() -> None:
    q: Queue[int] = Queue(1)
    with pytest.raises(queue.Empty):
        q.sync_q.get(timeout=0.01)
    q.sync_q.put(1)
    with pytest.raises(queue.Full):
        q.sync_q.put(2, timeout=0.01)
    assert q.sync_q.get(timeout=0.01) == 1
    assert q.sync_q.empty()
    assert not q._tgetters
    assert not q._tputters


def test_a_huge_timeout_is_not_an_overflow() -> None:
    q: Queue[int] = Queue()
    t = start_thread(lambda: q.sync_q.put(7))
    assert q.sync_q.get(timeout=sys.float_info.max) == 7
    t.join(GUARD)
    q.sync_q.put(8)
    assert q.sync_q.get(timeout=float("inf")) == 8


def test_blocked_threads_both_ways() -> None:
    """Threads only: a blocked get() is woken by a put, a blocked put() by a get."""
    q: Queue[int] = Queue(1)
    got: list[int] = []
    consumer = start_thread(lambda: got.extend(q.sync_q.get() for _ in range(1000)))
    for i in range(1000):
        q.sync_q.put(i)
    consumer.join(GUARD)
    assert got == list(range(1000))


def test_task_done_and_join_from_threads() -> None:
    q: Queue[int] = Queue()
    for i in range(100):
        q.sync_q.put(i)
    assert q.sync_q.unfinished_tasks == 100

    def worker() -> None:
        while True:
            try:
                q.sync_q.get_nowait()
            except queue.Empty:
                return
            q.sync_q.task_done()

    workers = [start_thread(worker) for _ in range(4)]
    q.sync_q.join()
    assert q.sync_q.unfinished_tasks == 0
    for w in workers:
        w.join(GUARD)
    with pytest.raises(ValueError, match="task_done"):
        q.sync_q.task_done()


def test_task_done_only_for_items_got() -> None:
    """Stricter than queue.Queue (documented): an item not yet got cannot be marked done."""
    q: Queue[int] = Queue()
    q.sync_q.put(1)
    with pytest.raises(ValueError, match="task_done"):
        q.sync_q.task_done()
    q.sync_q.get()
    q.sync_q.task_done()
    q.sync_q.join()


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.__name__)
def test_copy_and_pickle_are_refused(kind: type[Queue[int]]) -> None:
    q = kind()
    for obj in (q, q.sync_q, q.async_q):
        with pytest.raises(TypeError, match="cannot pickle"):
            copy.copy(obj)
        with pytest.raises(TypeError, match="cannot pickle"):
            copy.deepcopy(obj)
        with pytest.raises(TypeError, match="cannot pickle"):
            pickle.dumps(obj)


def test_repr() -> None:
    q: Queue[int] = Queue(3)
    q.sync_q.put(1)
    assert repr(q) == "<aiowake.Queue maxsize=3 qsize=1>"
    assert repr(q.sync_q) == "<aiowake.SyncQueue of <aiowake.Queue maxsize=3 qsize=1>>"
    assert repr(q.async_q).startswith("<aiowake.AsyncQueue of <aiowake.Queue")
    q.shutdown()
    assert repr(q) == "<aiowake.Queue maxsize=3 qsize=1 shut down>"
    q.close()
    assert repr(LifoQueue()) == "<aiowake.LifoQueue maxsize=0 qsize=0>"
    assert repr(q) == "<aiowake.Queue maxsize=3 qsize=0 closed>"


def test_exception_classes() -> None:
    if sys.version_info >= (3, 13):
        assert SyncQueueShutDown is queue.ShutDown
        assert AsyncQueueShutDown is asyncio.QueueShutDown
    else:
        assert issubclass(SyncQueueShutDown, Exception)
        assert issubclass(AsyncQueueShutDown, Exception)
        assert not issubclass(SyncQueueShutDown, AsyncQueueShutDown)
    assert aiowake._queue.SyncQueueEmpty is queue.Empty
    assert aiowake._queue.SyncQueueFull is queue.Full
    assert aiowake._queue.AsyncQueueEmpty is asyncio.QueueEmpty
    assert aiowake._queue.AsyncQueueFull is asyncio.QueueFull


def test_generic() -> None:
    q = Queue[int]()
    assert isinstance(q, Queue)
    assert Queue[int].__origin__ is Queue  # type: ignore[attr-defined]


# --- shutdown and close without a loop ---------------------------------------------------------


def test_shutdown_lets_gets_drain_then_raises() -> None:
    q: Queue[int] = Queue()
    q.sync_q.put(1)
    q.sync_q.put(2)
    q.shutdown()
    assert q.closed
    assert q.sync_q.closed
    assert q.async_q.closed
    with pytest.raises(SyncQueueShutDown):
        q.sync_q.put(3)
    with pytest.raises(AsyncQueueShutDown):
        q.async_q.put_nowait(3)
    assert q.sync_q.get() == 1
    assert q.async_q.get_nowait() == 2
    with pytest.raises(SyncQueueShutDown):
        q.sync_q.get()
    with pytest.raises(AsyncQueueShutDown):
        q.async_q.get_nowait()
    q.sync_q.task_done()
    q.sync_q.task_done()
    q.sync_q.join()


def test_immediate_shutdown_drops_the_items_and_releases_join() -> None:
    q: Queue[int] = Queue()
    for i in range(3):
        q.sync_q.put(i)
    q.sync_q.get()
    joiner = start_thread(q.sync_q.join)
    q.sync_q.shutdown(immediate=True)
    with pytest.raises(SyncQueueShutDown):
        q.sync_q.get(timeout=GUARD)
    assert q.sync_q.unfinished_tasks == 1  # the one got, not yet done
    assert joiner.is_alive() or q.sync_q.unfinished_tasks == 0
    q.sync_q.task_done()
    joiner.join(GUARD)
    assert not joiner.is_alive()


@pytest.mark.parametrize("how", ["close", "shutdown-immediate", "shutdown"])
def test_threads_blocked_in_put_and_get_are_released(how: str) -> None:
    full: Queue[int] = Queue(1)
    full.sync_q.put(0)
    empty: Queue[int] = Queue(1)
    errors: list[BaseException] = []

    def catch(fn: Callable[[], object]) -> Callable[[], None]:
        def run() -> None:
            try:
                fn()
            except BaseException as e:
                errors.append(e)

        return run

    threads = [start_thread(catch(lambda: full.sync_q.put(1))) for _ in range(3)]
    threads += [start_thread(catch(empty.sync_q.get)) for _ in range(3)]
    while len(full._tputters) < 3 or len(empty._tgetters) < 3:
        threading.Event().wait(0.001)  # hang-guarded by pytest-timeout; a progress poll
    for q in (full, empty):
        if how == "close":
            q.close()
        else:
            q.shutdown(immediate=how == "shutdown-immediate")
    for t in threads:
        t.join(GUARD)
        assert not t.is_alive()
    assert len(errors) == 6
    assert all(isinstance(e, SyncQueueShutDown) for e in errors)
    if how == "close":
        assert all("closed" in str(e) for e in errors)
    if how == "shutdown":
        assert full.sync_q.get() == 0  # not immediate: the item stays for the gets


# --- tasks and threads ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.__name__)
@pytest.mark.asyncio
@pytest.mark.usefixtures("loop_errors")
async def test_a_thread_put_wakes_a_waiting_task(kind: type[Queue[int]]) -> None:
    q = kind()
    getter = asyncio.ensure_future(q.async_q.get())
    assert await blocked(getter)
    await asyncio.to_thread(q.sync_q.put, 5)
    assert await asyncio.wait_for(getter, GUARD) == 5
    assert not q._agetters
    assert await _after_next_iteration() is None, "nobody waits: the channel is closed"


async def _after_next_iteration() -> _channel.Channel | None:
    await asyncio.sleep(0)
    return channel_of(asyncio.get_running_loop())


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.__name__)
@pytest.mark.asyncio
@pytest.mark.usefixtures("loop_errors")
async def test_a_task_put_wakes_a_blocked_thread(kind: type[Queue[int]]) -> None:
    q = kind()
    getter = Collector(lambda: q.sync_q.get(timeout=GUARD))
    await until(thread_waits(q._tgetters))
    await q.async_q.put(9)
    assert await getter.join() == 9


@pytest.mark.asyncio
@pytest.mark.usefixtures("loop_errors")
async def test_a_full_queue_blocks_a_thread_until_a_task_gets() -> None:
    q: Queue[int] = Queue(2)
    producer = Collector(put_range(q, 5, timeout=GUARD))
    await until(thread_waits(q._tputters))
    assert q.sync_q.qsize() == 2
    got = [await q.async_q.get() for _ in range(5)]
    await producer.join()
    assert got == list(range(5))


@pytest.mark.asyncio
@pytest.mark.usefixtures("loop_errors")
async def test_a_full_queue_suspends_a_task_until_a_thread_gets() -> None:
    q: Queue[int] = Queue(2)

    async def produce() -> None:
        for i in range(5):
            await q.async_q.put(i)

    producer = asyncio.ensure_future(produce())
    assert await blocked(producer)
    assert q.sync_q.qsize() == 2
    assert len(q._aputters) == 1
    got = await asyncio.to_thread(lambda: [q.sync_q.get(timeout=GUARD) for _ in range(5)])
    await asyncio.wait_for(producer, GUARD)
    assert got == list(range(5))


@pytest.mark.asyncio
@pytest.mark.usefixtures("loop_errors")
async def test_tasks_only_as_with_asyncio_queue() -> None:
    q: Queue[int] = Queue(1)
    got: list[int] = []

    async def consume() -> None:
        for _ in range(100):
            got.append(await q.async_q.get())
            q.async_q.task_done()

    consumer = asyncio.ensure_future(consume())
    for i in range(100):
        await q.async_q.put(i)
    await asyncio.wait_for(q.async_q.join(), GUARD)
    await consumer
    assert got == list(range(100))


@pytest.mark.asyncio
@pytest.mark.usefixtures("loop_errors")
async def test_waiting_tasks_are_served_in_order() -> None:
    q: Queue[int] = Queue()
    getters = [asyncio.ensure_future(q.async_q.get()) for _ in range(5)]
    assert await blocked(getters[-1])

    def put_all() -> None:
        for i in range(5):
            q.sync_q.put(i)

    await asyncio.to_thread(put_all)
    assert await asyncio.wait_for(asyncio.gather(*getters), GUARD) == list(range(5))


@pytest.mark.asyncio
@pytest.mark.usefixtures("loop_errors")
async def test_join_from_a_task_and_a_thread() -> None:
    q: Queue[int] = Queue()
    for i in range(10):
        q.sync_q.put(i)
    task_join = asyncio.ensure_future(q.async_q.join())
    thread_join = Collector(q.sync_q.join)
    assert await blocked(task_join)
    await until(thread_waits(q._tjoiners))

    def work() -> None:
        for _ in range(10):
            q.sync_q.get()
            q.sync_q.task_done()

    await asyncio.to_thread(work)
    await asyncio.wait_for(task_join, GUARD)
    await thread_join.join()
    await q.async_q.join()  # at once now
    with pytest.raises(ValueError, match="task_done"):
        q.async_q.task_done()


@pytest.mark.asyncio
@pytest.mark.usefixtures("loop_errors")
async def test_a_queue_made_in_a_thread_without_a_loop() -> None:
    made: list[Queue[str]] = []
    await asyncio.to_thread(lambda: made.append(Queue()))
    q = made[0]
    await asyncio.to_thread(q.sync_q.put, "a")
    assert await q.async_q.get() == "a"


@pytest.mark.asyncio
@pytest.mark.usefixtures("loop_errors")
async def test_a_task_of_another_loop_is_refused() -> None:
    q: Queue[int] = Queue()
    getter = asyncio.ensure_future(q.async_q.get())
    assert await blocked(getter)  # bound to this loop now

    def other_loop() -> None:
        with pytest.raises(RuntimeError, match="different event loop"):
            asyncio.run(q.async_q.get())
        q.async_q.put_nowait(1)  # what does not wait needs no loop, and binds none

    await asyncio.to_thread(other_loop)
    assert await asyncio.wait_for(getter, GUARD) == 1


# --- cancellation and timeouts ------------------------------------------------------------------


@pytest.mark.parametrize("via", ["thread", "task"])
@pytest.mark.asyncio
@pytest.mark.usefixtures("loop_errors")
async def test_a_cancelled_getter_passes_its_item_on(via: str) -> None:
    """The first getter is woken for the item, then cancelled before it runs: the item goes to
    the next getter, not lost with the cancelled one."""
    q: Queue[int] = Queue()
    first = asyncio.ensure_future(q.async_q.get())
    second = asyncio.ensure_future(q.async_q.get())
    assert await blocked(second)
    if via == "thread":
        # join() holds the loop: the service is posted and not run yet when the cancel comes.
        start_thread(lambda: q.sync_q.put(1)).join(GUARD)
    else:
        q.async_q.put_nowait(1)  # in this task: the first getter's future is set at once
        assert q._agetters[0].done()
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await asyncio.wait_for(second, GUARD) == 1
    assert q.sync_q.empty()
    assert not q._agetters


def test_an_interrupted_thread_getter_passes_its_item_on() -> None:
    """The main thread, blocked in get(), is popped by a notifier (its wake is on the way) and
    then interrupted by a signal handler's exception before it takes the item: the item must
    go to the next thread in line, not wait for another put."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    q: Queue[int] = Queue()
    old = signal.signal(signal.SIGUSR1, handler)
    try:
        main = threading.main_thread().ident or 0

        def notifier_struck_midway() -> None:
            while not q._tgetters:
                threading.Event().wait(0.001)  # a progress poll; pytest-timeout guards it
            q._tgetters.popleft()  # the main thread's lock, popped and not released yet
            other = Collector(lambda: q.sync_q.get(timeout=GUARD))
            while not q._tgetters:
                threading.Event().wait(0.001)
            q._items.append(1)  # the item the notifier was waking the main thread for
            signal.pthread_kill(main, signal.SIGUSR1)
            other.thread.join(GUARD)
            results.append(other.result)

        results: list[object] = []
        helper = start_thread(notifier_struck_midway)
        with pytest.raises(KeyboardInterrupt):
            q.sync_q.get()
        helper.join(GUARD)
        assert results == [1], "the next thread in line got the item"
        assert not q._tgetters
    finally:
        signal.signal(signal.SIGUSR1, old)


@pytest.mark.asyncio
@pytest.mark.usefixtures("loop_errors")
async def test_getters_timing_out_while_a_thread_puts_lose_nothing() -> None:
    q: Queue[int] = Queue()
    n = 2000
    producer = Collector(put_range(q, n))
    got: list[int] = []
    timeouts = 0
    while len(got) + q.sync_q.qsize() < n or producer.thread.is_alive():
        try:
            got.append(await asyncio.wait_for(q.async_q.get(), 0.0001))
        except TimeoutError:
            timeouts += 1
    await producer.join()
    while not q.sync_q.empty():
        got.append(q.sync_q.get_nowait())
    assert got == list(range(n))
    assert not q._agetters


@pytest.mark.asyncio
@pytest.mark.usefixtures("loop_errors")
async def test_threads_timing_out_while_a_task_puts_lose_nothing() -> None:
    q: Queue[int] = Queue()
    n = 2000

    def consume() -> list[int]:
        got: list[int] = []
        while len(got) < n:
            try:
                got.append(q.sync_q.get(timeout=0.0001))
            except queue.Empty:
                pass
        return got

    consumer = Collector(consume)
    for i in range(n):
        q.async_q.put_nowait(i)
        if i % 7 == 0:
            await asyncio.sleep(0)
    assert await consumer.join() == list(range(n))


@pytest.mark.asyncio
@pytest.mark.usefixtures("loop_errors")
async def test_a_cancelled_put_puts_nothing() -> None:
    q: Queue[int] = Queue(1)
    q.sync_q.put(0)
    putter = asyncio.ensure_future(q.async_q.put(1))
    assert await blocked(putter)
    putter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await putter
    assert q.sync_q.get_nowait() == 0
    assert q.sync_q.empty()
    assert not q._aputters


@pytest.mark.asyncio
@pytest.mark.usefixtures("loop_errors")
async def test_a_cancelled_putter_passes_the_room_on() -> None:
    q: Queue[int] = Queue(1)
    q.sync_q.put(0)
    first = asyncio.ensure_future(q.async_q.put(1))
    second = asyncio.ensure_future(q.async_q.put(2))
    assert await blocked(second)
    start_thread(q.sync_q.get).join(GUARD)  # room; the loop has not served it yet
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    await asyncio.wait_for(second, GUARD)
    assert q.sync_q.get_nowait() == 2


# --- shutdown and close with tasks ----------------------------------------------------------


@pytest.mark.parametrize("how", ["close", "shutdown-immediate", "shutdown"])
@pytest.mark.parametrize("from_thread", [False, True], ids=["from-task", "from-thread"])
@pytest.mark.asyncio
@pytest.mark.usefixtures("loop_errors")
async def test_waiters_on_both_sides_are_released(how: str, from_thread: bool) -> None:
    full: Queue[int] = Queue(1)
    full.sync_q.put(0)
    empty: Queue[int] = Queue(1)
    task_waiters: list[asyncio.Future[Any]] = [
        asyncio.ensure_future(full.async_q.put(1)) for _ in range(3)
    ]
    task_waiters += [asyncio.ensure_future(empty.async_q.get()) for _ in range(3)]
    thread_waiters = [Collector(put_range(full, 1, timeout=GUARD)) for _ in range(3)]
    thread_waiters += [Collector(lambda: empty.sync_q.get(timeout=GUARD)) for _ in range(3)]
    assert await blocked(task_waiters[-1])
    await until(lambda: len(full._tputters) == 3 and len(empty._tgetters) == 3)

    def stop() -> None:
        for q in (full, empty):
            if how == "close":
                q.close()
            else:
                q.shutdown(immediate=how == "shutdown-immediate")

    if from_thread:
        await asyncio.to_thread(stop)
    else:
        stop()
    for c in thread_waiters:
        await c.join()
        assert isinstance(c.error, SyncQueueShutDown)
    for t in task_waiters:
        with pytest.raises(AsyncQueueShutDown):
            await asyncio.wait_for(t, GUARD)
    for q in (full, empty):
        assert not q._agetters
        assert not q._aputters
        assert not q._tgetters
        assert not q._tputters
    if how == "close":
        await full.wait_closed()


@pytest.mark.asyncio
@pytest.mark.usefixtures("loop_errors")
async def test_join_is_released_by_an_immediate_shutdown() -> None:
    q: Queue[int] = Queue()
    q.sync_q.put(1)
    joiner = asyncio.ensure_future(q.async_q.join())
    assert await blocked(joiner)
    await asyncio.to_thread(q.shutdown, True)
    await asyncio.wait_for(joiner, GUARD)


@pytest.mark.asyncio
@pytest.mark.usefixtures("loop_errors")
async def test_wait_closed_and_aclose() -> None:
    q: Queue[int] = Queue()
    with pytest.raises(RuntimeError, match="not closed"):
        await q.wait_closed()
    getters = [asyncio.ensure_future(q.async_q.get()) for _ in range(3)]
    assert await blocked(getters[-1])
    await asyncio.to_thread(q.close)
    await asyncio.wait_for(q.wait_closed(), GUARD)
    assert all(g.done() for g in getters), "wait_closed() returns after the wakeups reached them"
    for g in getters:
        with pytest.raises(AsyncQueueShutDown, match="closed"):
            g.result()
    other: Queue[int] = Queue()
    await other.aclose()
    assert other.closed
    await other.aclose()  # idempotent


# --- cost and the loop's batch ------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.usefixtures("loop_errors")
async def test_a_burst_of_thread_puts_costs_one_wakeup(monkeypatch: pytest.MonkeyPatch) -> None:
    writes: list[int] = []
    real_write = _waker._write

    def counting_write(fd: int, data: bytes) -> int:
        writes.append(fd)
        return real_write(fd, data)

    monkeypatch.setattr(_waker, "_write", counting_write)
    q: Queue[int] = Queue()
    n = 10_000

    async def consume() -> list[int]:
        return [await q.async_q.get() for _ in range(n)]

    consumer = asyncio.ensure_future(consume())
    assert await blocked(consumer)

    def burst() -> None:
        for i in range(n):
            q.sync_q.put(i)

    start_thread(burst).join(GUARD)  # holds the loop: the whole burst lands before it runs
    assert len(writes) == 1, f"{len(writes)} wakeup writes for one burst"
    assert await asyncio.wait_for(consumer, GUARD) == list(range(n))


@pytest.mark.asyncio
@pytest.mark.usefixtures("loop_errors")
async def test_puts_while_a_service_is_pending_post_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    q: Queue[int] = Queue()
    getter = asyncio.ensure_future(q.async_q.get())
    assert await blocked(getter)
    posts: list[object] = []
    real_post = _channel.Channel.post

    def counting_post(self: _channel.Channel, job: Any) -> None:
        posts.append(job)
        real_post(self, job)

    monkeypatch.setattr(_channel.Channel, "post", counting_post)
    start_thread(put_range(q, 100)).join(GUARD)
    assert len(posts) == 1
    assert await asyncio.wait_for(getter, GUARD) == 0


@pytest.mark.asyncio
@pytest.mark.usefixtures("loop_errors")
async def test_a_getter_resumes_inside_the_batch() -> None:
    """The waiting task runs where the put sits among the loop's posts: a callback posted before
    it runs before the task, one posted after runs after."""
    loop = asyncio.get_running_loop()
    q: Queue[str] = Queue()
    order: list[str] = []

    async def getter() -> None:
        order.append(await q.async_q.get())

    task = asyncio.ensure_future(getter())
    assert await blocked(task)
    with aiowake.Dispatcher(loop) as dispatcher:

        def post_put_post() -> None:
            dispatcher.call_soon_threadsafe(order.append, "before")
            q.sync_q.put("getter")
            dispatcher.call_soon_threadsafe(order.append, "after")

        start_thread(post_put_post).join(GUARD)
        await asyncio.wait_for(task, GUARD)
        for _ in range(3):
            await asyncio.sleep(0)
    assert order == ["before", "getter", "after"]


@pytest.mark.asyncio
@pytest.mark.usefixtures("loop_errors")
async def test_descriptors_are_o1_per_loop_whatever_the_number_of_queues() -> None:
    loop = asyncio.get_running_loop()
    before = open_fds()
    queues: list[Queue[int]] = [Queue() for _ in range(2000)]
    getters = [asyncio.ensure_future(q.async_q.get()) for q in queues]
    assert await blocked(getters[-1])
    during = open_fds()
    assert len(during - before) <= 2, f"O(1) descriptors: {sorted(during - before)}"

    def put_all() -> None:
        for i, q in enumerate(queues):
            q.sync_q.put(i)

    await asyncio.to_thread(put_all)
    assert await asyncio.wait_for(asyncio.gather(*getters), GUARD) == list(range(2000))
    assert await _after_next_iteration() is None
    assert channel_of(loop) is None
    assert open_fds() == before


@pytest.mark.asyncio
@pytest.mark.usefixtures("loop_errors")
async def test_a_queue_nobody_waits_on_holds_no_channel() -> None:
    loop = asyncio.get_running_loop()
    q: Queue[int] = Queue()
    await asyncio.to_thread(q.sync_q.put, 1)
    assert await q.async_q.get() == 1  # no wait: served at once
    assert channel_of(loop) is None
    getter = asyncio.ensure_future(q.async_q.get())
    assert await blocked(getter)
    assert channel_of(loop) is not None
    await asyncio.to_thread(q.sync_q.put, 2)
    assert await getter == 2
    assert await _after_next_iteration() is None


@pytest.mark.asyncio
@pytest.mark.usefixtures("loop_errors")
async def test_the_service_survives_its_channel_closing() -> None:
    """A service posted to a channel that then closed (its last waiter left) may run late or
    never: the next wait, on a new channel, must be served all the same."""
    loop = asyncio.get_running_loop()
    q: Queue[int] = Queue()
    getter = asyncio.ensure_future(q.async_q.get())
    assert await blocked(getter)
    old = channel_of(loop)
    assert old is not None
    token = q._take_svc()  # as a put from a thread would, just before the waiter leaves
    assert token is not None
    getter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await getter
    assert await _after_next_iteration() is None
    again = asyncio.ensure_future(q.async_q.get())
    assert await blocked(again)
    assert channel_of(loop) is not old
    await asyncio.to_thread(q.sync_q.put, 3)
    assert await asyncio.wait_for(again, GUARD) == 3


def test_puts_after_the_loop_closed_under_its_waiting_tasks(
    loop_factory: Callable[[], asyncio.AbstractEventLoop], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A loop closed while its tasks still wait on the queue: threads go on using the queue, and
    no put fails because the channel refuses the closed loop."""
    loop = loop_factory()
    q: Queue[int] = Queue()
    task = loop.create_task(q.async_q.get())
    loop.run_until_complete(asyncio.sleep(0))
    loop.close()  # the task is left pending for good
    refused = []

    def refusing_post(self: _channel.Channel, job: Any) -> None:
        refused.append(job)
        raise RuntimeError("Event loop is closed")

    monkeypatch.setattr(_channel.Channel, "post", refusing_post)
    start_thread(put_range(q, 3)).join(GUARD)
    q.sync_q.put(3)
    assert [q.sync_q.get() for _ in range(4)] == [0, 1, 2, 3]
    assert refused, "the put did try the channel"
    assert not task.done()
    task._log_destroy_pending = False  # type: ignore[attr-defined]


@pytest.mark.parametrize("cancelled", [0, 1, 2])
def test_waiting_tasks_get_items_in_the_order_they_began_to_wait(
    loop_factory: Callable[[], asyncio.AbstractEventLoop], cancelled: int
) -> None:
    """Items put from outside the loop while one of three waiting getters is cancelled: the
    cancelled one passes its turn on, and the others get the items oldest first. (The service
    used to resume a task behind one that the pass-on had already woken, which then found the
    queue empty and went to the back of the line.)"""
    loop = loop_factory()

    async def settle() -> None:
        for _ in range(10):
            await asyncio.sleep(0)

    try:
        q: aiowake.Queue[str] = aiowake.Queue()
        getters = []
        for _ in range(3):
            getters.append(loop.create_task(q.async_q.get()))
            loop.run_until_complete(settle())
        q.sync_q.put_nowait("first")
        q.sync_q.put_nowait("second")
        getters[cancelled].cancel()
        loop.run_until_complete(settle())
        got = [g.result() for i, g in enumerate(getters) if i != cancelled]
        assert got == ["first", "second"]
        assert getters[cancelled].cancelled()
    finally:
        loop.close()
