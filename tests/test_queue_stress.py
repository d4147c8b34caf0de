"""Queue under load, on stock asyncio (debug mode) and uvloop: exactly once and in each producer's
order with 8 threads, in each direction and both at once; bounded queues stay bounded."""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from aiowake._queue import Queue

from .conftest import start_thread

GUARD = 60.0
THREADS = 8
PER_THREAD = 50_000

pytestmark = [pytest.mark.asyncio, pytest.mark.usefixtures("loop_errors")]


@pytest.fixture(autouse=True)
def fast_switching() -> Iterator[None]:
    """Threads switch as often as the interpreter allows: the interleavings a test wants."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    yield
    sys.setswitchinterval(old)


class Threads:
    """Worker threads whose exceptions fail the test; a task awaits their end."""

    def __init__(self, n: int, target: Callable[[int], object]) -> None:
        self.errors: list[BaseException] = []
        self.start = threading.Barrier(n)

        def run(i: int) -> None:
            try:
                self.start.wait(GUARD)
                target(i)
            except BaseException as e:
                self.errors.append(e)

        self.threads = [start_thread(lambda i=i: run(i)) for i in range(n)]  # type: ignore[misc]

    async def join(self) -> None:
        for t in self.threads:
            await asyncio.to_thread(t.join, GUARD)
            assert not t.is_alive()
        assert not self.errors, self.errors


class OrderCheck:
    """Per consumer: each producer's items arrive in increasing order."""

    def __init__(self, producers: int) -> None:
        self.last = [-1] * producers

    def see(self, item: tuple[int, int]) -> None:
        producer, seq = item
        assert seq > self.last[producer], f"producer {producer}: {seq} after {self.last[producer]}"
        self.last[producer] = seq


@pytest.mark.parametrize("maxsize", [0, 1024])
async def test_eight_threads_into_one_task(maxsize: int) -> None:
    q: Queue[tuple[int, int]] = Queue(maxsize)

    def produce(p: int) -> None:
        put = q.sync_q.put
        for i in range(PER_THREAD):
            put((p, i))

    producers = Threads(THREADS, produce)
    expected = [0] * THREADS
    get = q.async_q.get
    for _ in range(THREADS * PER_THREAD):
        p, i = await get()
        assert expected[p] == i, "exactly once, in each producer's order"
        expected[p] = i + 1
        assert len(q._items) <= maxsize or not maxsize
    await producers.join()
    assert expected == [PER_THREAD] * THREADS
    assert q.sync_q.empty()


@pytest.mark.parametrize("maxsize", [0, 1024])
async def test_one_task_into_eight_threads(maxsize: int) -> None:
    q: Queue[tuple[int, int] | None] = Queue(maxsize)
    got: list[list[tuple[int, int]]] = [[] for _ in range(THREADS)]

    def consume(c: int) -> None:
        check = OrderCheck(1)
        mine = got[c]
        get = q.sync_q.get
        while (item := get(timeout=GUARD)) is not None:
            check.see(item)
            mine.append(item)

    consumers = Threads(THREADS, consume)
    put = q.async_q.put
    for i in range(THREADS * PER_THREAD):
        await put((0, i))
    for _ in range(THREADS):
        await put(None)
    await consumers.join()
    items = sorted(i for mine in got for _, i in mine)
    assert items == list(range(THREADS * PER_THREAD)), "each item exactly once"


async def test_both_directions_at_once_on_one_bounded_queue() -> None:
    """8 threads and 8 tasks all put and get on one queue: every item once, in order per
    producer as each consumer sees it."""
    q: Queue[tuple[int, int] | None] = Queue(256)
    per = PER_THREAD // 4  # 16 producers in all, each also consuming
    producers = 2 * THREADS
    received: list[list[int]] = [[] for _ in range(producers)]
    lock = threading.Lock()
    consumed_by_threads: list[tuple[int, int]] = []
    consumed_by_tasks: list[tuple[int, int]] = []

    def thread_side(t: int) -> None:
        check = OrderCheck(producers)
        mine: list[tuple[int, int]] = []
        for i in range(per):
            q.sync_q.put((t, i), timeout=GUARD)
            try:
                item = q.sync_q.get_nowait()
            except Exception:
                continue
            assert item is not None
            check.see(item)
            mine.append(item)
        with lock:
            consumed_by_threads.extend(mine)

    async def task_side(t: int) -> None:
        check = OrderCheck(producers)
        for i in range(per):
            await q.async_q.put((t, i))
            try:
                item = q.async_q.get_nowait()
            except Exception:
                continue
            assert item is not None
            check.see(item)
            consumed_by_tasks.append(item)

    threads = Threads(THREADS, thread_side)
    tasks = [asyncio.ensure_future(task_side(THREADS + t)) for t in range(THREADS)]
    await asyncio.wait_for(asyncio.gather(*tasks), GUARD)
    await threads.join()
    rest = []
    while not q.sync_q.empty():
        item = q.sync_q.get_nowait()
        assert item is not None
        rest.append(item)
    everything = consumed_by_threads + consumed_by_tasks + rest
    for p, i in everything:
        received[p].append(i)
    for p in range(producers):
        assert sorted(received[p]) == list(range(per)), f"producer {p}: each item exactly once"


