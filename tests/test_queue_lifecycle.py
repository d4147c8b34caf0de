"""Queue and the hard cases: calls from signal handlers, a handler's exception striking inside a
call, tasks abandoned to the collector, fork."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import sys
import threading
import traceback
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from aiowake import _channel, _queue, _queue_faces
from aiowake._queue import LifoQueue, PriorityQueue, Queue

from .conftest import LoopFactory, Strike, start_thread, strike_storm

GUARD = 30.0
STRUCK_ENOUGH = 300
KINDS = [Queue, LifoQueue]  # PriorityQueue's calls that take its heap lock are not signal-safe


def locked_lock() -> Any:
    lock = threading.Lock()
    lock.acquire()
    return lock


# --- calls from a signal handler ------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.usefixtures("loop_errors")
async def test_a_put_from_a_signal_handler_wakes_a_task_while_the_loop_polls() -> None:
    """The handler runs on the loop's thread inside its poll (no task running): the put goes
    through the channel, whose write wakes the poll at once (else the test hangs)."""
    q: Queue[int] = Queue()

    def handler(signum: int, frame: FrameType | None) -> None:
        q.sync_q.put_nowait(signum)

    old = signal.signal(signal.SIGUSR1, handler)
    try:
        getter = asyncio.ensure_future(q.async_q.get())
        for _ in range(5):
            await asyncio.sleep(0)
        main = threading.main_thread().ident or 0
        start_thread(lambda: signal.pthread_kill(main, signal.SIGUSR1))
        assert await asyncio.wait_for(getter, GUARD) == signal.SIGUSR1
    finally:
        signal.signal(signal.SIGUSR1, old)


@pytest.mark.asyncio
@pytest.mark.usefixtures("loop_errors")
async def test_a_put_from_a_signal_handler_inside_a_task() -> None:
    q: Queue[int] = Queue()
    old = signal.signal(signal.SIGUSR1, lambda s, f: q.sync_q.put_nowait(1))
    try:
        getter = asyncio.ensure_future(q.async_q.get())
        for _ in range(5):
            await asyncio.sleep(0)
        signal.raise_signal(signal.SIGUSR1)  # runs here, inside this task
        assert await asyncio.wait_for(getter, GUARD) == 1
    finally:
        signal.signal(signal.SIGUSR1, old)


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.__name__)
def test_handlers_calling_in_while_the_thread_is_inside_the_queue(kind: type[Queue[Any]]) -> None:
    """A virtual timer's handler calls put_nowait, get_nowait, task_done, qsize, full, empty at
    whatever bytecode the main thread is at, inside the same queue's calls too: nothing
    deadlocks, nothing is lost or doubled."""
    q = kind(64)
    handler_got: list[Any] = []
    handler_put = 0
    main_got: list[Any] = []
    lost_to_full = 0

    def handler(signum: int, frame: FrameType | None) -> None:
        nonlocal handler_put, lost_to_full
        q.sync_q.qsize(), q.sync_q.full(), q.async_q.empty()
        try:
            q.sync_q.put_nowait(("h", handler_put))
            handler_put += 1
        except _queue.SyncQueueFull:
            lost_to_full += 1
        try:
            handler_got.append(q.async_q.get_nowait())
            q.sync_q.task_done()
        except _queue.AsyncQueueEmpty:
            pass

    old = signal.signal(signal.SIGVTALRM, handler)
    signal.setitimer(signal.ITIMER_VIRTUAL, 0.00005, 0.00005)
    try:
        n = i = 0
        while handler_put < 100 and i < 20_000_000:  # the timer ticks at the kernel's rate
            i += 1
            try:
                q.sync_q.put_nowait(("m", i))
                n += 1
            except _queue.SyncQueueFull:
                pass
            if i % 2:
                try:
                    main_got.append(q.sync_q.get_nowait())
                    q.async_q.task_done()
                except _queue.SyncQueueEmpty:
                    pass
    finally:
        signal.setitimer(signal.ITIMER_VIRTUAL, 0, 0)
        signal.signal(signal.SIGVTALRM, old)
    rest = []
    while not q.sync_q.empty():
        rest.append(q.sync_q.get_nowait())
        q.sync_q.task_done()
    assert handler_put >= 100, "the timer hardly ran"
    everything = main_got + handler_got + rest
    assert len(everything) == n + handler_put
    assert sorted(i for who, i in everything if who == "h") == list(range(handler_put))
    assert len({i for who, i in everything if who == "m"}) == n
    assert q.sync_q.unfinished_tasks == 0
    q.sync_q.join()


# --- a handler's exception striking inside a call -----------------------------------------------


@pytest.fixture
def idle_loop(loop_factory: LoopFactory) -> Iterator[asyncio.AbstractEventLoop]:
    loop = loop_factory()
    yield loop
    loop.run_until_complete(asyncio.sleep(0))
    loop.close()


def waiting_task(loop: asyncio.AbstractEventLoop, coro: Any) -> asyncio.Task[Any]:
    task = loop.create_task(coro)
    for _ in range(3):
        loop.run_until_complete(asyncio.sleep(0))
    assert not task.done()
    return task


def storm(call: Callable[[], object], check: Callable[[], None], reset: Callable[[], None]) -> int:
    """Strike *call* at whatever bytecode a timer lands on in the queue's modules, many times;
    after each strike, *check()* the invariants; *reset()* between calls. Returns strikes."""
    with strike_storm(_queue, _queue_faces, _channel) as st:
        for _ in range(300_000):
            st.arm()
            try:
                call()
            except Strike:
                st.disarm()
                check()
            except Exception:
                pass  # Full, Empty, ValueError: the call's own answers
            st.disarm()
            reset()
            if st.struck >= STRUCK_ENOUGH:
                break
        return st.struck


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.__name__)
@pytest.mark.parametrize("maxsize", [0, 4])
def test_a_struck_put_never_leaves_a_getter_asleep(
    idle_loop: asyncio.AbstractEventLoop, kind: type[Queue[int]], maxsize: int
) -> None:
    """Whatever bytecode of put_nowait() the exception strikes: if the item went in, the waiting
    thread has been released and the loop's service is queued; the bound holds."""
    q = kind(maxsize)
    getter = waiting_task(idle_loop, q.async_q.get())
    channel = q._channel
    assert channel is not None
    thread = locked_lock()
    q._tgetters.append(thread)

    def check() -> None:
        assert len(q._items) <= (maxsize or sys.maxsize)
        if q._items:
            assert not thread.locked(), "the item is there and the waiting thread sleeps on"
            assert q._tgetters.count(thread) == 0
            assert q._service_job in channel._queue, "the item is there and no service is due"

    def reset() -> None:
        nonlocal thread
        q._items.clear()
        q._tgetters.clear()
        channel._queue.clear()
        q._svc[0] = True
        thread = locked_lock()
        q._tgetters.append(thread)

    assert storm(lambda: q.sync_q.put_nowait(1), check, reset) > 0
    q._tgetters.clear()
    q.sync_q.put_nowait(7)
    assert idle_loop.run_until_complete(asyncio.wait_for(getter, GUARD)) == 7


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.__name__)
def test_a_struck_get_never_leaves_a_putter_asleep(kind: type[Queue[int]]) -> None:
    """get_nowait() on a full queue, struck anywhere: if it made room, the waiting putter has
    been released. (The item being got may be lost: documented, as with queue.Queue.)"""
    q = kind(2)
    thread = locked_lock()

    def reset() -> None:
        nonlocal thread
        q._items.clear()
        q._outstanding.clear()
        q.sync_q.put_nowait(1)
        q.sync_q.put_nowait(2)
        q._tputters.clear()
        thread = locked_lock()
        q._tputters.append(thread)

    def check() -> None:
        if len(q._items) < 2:
            assert not thread.locked(), "room was made and the waiting thread sleeps on"

    reset()
    assert storm(q.sync_q.get_nowait, check, reset) > 0


