"""The channel's lifecycle attacked as the world attacks it: the collector finalizing users at any
bytecode, posts racing the last close, a failed registration, loops closed in the documented
order, closes racing loop.stop() and loop.close(), signal exceptions on the loop side, stale
reader registrations, floods. Every test here failed on the code before its fix (issue 17)."""

from __future__ import annotations

import asyncio
import copy
import errno
import functools
import gc
import logging
import pickle
import subprocess
import sys
import textwrap
import threading
import time
import warnings
import weakref
from collections.abc import Callable
from typing import Any

import pytest

import aiowake
from aiowake import _channel, _waiter
from aiowake._handle import DispatcherHandle

from .conftest import LoopFactory, Strike, call_struck_at, open_fds, start_thread

GUARD = 30.0


def run_isolated(code: str, timeout: float = 60.0) -> None:
    """Run *code* in a fresh interpreter; fail on a hang (a deadlock wedges the process) or on
    a non-zero exit."""
    try:
        proc = subprocess.run(
            [sys.executable, "-X", "dev", "-c", textwrap.dedent(code)],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("hung: deadlock")
    assert proc.returncode == 0, proc.stderr[-3000:]


# --- the collector: no lock reachable from a finalizer ----------------------------------------


@pytest.mark.parametrize("kind", ["asyncio", "uvloop"])
def test_the_collector_finalizing_an_abandoned_event_wait_never_deadlocks_the_loop(
    kind: str,
) -> None:
    """Tasks abandoned in Event.wait() (in reference cycles, nothing else refers to them) are
    finalized by the collector while the loop thread is inside other Event.wait() calls, which
    acquire the loop's channel; their wait()'s finally releases a channel use."""
    run_isolated(
        f"""
        import asyncio, gc, {kind}
        import aiowake

        gc.set_threshold(1)

        async def abandon():
            ev = aiowake.Event()
            task = asyncio.ensure_future(ev.wait())
            await asyncio.sleep(0)
            # task -> coroutine -> ev -> waiter future -> task: garbage for the collector only

        async def main():
            asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: None)
            keep = aiowake.Event()
            for _ in range(300):
                await abandon()
                waiter = asyncio.ensure_future(keep.wait())
                await asyncio.sleep(0)
                waiter.cancel()
                await asyncio.sleep(0)

        {"asyncio.run(main())" if kind == "asyncio" else "uvloop.run(main())"}
        """
    )


def test_the_collector_finalizing_an_unclosed_dispatcher_never_deadlocks() -> None:
    run_isolated(
        """
        import asyncio, gc, warnings
        import aiowake

        warnings.simplefilter("ignore", ResourceWarning)
        gc.set_threshold(1)

        async def main():
            for _ in range(300):
                cycle = [aiowake.Dispatcher()]
                cycle.append(cycle)  # garbage for the collector only
                del cycle
                with aiowake.Dispatcher():
                    pass
                await asyncio.sleep(0)

        asyncio.run(main())
        """
    )


# --- accepted work is never lost ----------------------------------------------------------------


@pytest.mark.parametrize("method", ["call_soon_threadsafe", "post"])
def test_a_post_racing_the_last_close_still_runs(loop_factory: LoopFactory, method: str) -> None:
    """A post passes its "closed?" check, then the Dispatcher's close() (the channel's last use)
    runs to completion on the loop, then the post appends: it returned normally, so it runs."""
    loop = loop_factory()
    try:
        d = aiowake.Dispatcher(loop)
        real_append = d._append
        ran: list[int] = []

        def close_then_append(job: Any) -> None:
            d.close()
            loop.run_until_complete(asyncio.sleep(0))  # the channel closes here
            assert _channel._registry.get(id(loop)) is None
            real_append(job)

        d._append = close_then_append
        getattr(d, method)(ran.append, 1)
        for _ in range(3):
            loop.run_until_complete(asyncio.sleep(0))
        assert ran == [1]
    finally:
        loop.close()


def test_posts_from_many_threads_racing_close_all_run(loop_factory: LoopFactory) -> None:
    """8 threads post while the Dispatcher (the loop's only user) is closed: every post that
    returned normally runs, and the others raised RuntimeError."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    loop = loop_factory()
    try:
        for _ in range(20):
            accepted, ran = _race_posts_with_close(loop)
            assert sorted(ran) == sorted(accepted)
    finally:
        sys.setswitchinterval(old)
        loop.close()


def _race_posts_with_close(loop: asyncio.AbstractEventLoop) -> tuple[list[int], list[int]]:
    d = aiowake.Dispatcher(loop)
    accepted: list[int] = []
    ran: list[int] = []
    start = threading.Barrier(9)

    def producer(base: int) -> None:
        start.wait(GUARD)
        for i in range(base, base + 2_000):
            if not d.try_post(ran.append, i):
                return
            accepted.append(i)

    threads = [start_thread(functools.partial(producer, b)) for b in range(0, 16_000, 2_000)]

    async def close_soon() -> None:
        await asyncio.to_thread(start.wait, GUARD)
        await asyncio.sleep(0)
        d.close()
        for t in threads:
            await asyncio.to_thread(t.join, GUARD)
        for _ in range(10):
            await asyncio.sleep(0)

    loop.run_until_complete(close_soon())
    return accepted, ran


def _failing_add_reader(exc: BaseException) -> Callable[..., None]:
    def add_reader(self: Any, *args: Any) -> None:
        raise exc

    return add_reader


@pytest.mark.parametrize(
    "exc", [OSError(errno.ENOSPC, "max_user_watches"), KeyboardInterrupt()], ids=repr
)
def test_a_failed_registration_does_not_poison_the_loop(
    loop_factory: LoopFactory, monkeypatch: pytest.MonkeyPatch, exc: BaseException
) -> None:
    gc.collect()  # what earlier tests left for the collector
    before = open_fds()
    loop = loop_factory()
    try:
        with monkeypatch.context() as m:
            m.setattr(type(loop), "add_reader", _failing_add_reader(exc))
            with pytest.raises(type(exc)):
                aiowake.Dispatcher(loop)
        assert _channel._registry.get(id(loop)) is None
        with aiowake.Dispatcher(loop) as d:
            ran: list[int] = []
            start_thread(lambda: d.post(ran.append, 1)).join(GUARD)
            loop.run_until_complete(asyncio.sleep(0.01))
            assert ran == [1]
    finally:
        loop.close()
    assert open_fds() == before


def test_a_failed_deferred_registration_is_reported_and_loses_nothing(
    loop_factory: LoopFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Made from another thread while the loop runs, the registration is handed to the loop's
    thread; when it fails there, the loop's exception handler hears of it, the posts already
    accepted still run, and the next user gets a fresh channel."""
    loop = loop_factory()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda loop, ctx: reported.append(ctx))

    async def main() -> None:
        ran: list[int] = []
        done = loop.create_future()
        with monkeypatch.context() as m:
            m.setattr(type(loop), "add_reader", _failing_add_reader(OSError(errno.ENOMEM, "no")))

            def make_and_post() -> aiowake.Dispatcher:
                d = aiowake.Dispatcher(loop)
                d.post(ran.append, 1)
                d.post(loop.call_soon_threadsafe, done.set_result, None)
                return d

            d = await asyncio.to_thread(make_and_post)
            await asyncio.wait_for(done, GUARD)
        assert ran == [1]
        assert any(isinstance(c.get("exception"), OSError) for c in reported), reported
        again = loop.create_future()
        await asyncio.to_thread(d.post, again.set_result, "still delivered")
        assert await asyncio.wait_for(again, GUARD) == "still delivered"
        d.close()
        with aiowake.Dispatcher() as fresh:
            assert fresh._channel is not d._channel
            last = loop.create_future()
            await asyncio.to_thread(fresh.post, last.set_result, "fresh")
            assert await asyncio.wait_for(last, GUARD) == "fresh"

    try:
        loop.run_until_complete(main())
    finally:
        loop.close()


