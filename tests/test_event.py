"""aiowake.Event on stock asyncio (debug mode) and uvloop."""

from __future__ import annotations

import asyncio
import signal
import threading
from types import FrameType
from typing import Any

import pytest

import aiowake
from aiowake import _channel, _event, _waiter, _waker

from .conftest import ExceptionHandlerGuard, call_struck_at, open_fds, start_thread

pytestmark = [pytest.mark.asyncio, pytest.mark.usefixtures("loop_errors")]

GUARD = 30.0


def channel_of(loop: asyncio.AbstractEventLoop) -> _channel.Channel | None:
    return _channel._registry.get(id(loop))


async def channel_after_next_iteration() -> _channel.Channel | None:
    """The loop's channel once the loop ran its next iteration (an unused channel closes then)."""
    await asyncio.sleep(0)
    return channel_of(asyncio.get_running_loop())


async def blocked(task: asyncio.Task[Any]) -> bool:
    """Let the loop run a few rounds, then say whether *task* is still waiting."""
    for _ in range(5):
        await asyncio.sleep(0)
    return not task.done()


async def test_set_from_a_thread_wakes_the_waiter() -> None:
    ev = aiowake.Event()
    waiter = asyncio.ensure_future(ev.wait())
    assert await blocked(waiter)
    await asyncio.to_thread(ev.set)
    assert await asyncio.wait_for(waiter, GUARD) is True
    assert ev.is_set()


async def test_set_from_a_plain_thread_while_loop_waits() -> None:
    ev = aiowake.Event()
    go = threading.Event()

    def set_when_told() -> None:
        go.wait(GUARD)
        ev.set()

    t = start_thread(set_when_told)
    waiter = asyncio.ensure_future(ev.wait())
    assert await blocked(waiter)
    go.set()
    assert await asyncio.wait_for(waiter, GUARD) is True
    await asyncio.to_thread(t.join, GUARD)


async def test_set_before_wait_returns_at_once() -> None:
    ev = aiowake.Event()
    ev.set()
    ev.set()  # idempotent
    assert await ev.wait() is True
    assert channel_of(asyncio.get_running_loop()) is None, "no channel needed for a set event"


async def test_clear_then_wait_blocks_until_next_set() -> None:
    ev = aiowake.Event()
    ev.set()
    ev.clear()
    assert not ev.is_set()
    waiter = asyncio.ensure_future(ev.wait())
    assert await blocked(waiter)
    await asyncio.to_thread(ev.set)
    assert await asyncio.wait_for(waiter, GUARD) is True


async def test_set_then_clear_still_wakes_the_current_waiters() -> None:
    """As with asyncio.Event: waiters present at set() return True even if clear() follows."""
    ev = aiowake.Event()
    waiter = asyncio.ensure_future(ev.wait())
    assert await blocked(waiter)

    def set_and_clear() -> None:
        ev.set()
        ev.clear()

    await asyncio.to_thread(set_and_clear)
    assert await asyncio.wait_for(waiter, GUARD) is True
    assert not ev.is_set()


async def test_many_waiters_all_wake() -> None:
    ev = aiowake.Event()
    waiters = [asyncio.ensure_future(ev.wait()) for _ in range(500)]
    assert await blocked(waiters[-1])
    await asyncio.to_thread(ev.set)
    assert await asyncio.wait_for(asyncio.gather(*waiters), GUARD) == [True] * 500
    assert not ev._waiters


async def test_cancelled_wait_leaves_nothing_behind() -> None:
    loop = asyncio.get_running_loop()
    ev = aiowake.Event()
    waiter = asyncio.ensure_future(ev.wait())
    assert await blocked(waiter)
    assert channel_of(loop) is not None
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert not ev._waiters
    assert await channel_after_next_iteration() is None, "last waiter gone: channel closed"
    # And the event still works afterwards.
    again = asyncio.ensure_future(ev.wait())
    assert await blocked(again)
    await asyncio.to_thread(ev.set)
    assert await asyncio.wait_for(again, GUARD) is True