def test_a_struck_task_done_never_leaves_a_joiner_asleep() -> None:
    q: Queue[int] = Queue()
    joiner = locked_lock()

    def reset() -> None:
        nonlocal joiner
        q._outstanding.clear()
        q._outstanding.append(None)  # one item got, not yet done
        q._tjoiners.clear()
        joiner = locked_lock()
        q._tjoiners.append(joiner)

    def check() -> None:
        if not q._outstanding:
            assert not joiner.locked(), "all done and the joiner sleeps on"

    reset()
    assert storm(q.sync_q.task_done, check, reset) > 0


def test_a_struck_shutdown_still_releases_every_thread() -> None:
    q: Queue[int] = Queue()
    threads: list[Any] = []

    def reset() -> None:
        q._shutdown = q._immediate = False
        q._tgetters.clear()
        threads[:] = [locked_lock() for _ in range(3)]
        q._tgetters.extend(threads)

    def check() -> None:
        # Struck before the releases: the flag may be set and they asleep; a second shutdown()
        # (idempotent) must finish the job, as a caller retrying after the exception would.
        q.shutdown()
        assert not any(t.locked() for t in threads)

    reset()
    assert storm(q.shutdown, check, reset) > 0


# --- the collector ------------------------------------------------------------------------------


@pytest.fixture
def collect_often() -> Iterator[None]:
    old = gc.get_threshold()
    gc.set_threshold(1)
    yield
    gc.set_threshold(*old)


