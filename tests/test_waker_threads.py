"""Waker under concurrency: no lost wakeup, no stuck "pending", no write into a reused descriptor.

The deterministic tests force the two dangerous interleavings of the token protocol by running the
racing call from inside the patched system call; the stress tests hammer it from many threads.
"""

from __future__ import annotations

import collections
import itertools
import os
import selectors
import threading

import pytest

import aiowake
from aiowake import BackendName, _waker

from .conftest import readable, start_thread

GUARD = 30.0  # seconds; a hang guard only


@pytest.mark.parametrize("when", ["before", "after"])
def test_wake_racing_the_read_is_not_lost(
    waker: aiowake.Waker, monkeypatch: pytest.MonkeyPatch, when: str
) -> None:
    """A wake that lands inside drain(), just before or just after its read, must not be lost.

    Its work was queued before it, so the caller finds it after drain() returns; and the waker must
    not be left "pending" with nothing to read (the classic clear-then-read bug: re-arming before
    the read lets the racing wake write a byte that the read then swallows).
    """
    queue: collections.deque[int] = collections.deque()
    real_read = _waker._read

    def racing_read(fd: int, n: int) -> bytes:
        if when == "before":
            queue.append(1)
            waker.wake()  # the racing producer
        data = real_read(fd, n)
        if when == "after":
            queue.append(1)
            waker.wake()
        return data

    waker.wake()
    monkeypatch.setattr(_waker, "_read", racing_read)
    assert waker.drain() is True
    monkeypatch.undo()
    assert list(queue) == [1], "the racing wake's work is there to be found after drain()"
    # Not stuck: the next wake makes the descriptor readable (maybe it already is).
    waker.wake()
    assert readable(waker), f"stuck pending: {waker!r}"
    assert waker.drain() is True