async def test_both_directions_at_once_blocking() -> None:
    """Threads feed a task through one queue while the task feeds threads through the same
    queue's other face... of a second queue, all blocking and bounded."""
    up: Queue[tuple[int, int]] = Queue(64)
    down: Queue[tuple[int, int] | None] = Queue(64)
    per = PER_THREAD // 5
    down_got: list[int] = []
    lock = threading.Lock()

    def thread_side(t: int) -> None:
        check = OrderCheck(1)
        mine = []
        for i in range(per):
            up.sync_q.put((t, i))
        while (item := down.sync_q.get(timeout=GUARD)) is not None:
            check.see(item)
            mine.append(item[1])
        with lock:
            down_got.extend(mine)

    threads = Threads(THREADS, thread_side)

    async def feed_down() -> None:
        for i in range(THREADS * per):
            await down.async_q.put((0, i))
        for _ in range(THREADS):
            await down.async_q.put(None)

    feeder = asyncio.ensure_future(feed_down())
    expected = [0] * THREADS
    for _ in range(THREADS * per):
        p, i = await up.async_q.get()
        assert expected[p] == i
        expected[p] = i + 1
    await asyncio.wait_for(feeder, GUARD)
    await threads.join()
    assert sorted(down_got) == list(range(THREADS * per))


async def test_a_fast_thread_producer_is_held_to_maxsize() -> None:
    """The producer outruns the task; the queue (and the channel's backlog) stay bounded.
    (That a full queue blocks the thread is test_queue.py's, deterministically.)"""
    maxsize = 16
    q: Queue[int] = Queue(maxsize)
    n = 20_000

    def produce(_: int) -> None:
        for i in range(n):
            q.sync_q.put(i)

    producer = Threads(1, produce)
    loop = asyncio.get_running_loop()
    for i in range(n):
        assert await q.async_q.get() == i
        size = q.sync_q.qsize()
        assert size <= maxsize
        channel = q._channel
        if channel is not None:
            assert len(channel._queue) <= 2, "one service job at a time"
        if i % 3 == 0:
            await asyncio.sleep(0)  # the consumer is the slow side
    await producer.join()
    assert loop.is_running()


async def test_a_fast_task_producer_is_held_to_maxsize() -> None:
    maxsize = 16
    q: Queue[int] = Queue(maxsize)
    n = 20_000
    sizes: list[int] = []

    def consume(_: int) -> None:
        for i in range(n):
            assert q.sync_q.get(timeout=GUARD) == i
            sizes.append(q.sync_q.qsize())

    consumer = Threads(1, consume)
    for i in range(n):
        await q.async_q.put(i)
        assert q.sync_q.qsize() <= maxsize
    await consumer.join()
    assert max(sizes) <= maxsize


async def test_many_task_getters_and_thread_putters() -> None:
    """Many waiting tasks (not one): each gets items, none is left waiting with an item there."""
    q: Queue[tuple[int, int] | None] = Queue()
    n_tasks = 100
    per = 2_000

    async def consume() -> list[tuple[int, int]]:
        check = OrderCheck(THREADS)
        got = []
        while (item := await q.async_q.get()) is not None:
            check.see(item)
            got.append(item)
        return got

    consumers = [asyncio.ensure_future(consume()) for _ in range(n_tasks)]

    def produce(p: int) -> None:
        for i in range(per):
            q.sync_q.put((p, i))

    producers = Threads(THREADS, produce)
    await producers.join()
    for _ in range(n_tasks):
        await asyncio.to_thread(q.sync_q.put, None)
    results: list[Any] = await asyncio.wait_for(asyncio.gather(*consumers), GUARD)
    everything = sorted(item for got in results for item in got)
    assert everything == sorted((p, i) for p in range(THREADS) for i in range(per))