@pytest.mark.usefixtures("collect_often")
@pytest.mark.parametrize("kind", [Queue, LifoQueue, PriorityQueue], ids=lambda k: k.__name__)
@pytest.mark.parametrize("where", ["this thread", "another thread"])
@pytest.mark.parametrize("with_items", [False, True], ids=["empty", "items-left"])
def test_an_abandoned_get_is_finalized_cleanly(
    loop_factory: LoopFactory, kind: type[Queue[int]], where: str, with_items: bool
) -> None:
    """A task awaiting get() whose queue and task nobody refers to any more: the collector closes
    its coroutine, whose cleanup (unregister, pass the wake on, release the channel) takes no
    lock and raises nothing, on whichever thread collects."""
    loop = loop_factory()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, ctx: reported.append(ctx))
    try:
        for _ in range(20):
            q = kind()
            task = waiting_task(loop, q.async_q.get())
            if with_items:
                q._items.append(1)  # as if a put raced the abandonment (no wake sent)
            channel = q._channel
            assert channel is not None
            del q, task
            if where == "this thread":
                gc.collect()
            else:
                start_thread(gc.collect).join(GUARD)
            loop.run_until_complete(asyncio.sleep(0))
            assert _channel._registry.get(id(loop)) is None, "the wait's channel use was released"
        assert reported, "the collector destroyed pending tasks: asyncio says so"
        assert all("destroyed but it is pending" in ctx["message"] for ctx in reported)
    finally:
        loop.close()


@pytest.mark.usefixtures("collect_often")
def test_collecting_while_threads_use_queues(loop_factory: LoopFactory) -> None:
    """Abandoned gets are finalized on threads that are busy putting and getting (maybe inside
    a PriorityQueue's heap lock): no deadlock, nothing raised."""
    loop = loop_factory()
    loop.set_exception_handler(lambda _, ctx: None)
    busy = [Queue[int](8), PriorityQueue[int](8)]
    stop = threading.Event()
    errors: list[BaseException] = []

    def produce(q: Queue[int]) -> None:
        try:
            i = 0
            while not stop.is_set():
                q.sync_q.put(i, timeout=GUARD)
                i += 1
            q.sync_q.put(-1, timeout=GUARD)
        except BaseException as e:
            errors.append(e)

    def consume(q: Queue[int]) -> None:
        try:
            while q.sync_q.get(timeout=GUARD) != -1:
                pass
        except BaseException as e:
            errors.append(e)

    workers = [start_thread(lambda q=q, f=f: f(q)) for q in busy for f in (produce, consume)]  # type: ignore[misc]
    try:
        for _ in range(200):
            q: Queue[int] = PriorityQueue() if _ % 2 else Queue()
            waiting_task(loop, q.async_q.get())
            del q
    finally:
        stop.set()
        for w in workers:
            w.join(GUARD)
            assert not w.is_alive()
        gc.collect()
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()
    assert not errors