def test_drain_between_take_and_write_is_not_lost(
    waker: aiowake.Waker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A drain that runs after a wake took the token but before it wrote finds nothing; the late
    byte must still make the descriptor readable, and the drain after it re-arms."""
    real_write = _waker._write
    results: list[bool] = []

    def race_then_write(fd: int, data: bytes) -> int:
        results.append(waker.drain())  # the loop drains in between
        return real_write(fd, data)

    monkeypatch.setattr(_waker, "_write", race_then_write)
    waker.wake()
    monkeypatch.undo()
    assert results == [False]
    assert readable(waker), "the late byte arrived"
    assert waker.drain() is True
    waker.wake()
    assert readable(waker), "re-armed"
    assert waker.drain() is True


def test_drain_never_waits_for_a_write_in_progress_but_close_does(
    waker: aiowake.Waker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A producer preempted inside its write must not hold up the loop's drain (they exclude only
    close(), not each other); close() must wait, or the write could hit a reused descriptor."""
    real_write = _waker._write
    inside, go_on = threading.Event(), threading.Event()

    def slow_write(fd: int, data: bytes) -> int:
        inside.set()
        go_on.wait(GUARD)
        return real_write(fd, data)

    monkeypatch.setattr(_waker, "_write", slow_write)
    producer = start_thread(waker.wake)
    try:
        assert inside.wait(GUARD)
        drained: list[bool] = []
        drainer = start_thread(lambda: drained.append(waker.drain()))
        drainer.join(GUARD)
        assert drained == [False], "drain() waited for the write (or read a byte not yet written)"
        closer = start_thread(waker.close)
        closer.join(0.2)
        assert closer.is_alive(), "close() did not wait for the write in progress"
    finally:
        go_on.set()
        producer.join(GUARD)
    closer.join(GUARD)
    assert waker.closed


def test_look_first_needs_its_second_look(waker: aiowake.Waker) -> None:
    """The look-first recipe, step by step: work queued between the first look and the drain has
    its wake coalesced into the byte the drain consumes, so nothing will call the reader for it
    again; the look after a True drain is what finds it."""
    queue: collections.deque[int] = collections.deque()
    queue.append(1)
    waker.wake()  # the wake the reader was called for
    seen: list[int] = []
    seen.extend(queue)  # the first look, acting at once...
    queue.clear()
    queue.append(2)
    waker.wake()  # ...while a producer queues more: pending already, so no write
    assert waker.drain() is True
    assert not readable(waker), "nothing will call the reader for item 2"
    seen.extend(queue)  # the second look
    assert seen == [1, 2]


@pytest.mark.parametrize("recipe", ["drain first", "look, drain, look again"])
@pytest.mark.parametrize("producers", [1, 8])
def test_no_lost_wakeup_selectors_loop(waker: aiowake.Waker, producers: int, recipe: str) -> None:
    """N producer threads x 20,000 items; a consumer that only looks at the queue when the
    selector says the waker is readable must see every item, and never block with work queued.
    Both of the README's reader recipes: drain then look, or look (acting sooner), drain, and
    look again if the drain consumed a wake."""
    per_thread = 20_000
    total = producers * per_thread
    queue: collections.deque[tuple[int, int]] = collections.deque()
    start = threading.Barrier(producers + 1)

    def produce(ident: int) -> None:
        start.wait()
        for i in range(per_thread):
            queue.append((ident, i))  # work first, then wake: the order the contract relies on
            waker.wake()

    threads = [start_thread(lambda i=i: produce(i)) for i in range(producers)]  # type: ignore[misc]
    seen = [0] * producers
    count = 0

    def look() -> None:
        nonlocal count
        while queue:
            ident, i = queue.popleft()
            assert seen[ident] == i, "per-producer order"
            seen[ident] = i + 1
            count += 1

    with selectors.DefaultSelector() as sel:
        sel.register(waker, selectors.EVENT_READ)
        start.wait()
        while count < total:
            if not sel.select(GUARD):
                pytest.fail(f"lost wakeup: {count}/{total} seen, {len(queue)} queued, {waker!r}")
            if recipe == "drain first":
                waker.drain()
                look()
            else:
                look()
                if waker.drain():
                    look()
    for t in threads:
        t.join(GUARD)
    assert seen == [per_thread] * producers
    assert not queue
    # Nothing is stuck: a fresh wake still wakes.
    waker.drain()
    waker.wake()
    assert readable(waker)


def test_concurrent_wakes_write_at_most_once_per_drain(
    waker: aiowake.Waker, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes = 0
    real_write = _waker._write
    lock = threading.Lock()

    def counting_write(fd: int, data: bytes) -> int:
        nonlocal writes
        with lock:
            writes += 1
        return real_write(fd, data)

    monkeypatch.setattr(_waker, "_write", counting_write)
    start = threading.Barrier(8)

    def hammer() -> None:
        start.wait()
        for _ in range(20_000):
            waker.wake()

    threads = [start_thread(hammer) for _ in range(8)]
    for t in threads:
        t.join(GUARD)
    assert writes == 1, "eight threads, 160,000 wakes, no drain: one write"
    assert waker.drain()
    assert not readable(waker)


def test_close_racing_wakes_never_writes_into_a_reused_descriptor(backend: BackendName) -> None:
    """Threads wake (and drain, so that wakes keep writing) while the main thread closes the waker
    and at once opens pipes that are likely to get the freed numbers. No byte may reach them."""
    errors: list[BaseException] = []
    for _ in range(200):
        w = aiowake.Waker(backend)
        stop = threading.Event()
        running = threading.Semaphore(0)

        def hammer(
            w: aiowake.Waker = w,
            stop: threading.Event = stop,
            running: threading.Semaphore = running,
        ) -> None:
            try:
                for i in itertools.count():
                    if i == 100:
                        running.release()  # well into the wake/drain cycle now
                    if stop.is_set():
                        break
                    w.wake()
                    w.drain()
            except BaseException as e:  # pragma: no cover - a failure is recorded, not raised
                errors.append(e)

        threads = [start_thread(hammer) for _ in range(4)]
        for _ in threads:
            running.acquire(timeout=GUARD)
        w.close()
        pipes = [os.pipe() for _ in range(4)]
        stop.set()
        for t in threads:
            t.join(GUARD)
        try:
            for r, _ in pipes:
                os.set_blocking(r, False)
                with pytest.raises(BlockingIOError):
                    os.read(r, 64)
        finally:
            for r, wr in pipes:
                os.close(r)
                os.close(wr)
    assert errors == []


def test_many_wakers_many_threads_independent() -> None:
    """Wakes on one waker never make another readable."""
    with aiowake.Waker() as a, aiowake.Waker() as b:
        t = start_thread(a.wake)
        t.join(GUARD)
        assert readable(a)
        assert not readable(b)