def test_closed_loops_and_what_they_held_are_freed(loop_factory: LoopFactory) -> None:
    """The documented order (close the Dispatcher, then the loop) with a post still queued, and
    an Event set just after its loop stopped: nothing keeps the loops alive."""
    gc.collect()  # what earlier tests left for the collector
    before = open_fds()
    refs = [_use_and_close(loop_factory(), with_event=bool(i % 2)) for i in range(50)]
    gc.collect()
    assert [r for r in refs if r() is not None] == []
    assert open_fds() == before


def _use_and_close(
    loop: asyncio.AbstractEventLoop, with_event: bool
) -> weakref.ref[asyncio.AbstractEventLoop]:
    d = aiowake.Dispatcher(loop)
    start_thread(lambda: d.post(print, "never run")).join(GUARD)
    if with_event:
        ev = aiowake.Event()

        async def wait_once() -> None:
            waiter = asyncio.ensure_future(ev.wait())
            await asyncio.sleep(0)
            ev.set()
            waiter.cancel()

        loop.run_until_complete(wait_once())
        ev.set()
    d.close()
    loop.close()
    return weakref.ref(loop)


def test_close_racing_loop_stop_and_close_never_raises(loop_factory: LoopFactory) -> None:
    """Dispatcher.close() from a worker while the loop thread stops and closes the loop."""
    gc.collect()  # what earlier tests left for the collector
    before = open_fds()
    for _ in range(100):
        assert _close_while_the_loop_closes(loop_factory()) == []
    gc.collect()
    assert open_fds() == before