# --- fork ----------------------------------------------------------------------------------------


def fork(child: Callable[[], None]) -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: forking with threads
        pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 0
        try:
            child()
        except BaseException:
            traceback.print_exc()
            sys.stderr.flush()
            code = 1
        os._exit(code)
    return pid


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_child_uses_a_fresh_queue_and_keeps_the_inherited_items(
    loop_factory: LoopFactory,
) -> None:
    inherited: Queue[int] = Queue()
    inherited.sync_q.put(1)
    inherited.sync_q.put(2)

    def child() -> None:  # pragma: no cover - runs in the child
        assert inherited.sync_q.get_nowait() == 1  # the items are copied with the memory
        fresh: Queue[int] = Queue(4)
        loop = loop_factory()
        try:

            async def main() -> list[int]:
                def produce() -> None:
                    for i in range(100):
                        fresh.sync_q.put(i)

                t = threading.Thread(target=produce)
                t.start()
                got = [await fresh.async_q.get() for _ in range(100)]
                await asyncio.to_thread(t.join)
                return got

            assert loop.run_until_complete(main()) == list(range(100))
        finally:
            loop.close()

    pid = fork(child)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the child's checks failed (see stderr)"
    assert inherited.sync_q.get_nowait() == 1, "the parent's queue is its own"
    assert inherited.sync_q.get_nowait() == 2


# --- graceful shutdown racing gets and puts (found by review; each forced with a pause where a
# --- thread switch could land) ----------------------------------------------------------------


def _pause_at(module: Any, function: str, text: str, paused: threading.Event, go: threading.Event):  # type: ignore[no-untyped-def]
    """A trace function that stops this thread before the first line of *function* in *module*
    containing *text*, until *go*: a preemption at exactly that point."""
    lines = Path(module.__file__).read_text().splitlines()

    def local(frame: FrameType, event: str, arg: object) -> Any:
        if event == "line" and text in lines[frame.f_lineno - 1] and not paused.is_set():
            paused.set()
            go.wait(GUARD)
        return local

    def on_call(frame: FrameType, event: str, arg: object) -> Any:
        if frame.f_code.co_name == function and frame.f_code.co_filename == module.__file__:
            return local
        return None

    return on_call


def test_a_get_that_found_the_queue_empty_just_before_a_shutdown_still_gets_what_came() -> None:
    """The getter finds the queue empty; before it looks at the shutdown flag, items are put and
    the queue is shut down gracefully: it must get them, then ShutDown."""
    q: Queue[int] = Queue()
    paused, go = threading.Event(), threading.Event()
    got: list[object] = []

    def consumer() -> None:
        sys.settrace(_pause_at(_queue_faces, "get", "q._drained()", paused, go))
        try:
            while True:
                try:
                    got.append(q.sync_q.get(timeout=GUARD))
                except _queue_faces.SyncQueueShutDown:
                    got.append("ShutDown")
                    return
        finally:
            sys.settrace(None)

    t = start_thread(consumer)
    assert paused.wait(GUARD)
    for i in range(3):
        q.sync_q.put(i)
    q.shutdown()
    go.set()
    t.join(GUARD)
    assert got == [0, 1, 2, "ShutDown"]