async def test_wait_for_timeout_cancels_cleanly() -> None:
    ev = aiowake.Event()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(ev.wait(), 0.01)
    assert not ev._waiters
    assert await channel_after_next_iteration() is None


def polling(
    loop: asyncio.AbstractEventLoop, monkeypatch: pytest.MonkeyPatch, slept_out: list[float]
) -> threading.Event:
    """Set when the loop next enters its poll; every long poll that ends with no event (the loop
    slept out its timeout: nothing woke it) goes to *slept_out*. Stock asyncio: its selector is
    instrumented. uvloop runs Python signal handlers from its own wakeup fd, outside its poll, so
    there the event is set at once."""
    entered = threading.Event()
    selector = getattr(loop, "_selector", None)
    if selector is None:
        entered.set()
        return entered
    real_select = selector.select

    def select(timeout: float | None = None) -> Any:
        entered.set()
        ready = real_select(timeout)
        if not ready and (timeout is None or timeout > 1.0):
            slept_out.append(-1.0 if timeout is None else timeout)
        return ready

    monkeypatch.setattr(selector, "select", select)
    return entered


async def test_set_from_signal_handler_while_loop_is_in_select(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The handler runs on the loop's thread inside select() (EINTR); a plain call_soon there
    would sit unseen until select() timed out. The wake must get through at once."""
    ev = aiowake.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        ev.set()

    old = signal.signal(signal.SIGUSR1, handler)
    try:
        waiter = asyncio.ensure_future(ev.wait())
        assert await blocked(waiter)
        slept_out: list[float] = []
        in_poll = polling(asyncio.get_running_loop(), monkeypatch, slept_out)

        def kill_when_polling() -> None:
            in_poll.wait(GUARD)
            # The main thread is in (or about to enter) select(), outside any task.
            signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGUSR1)

        kill = start_thread(kill_when_polling)
        assert await asyncio.wait_for(waiter, GUARD) is True
        assert slept_out == [], "the signal handler's set() did not wake the loop's poll"
        await asyncio.to_thread(kill.join, GUARD)
    finally:
        signal.signal(signal.SIGUSR1, old)


async def test_set_from_signal_handler_inside_a_task() -> None:
    ev = aiowake.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        ev.set()

    old = signal.signal(signal.SIGUSR1, handler)
    try:
        waiter = asyncio.ensure_future(ev.wait())
        assert await blocked(waiter)
        signal.raise_signal(signal.SIGUSR1)  # the handler runs here, in this task
        assert await asyncio.wait_for(waiter, GUARD) is True
    finally:
        signal.signal(signal.SIGUSR1, old)


async def test_set_on_the_loop_thread_needs_no_wakeup(monkeypatch: pytest.MonkeyPatch) -> None:
    writes: list[int] = []
    real_write = _waker._write

    def counting_write(fd: int, data: bytes) -> int:
        writes.append(fd)
        return real_write(fd, data)

    monkeypatch.setattr(_waker, "_write", counting_write)
    ev = aiowake.Event()
    waiter = asyncio.ensure_future(ev.wait())
    assert await blocked(waiter)
    [fut] = ev._waiters
    ev.set()
    assert fut.done(), "woken directly, not after a round-trip through the waker"
    assert await waiter is True
    assert writes == []


async def test_wait_from_another_loop_raises() -> None:
    ev = aiowake.Event()
    waiter = asyncio.ensure_future(ev.wait())
    assert await blocked(waiter)  # bound to this loop now

    def other_loop() -> None:
        async def wait_there() -> None:
            await ev.wait()

        with pytest.raises(RuntimeError, match="different event loop"):
            asyncio.run(wait_there())

    await asyncio.to_thread(other_loop)
    ev.set()
    assert await waiter is True


async def test_ten_thousand_events_share_one_channel() -> None:
    loop = asyncio.get_running_loop()
    before = open_fds()
    events = [aiowake.Event() for _ in range(10_000)]
    waiters = [asyncio.ensure_future(ev.wait()) for ev in events]
    assert await blocked(waiters[-1])
    during = open_fds()
    assert len(during - before) <= 2, f"O(1) descriptors: {sorted(during - before)}"

    def set_all() -> None:
        for ev in events:
            ev.set()

    await asyncio.to_thread(set_all)
    assert await asyncio.wait_for(asyncio.gather(*waiters), GUARD) == [True] * 10_000
    assert await channel_after_next_iteration() is None
    assert channel_of(loop) is None
    assert open_fds() == before


async def test_set_from_many_threads_racing_waits() -> None:
    """Waiters come and go while threads set and clear: every wait that began before a set()
    returned True; none hangs."""
    for _ in range(200):
        ev = aiowake.Event()
        waiter = asyncio.ensure_future(ev.wait())
        await asyncio.sleep(0)
        threads = [start_thread(ev.set) for _ in range(3)]
        assert await asyncio.wait_for(waiter, GUARD) is True
        for t in threads:
            await asyncio.to_thread(t.join, GUARD)


async def test_repr() -> None:
    ev = aiowake.Event()
    assert repr(ev) == "<aiowake.Event [unset]>"
    waiter = asyncio.ensure_future(ev.wait())
    assert await blocked(waiter)
    assert repr(ev) == "<aiowake.Event [unset waiters=1]>"
    ev.set()
    await waiter
    assert repr(ev) == "<aiowake.Event [set]>"


async def test_no_exception_handler_calls(loop_errors: ExceptionHandlerGuard) -> None:
    """The guard itself works: a failing call_soon callback is caught by it."""
    loop = asyncio.get_running_loop()
    loop.call_soon(lambda: 1 / 0)
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    [ctx] = loop_errors.take()
    assert isinstance(ctx["exception"], ZeroDivisionError)


async def test_repeated_waits_keep_one_channel() -> None:
    """wait, set, wait, set ...: the channel survives between rounds (no re-registration and no
    new descriptor inside a wake), and closes once nobody waits any more."""
    loop = asyncio.get_running_loop()
    ev = aiowake.Event()
    ready = asyncio.Queue[None]()
    channels = set()

    async def waiter() -> None:
        for _ in range(50):
            ready.put_nowait(None)  # cleared; a set() from now on is this round's
            await ev.wait()
            channels.add(channel_of(loop))
            ev.clear()

    task = asyncio.ensure_future(waiter())
    for _ in range(50):
        await asyncio.wait_for(ready.get(), GUARD)
        await asyncio.to_thread(ev.set)
    await asyncio.wait_for(task, GUARD)
    assert len(channels) == 1
    assert None not in channels
    assert await channel_after_next_iteration() is None


async def test_a_set_from_another_thread_resumes_the_waiter_inside_the_batch() -> None:
    """The waiter runs where the set() sits among the loop's posts, not an iteration later: a
    callback posted before the set() runs before it, one posted after, after it."""
    loop = asyncio.get_running_loop()
    ev = aiowake.Event()
    order: list[str] = []

    async def waiter() -> None:
        await ev.wait()
        order.append("waiter")

    task = asyncio.ensure_future(waiter())
    assert await blocked(task)
    with aiowake.Dispatcher(loop) as dispatcher:

        def post_set_post() -> None:
            dispatcher.call_soon_threadsafe(order.append, "before")
            ev.set()
            dispatcher.call_soon_threadsafe(order.append, "after")

        # join() holds the loop: all three posts land before the loop runs the batch.
        start_thread(post_set_post).join(GUARD)
        await asyncio.wait_for(task, GUARD)
        for _ in range(3):
            await asyncio.sleep(0)
    assert order == ["before", "waiter", "after"]
    assert await channel_after_next_iteration() is None, "the wait's use of the channel is gone"


async def test_cancel_between_the_set_and_the_batch() -> None:
    """Task.cancel() after another thread's set() was posted, before the loop ran it: the wait
    raises CancelledError, the others still wake, nothing is reported."""
    ev = aiowake.Event()
    doomed = asyncio.ensure_future(ev.wait())
    other = asyncio.ensure_future(ev.wait())
    assert await blocked(other)
    start_thread(ev.set).join(GUARD)  # posted; the loop has not run its batch yet
    doomed.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(doomed, GUARD)
    assert await asyncio.wait_for(other, GUARD) is True
    assert not ev._waiters
    assert await channel_after_next_iteration() is None


async def test_the_batch_never_steps_a_task_inside_another() -> None:
    """Should the batch run while a task is running (a loop re-entered from inside a task, as
    nest_asyncio allows), the waiters are woken the usual way instead of stepped in place."""
    ev = aiowake.Event()
    waiter = asyncio.ensure_future(ev.wait())
    assert await blocked(waiter)
    ev._value = True
    _waiter.resume_all(tuple(ev._waiters))  # here, inside this test's task
    assert not waiter.done(), "not stepped inside this task"
    assert await asyncio.wait_for(waiter, GUARD) is True


@pytest.mark.parametrize("cleared", [False, True], ids=["", "cleared-meanwhile"])
async def test_a_set_interrupted_before_its_post_still_wakes_the_waiter(
    monkeypatch: pytest.MonkeyPatch, cleared: bool
) -> None:
    """A signal handler's exception can strike set() after the flag is set and before the
    waiters' wakeup is posted. No later set() would post it (the flag is set), so set() must post
    it again before letting the exception out; also if another thread has cleared the flag
    meanwhile: the waiters of a set() are woken, whatever comes after it (as asyncio.Event's)."""
    ev = aiowake.Event()
    waiter = asyncio.ensure_future(ev.wait())
    assert await blocked(waiter)
    real_post = _channel.Channel.post
    posts: list[object] = []

    def interrupted_once(self: _channel.Channel, job: Any) -> None:
        posts.append(job)
        if len(posts) == 1:
            if cleared:
                ev.clear()  # as another thread could, between the set and the post
            raise KeyboardInterrupt  # as a handler would, just before the post took effect
        real_post(self, job)

    monkeypatch.setattr(_channel.Channel, "post", interrupted_once)
    raised: list[BaseException] = []

    def set_it() -> None:
        try:
            ev.set()
        except KeyboardInterrupt as e:
            raised.append(e)

    await asyncio.to_thread(lambda: start_thread(set_it).join(GUARD))
    assert len(raised) == 1, "set() let the exception out"
    assert await asyncio.wait_for(waiter, 5.0) is True
    assert len(posts) == 2


async def test_a_set_struck_at_any_line_still_wakes_its_waiter() -> None:
    """A signal handler's exception strikes set() (in another thread) before each of its lines
    in turn, one run per line: once it has set the flag, the waiter must wake without another
    set() (none would post anything); before that, nothing happened, and a set() wakes it. Only
    the Event's own code is struck: the post it makes goes into the waker's `with` blocks, which
    are left to the storm tests (see call_struck_at)."""
    struck_in: set[str] = set()
    n = 0
    while True:
        ev = aiowake.Event()
        waiter = asyncio.ensure_future(ev.wait())
        assert await blocked(waiter)
        where = await asyncio.to_thread(call_struck_at, n, ev.set, _event)
        if not ev.is_set():
            assert where is not None
            ev.set()
        done, _ = await asyncio.wait({waiter}, timeout=5.0)
        assert done, f"struck at {where} in set(), its waiter was never woken"
        assert waiter.result() is True
        if where is None:
            break
        struck_in.add(where.partition(":")[0])
        n += 1
    # Proof that the strikes reached the whole path, not just its start:
    assert struck_in == {"set", "_wake_waiters"}, struck_in