def _close_while_the_loop_closes(loop: asyncio.AbstractEventLoop) -> list[BaseException]:
    d = aiowake.Dispatcher(loop)
    errors: list[BaseException] = []
    go = threading.Event()

    def closer() -> None:
        go.wait(GUARD)
        try:
            d.close()
        except BaseException as exc:
            errors.append(exc)

    t = start_thread(closer)

    async def main() -> None:
        go.set()
        await asyncio.sleep(0)

    loop.run_until_complete(main())
    loop.close()
    t.join(GUARD)
    return errors


def test_close_when_the_loop_closed_between_its_look_and_its_call(
    loop_factory: LoopFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race above, made certain: the loop reads as running, but is closed by the time the
    close asks it to run something."""
    gc.collect()  # what earlier tests left for the collector
    before = open_fds()
    loop = loop_factory()
    d = aiowake.Dispatcher(loop)
    loop.close()
    monkeypatch.setattr(type(loop), "is_running", lambda self: True)
    d.close()
    assert d.closed
    monkeypatch.undo()
    assert open_fds() == before


# --- signal exceptions on the loop side of Event -----------------------------------------------


@pytest.mark.asyncio
async def test_a_resume_struck_at_any_line_still_wakes_its_task(loop_errors: Any) -> None:
    """A signal handler's exception strikes the batch's resume of an Event's waiters before each
    of its lines in turn: the task is still woken (the batch runs the library's own jobs again),
    never left waiting on a done future whose wake-up was taken off (which no set() and no
    cancel() could end), nor left asleep though the Event is set."""
    struck_in: set[str] = set()
    n = 0
    while True:
        where = await _resume_struck_at(n)
        # A strike the batch caught is reported as the job's exception, as asyncio reports a
        # Handle's; one that escaped it (none should) comes back from call_struck_at.
        reported = [str(c["exception"]) for c in loop_errors.take()]
        assert all(isinstance(c, str) for c in reported)
        if where is None and not reported:
            break
        struck_in.add((where or reported[0]).partition(":")[0])
        n += 1
    assert struck_in >= {"resume_all", "resume_now"}, struck_in


async def _resume_struck_at(n: int) -> str | None:
    loop = asyncio.get_running_loop()
    ev = aiowake.Event()
    task = asyncio.ensure_future(ev.wait())
    await asyncio.sleep(0)
    channel = ev._channel
    assert channel is not None
    ev._value = True  # set() in its two steps: the flag, then the resume it posts...
    channel._queue.append(DispatcherHandle(_waiter.resume_all, (tuple(ev._waiters),), None))
    where: list[str | None] = []

    def batch() -> None:  # a reader callback, as the batch is: no task is running there
        channel._waker.wake()  # ...with its wake, here: the loop's own reader must not run first
        where.append(call_struck_at(n, channel._run_batch, _waiter))

    loop.call_soon(batch)
    done, _ = await asyncio.wait({task}, timeout=5.0)
    assert done, f"struck at {where}: the task was never woken"
    if task.exception() is not None:  # struck in the task's own code (wait()'s finally): its own
        assert isinstance(task.exception(), Strike)
        return str(task.exception())
    assert task.result() is True
    return where[0]


# --- stale registrations ------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.usefixtures("loop_errors")
async def test_a_stale_registration_of_our_descriptor_number_does_not_kill_the_channel() -> None:
    """A user's descriptor closed while the loop still watched it leaves a stale registration;
    the channel's new descriptor often gets that number, and must still wake the loop."""
    loop = asyncio.get_running_loop()
    stale = aiowake.Waker()
    number = stale.fileno()
    loop.add_reader(number, lambda: None)
    stale.close()  # the bug under test: no remove_reader first
    with aiowake.Dispatcher() as d:
        assert d._channel._fd == number, "the test needs the channel to reuse the number"
        done = loop.create_future()
        await asyncio.to_thread(d.post, done.set_result, "woken")
        assert await asyncio.wait_for(done, GUARD) == "woken"


# --- semantics and messages ---------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("method", ["call_soon_threadsafe", "post"])
async def test_a_coroutine_function_is_refused(method: str, loop_errors: Any) -> None:
    async def work() -> None:
        pass

    loop = asyncio.get_running_loop()
    with aiowake.Dispatcher() as d:
        if loop.get_debug():  # refused at the post, as asyncio refuses it in debug mode
            with pytest.raises(TypeError, match="coroutines cannot be used"):
                getattr(d, method)(work)
        else:  # reported by the batch, the coroutine closed: no "never awaited" warning later
            done = loop.create_future()
            getattr(d, method)(work)
            d.post(done.set_result, None)
            await asyncio.wait_for(done, GUARD)
            [context] = loop_errors.take()
            assert isinstance(context["exception"], TypeError)
            assert "returned a coroutine" in str(context["exception"])
        gc.collect()
        with pytest.raises(TypeError, match=r"context must be a contextvars\.Context"):
            getattr(d, method)(print, context="x")


@pytest.mark.asyncio
@pytest.mark.usefixtures("loop_errors")
async def test_many_fast_callbacks_never_look_like_a_slow_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Debug mode: a batch of individually fast callbacks ends before it looks slow; a slow
    callback is reported by its own name."""
    loop = asyncio.get_running_loop()
    loop.set_debug(True)  # before the Dispatcher is made: it reads the mode then
    loop.slow_callback_duration = 0.02

    def busy(seconds: float) -> None:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            pass

    def slow_one() -> None:
        busy(0.03)

    with caplog.at_level(logging.WARNING, logger="asyncio"), aiowake.Dispatcher() as d:
        fast_done = loop.create_future()

        def post_fast() -> None:
            for _ in range(1_000):  # 50 ms in all
                d.post(busy, 0.00005)
            d.post(fast_done.set_result, None)

        await asyncio.to_thread(post_fast)
        await asyncio.wait_for(fast_done, GUARD)
        assert [r.getMessage() for r in caplog.records] == []
        slow_done = loop.create_future()
        await asyncio.to_thread(d.post, slow_one)
        await asyncio.to_thread(d.post, slow_done.set_result, None)
        await asyncio.wait_for(slow_done, GUARD)
    slow = [r.getMessage() for r in caplog.records if "Executing" in r.getMessage()]
    assert any("slow_one" in m for m in slow), slow


@pytest.mark.asyncio
async def test_a_failing_callbacks_report_points_at_its_post(loop_errors: Any) -> None:
    loop = asyncio.get_running_loop()
    loop.set_debug(True)  # before the Dispatcher is made: it reads the mode then

    def fail() -> None:
        raise ValueError("boom")

    with aiowake.Dispatcher() as d:
        done = loop.create_future()

        def post_here() -> None:
            d.post(fail)  # <- the report must point here
            d.post(done.set_result, None)

        await asyncio.to_thread(post_here)
        await asyncio.wait_for(done, GUARD)
    [context] = loop_errors.take()
    assert context["source_traceback"][-1].name == "post_here"
    assert "handle_traceback" not in context


def test_event_wait_without_an_asyncio_loop_says_what_to_use() -> None:
    coro = aiowake.Event().wait()
    with pytest.raises(RuntimeError, match=r"asyncio event loop.*Waker"):
        coro.send(None)


def test_an_add_reader_that_is_not_implemented_is_a_clear_error(
    loop_factory: LoopFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop = loop_factory()
    try:
        monkeypatch.setattr(type(loop), "add_reader", _failing_add_reader(NotImplementedError()))
        with pytest.raises(RuntimeError, match="has no add_reader"):
            aiowake.Dispatcher(loop)
    finally:
        monkeypatch.undo()
        loop.close()


def test_try_post_says_whether_the_post_was_accepted(loop_factory: LoopFactory) -> None:
    loop = loop_factory()
    ran: list[int] = []
    d = aiowake.Dispatcher(loop)
    assert d.try_post(ran.append, 1) is True
    loop.run_until_complete(asyncio.sleep(0.01))
    d.close()
    assert d.try_post(ran.append, 2) is False
    with pytest.raises(RuntimeError, match="try_post"):
        d.post(ran.append, 3)
    d2 = aiowake.Dispatcher(loop)
    with pytest.raises(TypeError):
        d2.try_post(42)  # type: ignore[arg-type]
    loop.close()
    assert d2.try_post(ran.append, 4) is False
    d2.close()
    assert ran == [1]


@pytest.mark.parametrize("make", ["Dispatcher", "Event", "handle"])
def test_objects_bound_to_a_loop_refuse_copy_and_pickle(
    loop_factory: LoopFactory, make: str
) -> None:
    loop = loop_factory()
    try:
        with aiowake.Dispatcher(loop) as d:
            obj: object = {
                "Dispatcher": d,
                "Event": aiowake.Event(),
                "handle": d.call_soon_threadsafe(print),
            }[make]
            for attempt in (copy.copy, copy.deepcopy, pickle.dumps):
                with pytest.raises(TypeError, match="cannot pickle"):
                    attempt(obj)
    finally:
        loop.close()


# --- backpressure ---------------------------------------------------------------------------------


def test_a_flood_from_a_thread_keeps_the_backlog_bounded(loop_factory: LoopFactory) -> None:
    loop = loop_factory()
    peak = 0
    total = 3 * _channel.MAX_BACKLOG

    async def main() -> None:
        nonlocal peak
        ran = 0
        done = loop.create_future()

        def count() -> None:
            nonlocal ran
            ran += 1
            if ran == total:
                done.set_result(None)

        with aiowake.Dispatcher() as d:

            def flood() -> None:
                nonlocal peak
                post = d.post
                for _ in range(total):
                    post(count)
                    backlog = d.backlog
                    if backlog > peak:
                        peak = backlog

            await asyncio.to_thread(flood)
            await asyncio.wait_for(done, GUARD)

    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    assert peak <= _channel.MAX_BACKLOG + 1


def test_a_flood_never_waits_where_waiting_could_hang(loop_factory: LoopFactory) -> None:
    """The main thread (maybe in a signal handler) and a thread posting to a loop that is not
    running never wait for the backlog."""
    loop = loop_factory()
    try:
        with aiowake.Dispatcher(loop) as d:
            n = _channel.MAX_BACKLOG + 10
            for _ in range(n):
                d.post(int)

            def post_all() -> None:
                for _ in range(n):
                    d.post(int)

            t = start_thread(post_all)
            t.join(GUARD)
            assert not t.is_alive()
            assert d.backlog == 2 * n
            for _ in range(2 * n // _channel.BATCH_MAX + 2):
                loop.run_until_complete(asyncio.sleep(0))
            assert d.backlog == 0
    finally:
        loop.close()


def test_a_flood_never_waits_for_a_loop_blocked_on_the_producer(loop_factory: LoopFactory) -> None:
    """A callback that blocks the loop's thread on the producer itself (a join() where an
    await to_thread() belonged) must not deadlock the two: the producer waits only while the
    loop makes progress."""
    loop = loop_factory()
    n = _channel.MAX_BACKLOG + 10

    async def main() -> None:
        with aiowake.Dispatcher() as d:

            def post_all() -> None:
                for _ in range(n):
                    d.post(int)

            t = threading.Thread(target=post_all)
            t.start()
            t.join(GUARD)  # blocks the loop: the very thing not to do, done anyway
            assert not t.is_alive()
            assert d.backlog == n

    try:
        loop.run_until_complete(main())
    finally:
        loop.close()


def test_an_unclosed_dispatcher_gives_its_channel_use_back_even_when_its_warning_raises(
    loop_factory: LoopFactory,
) -> None:
    """Under -W error (this suite's own setting) the ResourceWarning raises in __del__: the use
    must have been given back before it, or the channel stays open for the loop's life."""
    loop = loop_factory()
    try:
        d = aiowake.Dispatcher(loop)
        channel = d._channel
        with warnings.catch_warnings():
            warnings.simplefilter("error", ResourceWarning)
            unraisable: list[BaseException | None] = []
            old_hook = sys.unraisablehook
            sys.unraisablehook = lambda u: unraisable.append(u.exc_value)
            try:
                del d
                gc.collect()
            finally:
                sys.unraisablehook = old_hook
        assert [type(e) for e in unraisable] == [ResourceWarning]
        loop.run_until_complete(asyncio.sleep(0))
        assert channel.closed
    finally:
        loop.close()


def test_close_when_the_loop_closes_between_the_channels_look_and_its_remove_reader(
    loop_factory: LoopFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The channel's close, run on a worker while the loop is not running, looks whether the
    loop is closed, then removes its reader and schedules what is queued; the loop's thread
    closes the loop in between (found by the lifecycle machine's racing closer)."""
    loop = loop_factory()
    d = aiowake.Dispatcher(loop)
    d.post(print, "queued; the loop closes before it runs, and drops it")
    real_remove_reader = type(loop).remove_reader

    def remove_reader_then_the_loop_closes(self: Any, fd: int) -> bool:
        removed: bool = real_remove_reader(self, fd)
        self.close()  # what the loop's thread does at this moment of the race
        return removed

    monkeypatch.setattr(type(loop), "remove_reader", remove_reader_then_the_loop_closes)
    d.close()  # no RuntimeError("Event loop is closed")
    monkeypatch.undo()
    assert d.closed
    assert loop.is_closed()
    assert d._channel.closed
