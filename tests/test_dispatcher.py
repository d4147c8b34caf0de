"""aiowake.Dispatcher on stock asyncio (debug mode) and uvloop."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import gc
import socket
import threading
import types
from collections.abc import Callable
from typing import Any

import pytest

import aiowake
from aiowake import _channel, _dispatcher, _waker
from aiowake._handle import DispatcherHandle

from .conftest import (
    ExceptionHandlerGuard,
    LoopFactory,
    Strike,
    interrupted_after,
    open_fds,
    readable,
    start_thread,
    strike_storm,
)

GUARD = 30.0
METHODS = ["call_soon_threadsafe", "post"]

asyncio_tests = [pytest.mark.asyncio, pytest.mark.usefixtures("loop_errors")]


class SysCalls:
    """Counts the waker's calls of one system call while installed: ``"_write"`` (wakeups) or
    ``"_read"`` (drains that found something, and those that did not)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.count = 0
        self._lock = threading.Lock()

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        real = getattr(_waker, self.name)

        def counting(fd: int, arg: Any) -> Any:
            with self._lock:
                self.count += 1
            return real(fd, arg)

        monkeypatch.setattr(_waker, self.name, counting)


@pytest.fixture
def batches(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A log that gets "batch" at the start of every batch the channels run."""
    log: list[str] = []
    real = _channel.Channel._run_batch

    def logging_run_batch(self: _channel.Channel) -> None:
        log.append("batch")
        real(self)

    monkeypatch.setattr(_channel.Channel, "_run_batch", logging_run_batch)
    return log


@pytest.mark.parametrize("how", ["call_soon_threadsafe", "mixed"])
@pytest.mark.parametrize("threads", [1, 8])
@pytest.mark.asyncio
@pytest.mark.usefixtures("loop_errors")
async def test_posts_from_many_threads_run_once_in_order(
    threads: int, how: str, monkeypatch: pytest.MonkeyPatch, batches: list[str]
) -> None:
    """Mixed, each thread posts in turn a bare callback (post() without arguments, from a plain
    thread's empty context), a post() with arguments and a call_soon_threadsafe()."""
    per_thread = 48_000
    total = threads * per_thread
    writes = SysCalls("_write")
    writes.install(monkeypatch)
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    seen = [0] * threads
    ran = 0

    def callback(ident: int, i: int) -> None:
        nonlocal ran
        assert seen[ident] == i, "per-thread order"
        seen[ident] = i + 1
        ran += 1
        if ran == total:
            done.set_result(None)

    with aiowake.Dispatcher() as d:
        start = threading.Barrier(threads)

        def produce(ident: int) -> None:
            if how == "call_soon_threadsafe":
                start.wait()
                post = d.call_soon_threadsafe
                for i in range(per_thread):
                    post(callback, ident, i)
                return
            bare = [functools.partial(callback, ident, i) for i in range(0, per_thread, 3)]
            assert not contextvars.copy_context(), "a plain thread's context is empty"
            start.wait()
            for i in range(0, per_thread, 3):
                d.post(bare[i // 3])
                d.post(callback, ident, i + 1)
                d.call_soon_threadsafe(callback, ident, i + 2)

        workers = [start_thread(lambda i=i: produce(i)) for i in range(threads)]  # type: ignore[misc]
        await asyncio.wait_for(done, GUARD)
        for t in workers:
            await asyncio.to_thread(t.join, GUARD)
    assert seen == [per_thread] * threads
    assert ran == total
    # One byte in flight at most: every write but the last was consumed by a batch's drain.
    assert writes.count <= len(batches) + 1
    assert writes.count * 10 < total, f"{writes.count} wakeups for {total} posts"


@pytest.mark.asyncio
@pytest.mark.usefixtures("loop_errors")
async def test_a_post_queues_the_callback_alone_only_when_nothing_else_is_needed() -> None:
    """No arguments and an empty context: the callback itself is the job (nothing for the
    collector to track). Anything more (arguments, the poster's context, an explicit context
    even if empty) travels in a handle, as with call_soon_threadsafe."""
    explicit = contextvars.Context()
    with aiowake.Dispatcher() as d:
        queue = d._channel._queue

        def post_all() -> None:
            d.post(print)
            d.post(print, "x")
            d.post(print, context=explicit)
            request_id.set("set in the poster")
            d.post(print)

        contextvars.Context().run(post_all)  # on the loop's thread: nothing runs meanwhile
        bare, with_args, in_explicit, in_posters = list(queue)
        assert bare is print
        assert isinstance(with_args, DispatcherHandle)
        assert with_args._args == ("x",)
        assert isinstance(in_explicit, DispatcherHandle)
        assert in_explicit._context is explicit
        assert isinstance(in_posters, DispatcherHandle)
        assert in_posters._context is not None
        assert in_posters._context[request_id] == "set in the poster"
        queue.clear()


@pytest.mark.asyncio
@pytest.mark.usefixtures("loop_errors")
async def test_a_post_into_an_explicit_empty_context_runs_there() -> None:
    """An explicit context is the caller's to look at afterwards, even an empty one: what the
    callback sets lands there, not in a context of the batch's."""
    explicit = contextvars.Context()
    done = asyncio.get_running_loop().create_future()

    def set_it() -> None:
        request_id.set("in the explicit context")

    with aiowake.Dispatcher() as d:
        contextvars.Context().run(lambda: d.post(set_it, context=explicit))
        d.post(done.set_result, None)
        await asyncio.wait_for(done, GUARD)
    assert explicit[request_id] == "in the explicit context"
    assert request_id.get() == "unset"


@pytest.mark.asyncio
async def test_an_exception_from_a_bare_post_goes_to_the_handler_and_the_rest_run(
    loop_errors: ExceptionHandlerGuard,
) -> None:
    ran: list[str] = []
    done = asyncio.get_running_loop().create_future()

    def boom() -> None:
        raise ZeroDivisionError("bare")

    with aiowake.Dispatcher() as d:

        def post_all() -> None:
            d.post(functools.partial(ran.append, "before"))
            d.post(boom)
            d.post(functools.partial(ran.append, "after"))
            d.post(functools.partial(done.set_result, None))

        contextvars.Context().run(post_all)
        assert all(not isinstance(job, DispatcherHandle) for job in d._channel._queue)
        await asyncio.wait_for(done, GUARD)
    assert ran == ["before", "after"]
    [ctx] = loop_errors.take()
    assert isinstance(ctx["exception"], ZeroDivisionError)
    assert isinstance(ctx["handle"], DispatcherHandle)
    assert "boom()" in ctx["message"]
    assert "boom()" in repr(ctx["handle"])


@pytest.mark.asyncio
@pytest.mark.usefixtures("loop_errors")
async def test_a_burst_costs_one_write_and_one_read(
    monkeypatch: pytest.MonkeyPatch, batches: list[str]
) -> None:
    """10,000 posts made while the loop is busy: one write for all of them. The loop then runs
    them BATCH_MAX at a time, one batch per iteration, each leaving that byte unread for the next:
    one write and one read in all."""
    writes, reads = SysCalls("_write"), SysCalls("_read")
    writes.install(monkeypatch)
    reads.install(monkeypatch)
    ran: list[int] = []
    done = asyncio.get_running_loop().create_future()
    with aiowake.Dispatcher() as d:
        for i in range(10_000):  # on the loop's thread: the loop cannot run a batch meanwhile
            d.call_soon_threadsafe(ran.append, i)
        d.call_soon_threadsafe(done.set_result, None)
        assert writes.count == 1
        await asyncio.wait_for(done, GUARD)
    assert ran == list(range(10_000))
    expected_batches = -(-10_001 // _channel.BATCH_MAX)  # ceiling
    assert len(batches) == expected_batches
    assert writes.count == 1
    assert reads.count == 1  # the last batch's drain


@pytest.mark.asyncio
@pytest.mark.usefixtures("loop_errors")
async def test_posts_made_during_a_batch_wait_for_the_next(batches: list[str]) -> None:
    done = asyncio.get_running_loop().create_future()
    with aiowake.Dispatcher() as d:

        def first() -> None:
            batches.append("first")
            d.call_soon_threadsafe(second)

        def second() -> None:
            batches.append("second")
            done.set_result(None)

        d.call_soon_threadsafe(first)
        d.call_soon_threadsafe(batches.append, "also-first")
        await asyncio.wait_for(done, GUARD)
    assert batches == ["batch", "first", "also-first", "batch", "second"]


@pytest.mark.asyncio
@pytest.mark.usefixtures("loop_errors")
async def test_a_flood_of_posts_does_not_starve_io() -> None:
    """A callback that re-posts itself forever must still let a ready socket's reader run."""
    loop = asyncio.get_running_loop()
    a, b = socket.socketpair()
    flooded = 0
    read_after: list[int] = []
    with a, b, aiowake.Dispatcher() as d:
        b.setblocking(False)

        def flood() -> None:
            nonlocal flooded
            flooded += 1
            if not read_after and flooded < 1_000_000:
                d.call_soon_threadsafe(flood)

        read = loop.create_future()

        def on_readable() -> None:
            read_after.append(flooded)
            b.recv(1)
            read.set_result(None)

        loop.add_reader(b, on_readable)
        try:
            d.call_soon_threadsafe(flood)
            await asyncio.sleep(0)
            a.send(b"x")  # the socket becomes ready while the flood runs
            await asyncio.wait_for(read, GUARD)
        finally:
            loop.remove_reader(b)
    assert read_after[0] < 1000, f"the reader waited for {read_after[0]} flooded callbacks"


@pytest.mark.asyncio
async def test_exception_goes_to_the_handler_and_the_rest_run(
    loop_errors: ExceptionHandlerGuard,
) -> None:
    ran: list[str] = []
    done = asyncio.get_running_loop().create_future()

    def boom(x: int) -> None:
        raise ZeroDivisionError(x)

    with aiowake.Dispatcher() as d:
        d.call_soon_threadsafe(ran.append, "before")
        handle = d.call_soon_threadsafe(boom, 7)
        d.call_soon_threadsafe(ran.append, "after")
        d.call_soon_threadsafe(done.set_result, None)
        await asyncio.wait_for(done, GUARD)
    assert ran == ["before", "after"]
    [ctx] = loop_errors.take()
    assert isinstance(ctx["exception"], ZeroDivisionError)
    assert ctx["exception"].args == (7,)
    assert ctx["handle"] is handle
    assert ctx["message"].startswith("Exception in callback ")
    assert "boom(7)" in ctx["message"]


@pytest.mark.asyncio
@pytest.mark.usefixtures("loop_errors")
async def test_cancel_keeps_the_callback_from_running() -> None:
    ran: list[int] = []
    done = asyncio.get_running_loop().create_future()
    with aiowake.Dispatcher() as d:
        h1 = d.call_soon_threadsafe(ran.append, 1)
        h2 = d.call_soon_threadsafe(ran.append, 2)
        d.call_soon_threadsafe(done.set_result, None)
        h1.cancel()
        assert h1.cancelled()
        assert not h2.cancelled()
        assert "cancelled" in repr(h1)
        await asyncio.wait_for(done, GUARD)
    assert ran == [2]


@pytest.mark.asyncio
@pytest.mark.usefixtures("loop_errors")
async def test_cancel_from_another_thread() -> None:
    """A cancel made (in another thread) before the loop gets to the callback wins. The loop is
    held in join() meanwhile, so that the batch cannot run between the post and the cancel (a
    cancel racing the callback's start may come too late, as with asyncio's handles)."""
    ran: list[int] = []
    done = asyncio.get_running_loop().create_future()
    with aiowake.Dispatcher() as d:

        def post_and_cancel() -> None:
            handle = d.call_soon_threadsafe(ran.append, 1)
            handle.cancel()
            d.call_soon_threadsafe(done.set_result, None)

        start_thread(post_and_cancel).join(GUARD)  # blocks the loop on purpose
        await asyncio.wait_for(done, GUARD)
    assert ran == []


request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="unset")


@pytest.mark.asyncio
@pytest.mark.usefixtures("loop_errors")
async def test_context_of_the_poster_is_used() -> None:
    seen: list[str] = []
    done = asyncio.get_running_loop().create_future()
    with aiowake.Dispatcher() as d:

        def post() -> None:
            request_id.set("from-thread")
            d.call_soon_threadsafe(lambda: seen.append(request_id.get()))
            explicit = contextvars.Context()
            explicit.run(request_id.set, "explicit")
            d.call_soon_threadsafe(lambda: seen.append(request_id.get()), context=explicit)
            d.call_soon_threadsafe(done.set_result, None)

        await asyncio.to_thread(contextvars.Context().run, post)
        await asyncio.wait_for(done, GUARD)
    assert seen == ["from-thread", "explicit"]
    assert request_id.get() == "unset", "the loop's own context is untouched"


@pytest.mark.asyncio
@pytest.mark.usefixtures("loop_errors")
async def test_callback_changes_stay_in_its_context() -> None:
    done = asyncio.get_running_loop().create_future()
    ctx = contextvars.copy_context()
    with aiowake.Dispatcher() as d:
        handle = d.call_soon_threadsafe(request_id.set, "changed", context=ctx)
        d.call_soon_threadsafe(done.set_result, None)
        await asyncio.wait_for(done, GUARD)
    assert handle.get_context() is ctx
    assert ctx[request_id] == "changed"
    assert request_id.get() == "unset"


@pytest.mark.asyncio
@pytest.mark.usefixtures("loop_errors")
async def test_posts_from_an_empty_context_each_get_a_fresh_one() -> None:
    """A plain thread's context is empty; its callbacks run in a new empty context each (the
    handle says None), so what one sets is not seen by the next, nor by the loop. An explicit
    empty context is used as given."""
    seen: list[str] = []
    done = asyncio.get_running_loop().create_future()
    explicit = contextvars.Context()
    handles: list[aiowake.DispatcherHandle] = []
    with aiowake.Dispatcher() as d:

        def post() -> None:
            for _ in range(3):
                handles.append(d.call_soon_threadsafe(lambda: seen.append(request_id.get())))
                handles.append(d.call_soon_threadsafe(request_id.set, "leaked?"))
            handles.append(d.call_soon_threadsafe(request_id.set, "kept", context=explicit))
            d.call_soon_threadsafe(done.set_result, None)

        await asyncio.to_thread(contextvars.Context().run, post)
        await asyncio.wait_for(done, GUARD)
    assert seen == ["unset"] * 3
    assert [h.get_context() for h in handles[:-1]] == [None] * 6
    assert handles[-1].get_context() is explicit
    assert explicit[request_id] == "kept"
    assert request_id.get() == "unset", "the loop's own context is untouched"


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.asyncio
async def test_in_one_batch_no_callback_sees_what_another_left_in_its_context(
    loop_errors: ExceptionHandlerGuard, method: str
) -> None:
    """Posts from an empty context, run in one batch (the loop is busy until all are queued):
    whatever a callback leaves set, also when it raises after setting, the next does not see;
    one that sets and resets leaves a context as good as new."""
    seen: list[str] = []
    done = asyncio.get_running_loop().create_future()

    def look() -> None:
        seen.append(request_id.get())

    def set_and_raise() -> None:
        request_id.set("left by a failing callback")
        raise ValueError("boom")

    def set_and_reset() -> None:
        token = request_id.set("reset before returning")
        look()
        request_id.reset(token)

    with aiowake.Dispatcher() as d:

        def post() -> None:
            for callback in (look, set_and_reset, look, set_and_raise, look):
                getattr(d, method)(callback)
            getattr(d, method)(request_id.set, "left by a plain set")
            getattr(d, method)(look)
            d.call_soon_threadsafe(done.set_result, None)

        contextvars.Context().run(post)  # on the loop's thread: all queued before the batch
        await asyncio.wait_for(done, GUARD)
    assert seen == ["unset", "reset before returning", "unset", "unset", "unset"]
    [error] = loop_errors.take()
    assert isinstance(error["exception"], ValueError)
    assert request_id.get() == "unset", "the loop's own context is untouched"


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.asyncio
@pytest.mark.usefixtures("loop_errors")
async def test_post_after_close_raises(method: str) -> None:
    d = aiowake.Dispatcher()
    d.close()
    d.close()  # idempotent
    assert d.closed
    with pytest.raises(RuntimeError, match="closed"):
        getattr(d, method)(print)
    with pytest.raises(RuntimeError, match="closed"):
        getattr(d, method)(42)  # closed comes first, as in asyncio


@pytest.mark.asyncio
@pytest.mark.usefixtures("loop_errors")
async def test_callbacks_posted_before_close_still_run() -> None:
    """close() refuses new posts; what was accepted runs, even when this was the channel's last
    user (the channel then closes after the batch)."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    ran: list[int] = []
    d = aiowake.Dispatcher()
    d.call_soon_threadsafe(ran.append, 1)
    d.call_soon_threadsafe(done.set_result, None)
    d.close()
    with pytest.raises(RuntimeError, match="closed"):
        d.call_soon_threadsafe(ran.append, 2)
    await asyncio.wait_for(done, GUARD)
    assert ran == [1]
    await asyncio.sleep(0)
    assert _channel._registry.get(id(loop)) is None


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.asyncio
@pytest.mark.usefixtures("loop_errors")
async def test_not_callable_is_a_type_error(method: str) -> None:
    with aiowake.Dispatcher() as d, pytest.raises(TypeError, match="callable"):
        getattr(d, method)(42)


@pytest.mark.asyncio
@pytest.mark.usefixtures("loop_errors")
async def test_constructed_in_another_thread_while_the_loop_runs() -> None:
    """Registration is handed to the loop's thread; posts made before it are not lost."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()

    def make_and_post() -> aiowake.Dispatcher:
        d = aiowake.Dispatcher(loop)
        d.call_soon_threadsafe(done.set_result, "ran")
        return d

    d = await asyncio.to_thread(make_and_post)
    try:
        assert await asyncio.wait_for(done, GUARD) == "ran"
    finally:
        await asyncio.to_thread(d.close)
        for _ in range(3):
            await asyncio.sleep(0)  # the close is handed to the loop's thread too
    assert _channel._registry.get(id(loop)) is None


@pytest.mark.asyncio
@pytest.mark.usefixtures("loop_errors")
async def test_events_and_dispatchers_share_one_channel() -> None:
    loop = asyncio.get_running_loop()
    before = open_fds()
    dispatchers = [aiowake.Dispatcher() for _ in range(50)]
    events = [aiowake.Event() for _ in range(50)]
    waiters = [asyncio.ensure_future(ev.wait()) for ev in events]
    await asyncio.sleep(0)
    assert len(open_fds() - before) <= 2
    assert len({d._channel for d in dispatchers}) == 1
    for ev in events:
        dispatchers[0].call_soon_threadsafe(ev.set)
    await asyncio.wait_for(asyncio.gather(*waiters), GUARD)
    for d in dispatchers:
        d.close()
    await asyncio.sleep(0)  # an unused channel closes on the loop's next iteration
    assert _channel._registry.get(id(loop)) is None
    assert open_fds() == before


def test_needs_a_running_loop_or_an_argument() -> None:
    with pytest.raises(RuntimeError, match="running asyncio event loop"):
        aiowake.Dispatcher()


@pytest.mark.parametrize("loop", [42, "loop", object()])
def test_loop_of_the_wrong_type_is_a_type_error(loop: object) -> None:
    with pytest.raises(TypeError, match=r"loop must be an asyncio\.AbstractEventLoop"):
        aiowake.Dispatcher(loop)  # type: ignore[arg-type]


class _NoReaders(asyncio.AbstractEventLoop):
    """Like Windows' ProactorEventLoop: add_reader is AbstractEventLoop's NotImplementedError."""

    def is_closed(self) -> bool:
        return False

    def is_running(self) -> bool:
        return False


def test_loop_without_add_reader_is_refused(fd_guard: None) -> None:
    with pytest.raises(RuntimeError, match="has no add_reader"):
        aiowake.Dispatcher(_NoReaders())  # type: ignore[abstract]


def test_closed_loop_is_refused(loop_factory: LoopFactory) -> None:
    loop = loop_factory()
    loop.close()
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        aiowake.Dispatcher(loop)


@pytest.mark.parametrize("method", METHODS)
def test_post_after_loop_close_raises_and_nothing_leaks(
    loop_factory: LoopFactory, method: str
) -> None:
    before = open_fds()
    loop = loop_factory()
    d = aiowake.Dispatcher(loop)
    ran: list[int] = []
    getattr(d, method)(ran.append, 1)
    loop.run_until_complete(asyncio.sleep(0.01))
    loop.close()
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        getattr(d, method)(ran.append, 2)
    d.close()
    assert ran == [1]
    assert open_fds() == before


def test_nothing_left_after_loop_close(run_in_loop: Callable[..., Any]) -> None:
    """Dispatchers closed and Events done: after loop.close() no descriptor and no reader."""
    before = open_fds()
    loops: list[asyncio.AbstractEventLoop] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loops.append(loop)
        ev = aiowake.Event()
        with aiowake.Dispatcher() as d:
            waiter = asyncio.ensure_future(ev.wait())
            await asyncio.sleep(0)
            await asyncio.to_thread(d.call_soon_threadsafe, ev.set)
            await asyncio.wait_for(waiter, GUARD)
        await asyncio.sleep(0)  # an unused channel closes on the loop's next iteration
        assert _channel._registry.get(id(loop)) is None
        selector = getattr(loop, "_selector", None)
        if selector is not None:  # stock asyncio: only its own self-pipe is left registered
            assert len(selector.get_map()) == 1

    run_in_loop(main)
    assert loops[0].is_closed()
    assert open_fds() == before


def test_unclosed_dispatcher_warns(loop_factory: LoopFactory) -> None:
    """A finalizer closes nothing itself (see _channel, rule 1): it leaves the channel's close
    to the loop's next iteration."""
    loop = loop_factory()
    try:
        d = aiowake.Dispatcher(loop)
        with pytest.warns(ResourceWarning, match="unclosed"):
            del d
        loop.run_until_complete(asyncio.sleep(0))
        assert _channel._registry.get(id(loop)) is None
    finally:
        loop.close()


def test_an_unclosed_dispatcher_of_a_loop_closed_without_running_again_leaks_nothing(
    loop_factory: LoopFactory,
) -> None:
    before = open_fds()
    loop = loop_factory()
    d = aiowake.Dispatcher(loop)
    with pytest.warns(ResourceWarning, match="unclosed"):
        del d
    loop.close()
    gc.collect()
    assert open_fds() == before


def test_posts_made_while_the_loop_is_stopped_run_when_it_runs_after_close(
    loop_factory: LoopFactory,
) -> None:
    """close() between two run_until_complete() calls: what was accepted runs in the next one,
    and the channel closes after it."""
    before = open_fds()
    loop = loop_factory()
    try:
        d = aiowake.Dispatcher(loop)
        ran: list[int] = []
        start_thread(lambda: d.call_soon_threadsafe(ran.append, 1)).join(GUARD)
        d.call_soon_threadsafe(ran.append, 2)
        d.close()
        assert ran == []
        for _ in range(3):
            loop.run_until_complete(asyncio.sleep(0))
        assert ran == [1, 2]
        assert _channel._registry.get(id(loop)) is None
    finally:
        loop.close()
    assert open_fds() == before


@pytest.mark.parametrize("exc", [KeyboardInterrupt, BrokenPipeError])
def test_a_post_interrupted_after_its_take_still_runs(
    loop_factory: LoopFactory, monkeypatch: pytest.MonkeyPatch, exc: type[BaseException]
) -> None:
    """A signal handler's exception (any: an OSError from its own I/O too) can strike right after
    a post took the token, before its write. The job is queued by then, so it must run; and the
    next post must still wake the loop."""
    loop = loop_factory()
    try:
        with aiowake.Dispatcher(loop) as d:
            first, second = loop.create_future(), loop.create_future()
            monkeypatch.setattr(d, "_take_token", interrupted_after(d._take_token, exc))
            with pytest.raises(exc):
                d.call_soon_threadsafe(first.set_result, 1)
            monkeypatch.undo()
            assert loop.run_until_complete(asyncio.wait_for(first, 5.0)) == 1
            start_thread(lambda: d.call_soon_threadsafe(second.set_result, 2)).join(GUARD)
            assert loop.run_until_complete(asyncio.wait_for(second, 5.0)) == 2
    finally:
        loop.close()


def test_a_batch_interrupted_after_its_drain_still_wakes_for_a_racing_post(
    loop_factory: LoopFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A post that races the batch's closing drain may see its wake consumed by it; the batch
    then wakes the loop again. A signal handler's exception striking right after that drain must
    not skip the wake, or the job waits until someone else happens to post."""
    loop = loop_factory()
    try:
        with aiowake.Dispatcher(loop) as d:
            racing = loop.create_future()
            real_drain = _waker.Waker.drain

            def drain_raced_then_interrupted(waker: aiowake.Waker) -> bool:
                d.call_soon_threadsafe(racing.set_result, 1)  # finds the wake still pending
                real_drain(waker)  # and the drain consumes it
                raise KeyboardInterrupt  # a handler's, at the bytecode after the drain

            monkeypatch.setattr(_waker.Waker, "drain", drain_raced_then_interrupted)
            d.call_soon_threadsafe(int)
            with pytest.raises(KeyboardInterrupt):
                loop.run_forever()  # until the interrupted batch
            monkeypatch.undo()
            assert loop.run_until_complete(asyncio.wait_for(racing, 5.0)) == 1
    finally:
        loop.close()


@pytest.mark.parametrize("via", ["Dispatcher", "Dispatcher.post", "Channel"])
def test_a_raising_handler_never_leaves_a_post_without_its_wake(
    loop_factory: LoopFactory, via: str
) -> None:
    """A handler's exception strikes a post (a Dispatcher's, or the channel's own, which Events
    use) at whatever bytecode a timer lands on: before its job is queued (then the post did
    nothing), or after (then its wake must be pending, or the job sits unseen until someone else
    posts)."""
    loop = loop_factory()
    try:
        with aiowake.Dispatcher(loop) as d:
            channel = d._channel
            waker, queue = channel._waker, channel._queue
            post: Callable[[], object]
            module: types.ModuleType
            if via == "Dispatcher":
                post, module = functools.partial(d.call_soon_threadsafe, int), _dispatcher
            elif via == "Dispatcher.post":
                post, module = functools.partial(d.post, int), _dispatcher
            else:
                job = DispatcherHandle(int, (), None)
                post, module = functools.partial(channel.post, job), _channel
            with strike_storm(module, _waker) as storm:
                for _ in range(200_000):
                    storm.arm()
                    try:
                        post()
                    except Strike:
                        if queue:
                            assert readable(waker), "a job is queued and nothing will run it"
                    storm.disarm()
                    waker.drain()  # back to idle, as if the loop had run the job
                    queue.clear()
                    if storm.struck >= 300:
                        break
            assert storm.struck > 0, "the timer never struck inside a post"
    finally:
        loop.close()


def test_a_flood_runs_in_batches_with_the_loops_turn_between(loop_factory: LoopFactory) -> None:
    """Posts queued while the loop was away run BATCH_MAX at a time, in order, and what the loop
    has scheduled meanwhile (here a call_soon from the first job) runs between two batches."""
    loop = loop_factory()
    try:
        with aiowake.Dispatcher(loop) as d:
            n = 2 * _channel.BATCH_MAX + 10
            log: list[object] = []
            done = loop.create_future()

            def job(i: int) -> None:
                log.append(i)
                if i == 0:
                    loop.call_soon(log.append, "loop's turn")
                if i == n - 1:
                    done.set_result(None)

            def flood() -> None:
                for i in range(n):
                    d.call_soon_threadsafe(job, i)

            start_thread(flood).join(GUARD)
            loop.run_until_complete(asyncio.wait_for(done, GUARD))
    finally:
        loop.close()
    assert log.index("loop's turn") == _channel.BATCH_MAX
    assert [x for x in log if x != "loop's turn"] == list(range(n))