def test_a_put_that_lands_after_a_shutdown_began_is_still_got() -> None:
    """A put looked at the shutdown flag (not set), then a shutdown, then its insertion: it
    returned normally, so a getter must not be told "shut down and empty" before it lands."""
    q: Queue[str] = Queue()
    paused, go = threading.Event(), threading.Event()
    returned: list[str] = []

    def producer() -> None:
        sys.settrace(_pause_at(_queue, "_put", "self._put_item(item)", paused, go))
        try:
            q.sync_q.put("precious")
            returned.append("put returned")
        finally:
            sys.settrace(None)

    t = start_thread(producer)
    assert paused.wait(GUARD)
    q.shutdown()
    with pytest.raises(_queue_faces.SyncQueueEmpty):
        q.sync_q.get_nowait()  # not ShutDown: a put is still landing
    got: list[str] = []
    getter = start_thread(lambda: got.append(q.sync_q.get(timeout=GUARD)))
    go.set()
    t.join(GUARD)
    getter.join(GUARD)
    assert returned == ["put returned"]
    assert got == ["precious"]
    with pytest.raises(_queue_faces.SyncQueueShutDown):
        q.sync_q.get_nowait()


def test_a_shutdown_releases_every_waiting_putter_behind_one_woken_already(
    loop_factory: LoopFactory,
) -> None:
    """One batch holds an Event's resume (its task frees a slot, waking putter X the usual way)
    and then the queue's service for a shutdown: the service stops at X, woken and not yet run,
    and X, leaving with ShutDown, must still pass the turn on to Y and Z."""
    import aiowake

    loop = loop_factory()
    q: Queue[str] = Queue(maxsize=1)
    q.sync_q.put_nowait("full")
    ev = aiowake.Event()
    outcome: dict[str, str] = {}

    async def putter(name: str) -> None:
        try:
            await q.async_q.put(name)
            outcome[name] = "put"
        except _queue_faces.AsyncQueueShutDown:
            outcome[name] = "ShutDown"

    async def frees_a_slot() -> None:
        await ev.wait()
        outcome["R"] = q.async_q.get_nowait()

    try:
        tasks = [loop.create_task(putter(n)) for n in "XYZ"]
        tasks.append(loop.create_task(frees_a_slot()))
        for _ in range(5):
            loop.run_until_complete(asyncio.sleep(0))
        ev.set()  # from outside the loop: the resume goes to the channel first
        q.shutdown()  # then the queue's service
        _, pending = loop.run_until_complete(asyncio.wait(tasks, timeout=GUARD))
        assert not pending
        assert outcome == {"R": "full", "X": "ShutDown", "Y": "ShutDown", "Z": "ShutDown"}
    finally:
        loop.close()


def test_a_service_struck_by_a_signal_exception_does_not_lose_the_queues_token(
    loop_factory: LoopFactory,
) -> None:
    """KeyboardInterrupt at the service's first line, before it gives the token back: the batch
    runs the service again next time, so later thread puts still reach the waiting task."""
    loop = loop_factory()
    q: Queue[int] = Queue()
    got: list[int] = []
    armed = [True]

    def local(frame: FrameType, event: str, arg: object) -> Any:
        if event == "line" and armed[0]:
            armed[0] = False
            raise KeyboardInterrupt(f"struck in {frame.f_code.co_name}:{frame.f_lineno}")
        return local

    def on_call(frame: FrameType, event: str, arg: object) -> Any:
        if frame.f_code.co_name == "_service" and frame.f_code.co_filename == _queue.__file__:
            return local
        return None

    all_got = loop.create_future()

    async def consumer() -> None:
        while True:
            got.append(await q.async_q.get())
            if len(got) == 11:
                all_got.set_result(None)

    try:
        task = loop.create_task(consumer())
        for _ in range(5):
            loop.run_until_complete(asyncio.sleep(0))
        start_thread(lambda: q.sync_q.put(1)).join(GUARD)
        sys.settrace(on_call)
        try:
            with pytest.raises(KeyboardInterrupt, match="struck in _service"):
                loop.run_until_complete(asyncio.sleep(GUARD))
        finally:
            sys.settrace(None)

        def put_more() -> None:
            for i in range(2, 12):
                q.sync_q.put(i)

        start_thread(put_more).join(GUARD)

        loop.run_until_complete(asyncio.wait_for(all_got, GUARD))
        assert got == list(range(1, 12))
        task.cancel()
        loop.run_until_complete(asyncio.wait([task]))
    finally:
        loop.close()
