"""One wakeup channel per event loop, shared by all of that loop's Events and Dispatchers.

A channel is a ``Waker`` watched with ``loop.add_reader`` plus a deque of jobs (anything with a
``_run()`` method). Any thread or signal handler posts a job with ``post()``: append, then wake. The
loop runs them in batches in ``_run_batch``: drain, then run exactly the jobs queued by then.

Why nothing is lost: every job is appended *before* its wake, and a batch counts the queue *after*
its drain. A job is either counted by this batch, or was appended after the drain, so its wake
(or a later one) comes after the drain re-armed the waker and writes: the reader runs again.
A job posted while a batch runs waits for the next batch, so a flood of posts cannot starve the
loop's other I/O.

``deque.append``/``popleft`` are atomic against other threads (the GIL; a C call is never split)
and against signal handlers (they run between bytecodes), which is all ``post()`` needs.

Lifetime: users (a Dispatcher until it closes, an Event while a task waits on it) come through
``acquire_channel()`` and leave through ``release()``; the last release removes the reader and
closes the waker, so a loop with no user holds no descriptor of ours. Registration changes happen
on the loop's thread: directly if the caller is on it or the loop is not running, else through
``loop.call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import collections
import os
import threading
import weakref
from collections.abc import Callable
from typing import Protocol, final

from ._waker import Waker

__all__ = [
    "Channel",
    "Job",
    "acquire_channel",
    "on_loop_thread",
    "refuse_loop_without_readers",
]


class Job(Protocol):
    def _run(self) -> None: ...


def on_loop_thread(loop: asyncio.AbstractEventLoop, fn: Callable[[], None]) -> None:
    """Run *fn* now if that is safe for *loop*'s reader registry, else on the loop's thread."""
    if asyncio._get_running_loop() is loop or not loop.is_running():
        fn()
    else:
        loop.call_soon_threadsafe(fn)


def refuse_loop_without_readers(loop: asyncio.AbstractEventLoop) -> None:
    """Raise RuntimeError for a loop that cannot watch a descriptor (Windows' proactor loop)."""
    if getattr(type(loop), "add_reader", None) is asyncio.AbstractEventLoop.add_reader:
        raise RuntimeError(
            f"{type(loop).__name__} has no add_reader(); aiowake needs a selector-based loop or "
            "uvloop (on Windows: asyncio.SelectorEventLoop, not the default ProactorEventLoop)"
        )


@final
class Channel:
    __slots__ = ("_fd", "_loop", "_queue", "_users", "_waker", "closed")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._queue: collections.deque[Job] = collections.deque()
        self._users = 0  # guarded by _registry_lock
        self.closed = False
        self._waker = Waker()
        self._fd = self._waker.fileno()

    def _register(self) -> None:
        """Loop thread. Wakes posted before this are not lost: they left the waker readable."""
        if self.closed or self._loop.is_closed():
            return
        try:
            self._loop.add_reader(self._fd, self._run_batch)
        except BaseException:
            self._close()
            raise

    def post(self, job: Job) -> None:
        """Any thread or signal handler: queue *job* for the loop's next batch."""
        self._queue.append(job)  # first the job...
        self._waker.wake()  # ...then the wake (see the module docstring)

    def _run_batch(self) -> None:
        self._waker.drain()
        queue = self._queue
        popleft = queue.popleft
        try:
            for _ in range(len(queue)):  # counted after the drain; later posts wake us again
                popleft()._run()
        finally:
            if queue and not self.closed:
                # A job raised BaseException (KeyboardInterrupt, SystemExit) out of the batch: the
                # rest of it has been drained for already, so ask for another round.
                self._waker.wake()

    def release(self) -> None:
        """Any thread: one user fewer. The last one unregisters and closes the channel; jobs
        still queued are dropped (they belong to closed Dispatchers or to Events nobody awaits)."""
        with _registry_lock:
            self._users -= 1
            if self._users:
                return
            if _registry.get(self._loop) is self:
                del _registry[self._loop]
        on_loop_thread(self._loop, self._close)

    def _close(self) -> None:
        """Loop thread (or loop not running). Idempotent."""
        if self.closed:
            return
        self.closed = True
        if not self._loop.is_closed():
            self._loop.remove_reader(self._fd)
        self._waker.close()
        self._queue.clear()


_registry: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Channel] = (
    weakref.WeakKeyDictionary()
)
_registry_lock = threading.Lock()


def acquire_channel(loop: asyncio.AbstractEventLoop) -> Channel:
    """Any thread: the open channel of *loop* (made and registered if needed), one more user."""
    refuse_loop_without_readers(loop)
    with _registry_lock:
        channel = _registry.get(loop)
        new = channel is None
        if channel is None:
            channel = _registry[loop] = Channel(loop)
        channel._users += 1
    if new:
        on_loop_thread(loop, channel._register)
    return channel


def _reset_after_fork() -> None:
    global _registry_lock
    _registry_lock = threading.Lock()  # may have been held by a thread the child does not have


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)
