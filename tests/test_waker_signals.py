"""Waker and Python signal handlers: a handler may call wake() at any bytecode, also inside wake().

Python runs signal handlers in the main thread between bytecodes. The tests force the handler to
run inside the waker's own critical sections by raising the signal from the patched system call
and spinning until the handler has run, so the interleaving is certain, not hoped for.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType

import pytest

import aiowake
from aiowake import BackendName, _waker

from .conftest import Strike, readable, start_thread, strike_storm

pytestmark = pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="needs POSIX signals")

SIG = signal.SIGUSR1


@pytest.fixture
def on_signal() -> Iterator[Callable[[Callable[[], object]], list[int]]]:
    """Install ``action`` as the SIGUSR1 handler; returns the list of signals it handled."""
    old = signal.getsignal(SIG)

    def install(action: Callable[[], object]) -> list[int]:
        handled: list[int] = []

        def handler(signum: int, frame: FrameType | None) -> None:
            action()
            handled.append(signum)

        signal.signal(SIG, handler)
        return handled

    yield install
    signal.signal(SIG, old)


def raise_signal_and_wait(handled: list[int]) -> None:
    """Send SIGUSR1 to this (the main) thread and spin until its Python handler has run."""
    n = len(handled)
    signal.pthread_kill(threading.get_ident(), SIG)
    for _ in range(10_000_000):  # the handler runs at the next bytecode boundary of this loop
        if len(handled) > n:
            return
    pytest.fail("the signal handler never ran")


def test_handler_wakes_inside_wake(
    waker: aiowake.Waker,
    monkeypatch: pytest.MonkeyPatch,
    on_signal: Callable[[Callable[[], object]], list[int]],
) -> None:
    handled = on_signal(waker.wake)
    real_write = _waker._write

    def write_interrupted(fd: int, data: bytes) -> int:
        raise_signal_and_wait(handled)  # the handler's wake() runs while we hold the token and lock
        return real_write(fd, data)

    monkeypatch.setattr(_waker, "_write", write_interrupted)
    waker.wake()
    monkeypatch.undo()
    assert handled == [SIG]
    assert readable(waker)
    assert waker.drain() is True
    assert not readable(waker)
    waker.wake()
    assert readable(waker)


def test_handler_wakes_inside_drain(
    waker: aiowake.Waker,
    monkeypatch: pytest.MonkeyPatch,
    on_signal: Callable[[Callable[[], object]], list[int]],
) -> None:
    """The handler takes the reentrant lock that drain() holds: no deadlock, nothing lost."""
    work: list[int] = []

    def produce() -> None:
        work.append(1)
        waker.wake()

    handled = on_signal(produce)
    real_read = _waker._read

    def read_interrupted(fd: int, n: int) -> bytes:
        try:
            return real_read(fd, n)  # raises BlockingIOError: nothing is pending yet
        finally:
            raise_signal_and_wait(handled)

    monkeypatch.setattr(_waker, "_read", read_interrupted)
    assert waker.drain() is False  # the handler's wake writes, from inside drain, after its read
    monkeypatch.undo()
    assert work == [1]
    assert readable(waker), "the handler's wake, made inside drain, is pending"
    assert waker.drain() is True


def test_handler_wakes_inside_close(
    backend: BackendName,
    monkeypatch: pytest.MonkeyPatch,
    on_signal: Callable[[Callable[[], object]], list[int]],
) -> None:
    w = aiowake.Waker(backend)
    handled = on_signal(w.wake)
    real_close = os.close
    calls = 0

    def close_interrupted(fd: int) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise_signal_and_wait(handled)  # descriptors marked closed, not yet all closed
        real_close(fd)

    monkeypatch.setattr(os, "close", close_interrupted)
    w.close()
    monkeypatch.undo()
    assert handled == [SIG]
    assert w.closed


def test_timer_signals_storm(waker: aiowake.Waker) -> None:
    """A virtual-time interval timer fires wake() from its handler at random bytecodes while the
    main thread wakes and drains; the waker ends consistent (SIGALRM is pytest-timeout's)."""
    fired = 0

    def handler(signum: int, frame: FrameType | None) -> None:
        nonlocal fired
        fired += 1
        waker.wake()

    old = signal.signal(signal.SIGVTALRM, handler)
    signal.setitimer(signal.ITIMER_VIRTUAL, 0.0001, 0.0001)
    try:
        for i in range(200_000):
            waker.wake()
            if i % 3 == 0:
                waker.drain()
            if fired >= 200 and i >= 20_000:
                break
    finally:
        signal.setitimer(signal.ITIMER_VIRTUAL, 0, 0)
        signal.signal(signal.SIGVTALRM, old)
    assert fired > 0
    waker.drain()
    assert not readable(waker)
    waker.wake()
    assert readable(waker)


def test_a_raising_handler_never_leaves_the_waker_stuck_or_locked(waker: aiowake.Waker) -> None:
    """A handler's exception strikes wake() or drain() at whatever bytecode a timer lands on.
    After each strike no wake is lost, and afterwards no lock is left held. (The locks are kept by
    ``with``: an explicit ``acquire()`` then ``try:`` is cheaper, but an exception landing between
    the two leaves the lock held for good, and every other thread's wake() then blocks.)"""
    with strike_storm(_waker) as storm:
        for _ in range(200_000):
            storm.arm()
            try:
                waker.wake()
            except Strike:
                # Struck before the token was taken, nothing happened; after, the rescue wrote.
                # Either way the token is not lost: a wake made now is seen.
                waker.wake()
                assert readable(waker)
            storm.arm()
            try:
                drained = waker.drain()  # a wake is pending here
            except Strike:
                assert readable(waker), "the drain consumed a wake and nobody will hear of it"
                drained = waker.drain()
            storm.disarm()
            assert drained
            if storm.struck >= 300:
                break
    assert storm.struck > 0, "the timer never struck inside the waker"

    locks_free: list[bool] = []

    def take_both_locks() -> None:  # another thread: a lock left held would make it wait
        for lock in (waker._rlock, waker._wlock):
            got = lock.acquire(timeout=5)
            locks_free.append(got)
            if got:
                lock.release()

    start_thread(take_both_locks).join()
    assert locks_free == [True, True]
