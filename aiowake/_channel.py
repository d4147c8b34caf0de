"""One wakeup channel per event loop, shared by all of that loop's Events and Dispatchers.

A channel is a ``Waker`` watched with ``loop.add_reader`` plus a deque of jobs: ``DispatcherHandle``
objects, or bare callbacks from ``Dispatcher.post``, one entry per job either way (so that one
``popleft`` takes a whole job: a signal handler's exception never leaves half of one queued). Any
thread or signal handler posts a job: append, then wake. The loop runs them in batches in
``_run_batch``: count the queue, run that many jobs (at most ``BATCH_MAX``); then, if jobs are
left, leave the wake pending; if none, drain, and wake itself again if a job came by then.

Why nothing is lost: every job is appended *before* its wake. A job is either counted by this
batch, or appended after the count. If the batch then finds jobs left, it reads nothing: the byte
that made the descriptor readable is still there, so the reader runs again. If it finds none and
drains, then either the job's wake comes later (it writes, since the drain re-armed the waker) or
it came earlier and was consumed by the drain, in which case the job is already in the queue when
the batch looks again after the drain, and the batch wakes again. Either way the reader runs
again. A job posted while a batch runs waits for the next batch, and so do the jobs beyond
``BATCH_MAX``, so a flood of posts cannot starve the loop's timers and other I/O.

Why drain *after* the jobs: the first job runs one system call sooner, and the read (which
releases the GIL) happens after the latency-critical part instead of before it. Posts made during
the batch find the waker still pending and make no system call, and the batch leaves it pending
for them: a loop kept busy by posts makes no system call of ours at all.

``deque.append``/``popleft`` are atomic against other threads (the GIL; a C call is never split)
and against signal handlers (they run between bytecodes), which is all ``post()`` needs.

Lifetime: users (a Dispatcher until it closes, an Event while a task waits on it) come through
``acquire_channel()`` and leave through ``release()``. When the last one leaves, the channel closes
on the loop's next iteration unless a user came back meanwhile: an Event awaited in a loop (wait,
wake, wait ...) keeps its channel instead of unregistering and re-creating it every round, which
would put two system calls and a new descriptor inside every wake. A loop with no user holds no
descriptor of ours from its next iteration on. Registration changes happen
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
from contextvars import Context as _new_context
from typing import final

from ._handle import DispatcherHandle, Job, report_exception
from ._waker import Waker

__all__ = ["Channel", "acquire_channel", "on_loop_thread", "refuse_loop_without_readers"]

#: The most jobs one batch runs. Stock asyncio runs every callback ready when an iteration starts,
#: each as its own handle; a batch is one handle, so without a bound 100,000 queued posts would
#: hold the loop for tens of milliseconds in one go (which asyncio's debug mode reports as a slow
#: callback). The rest run in the next iteration, after the loop's timers and I/O. What a batch
#: costs on its own (a loop iteration, a read, a write: ~10 µs here) spread over this many jobs
#: of ~1 µs each is a fraction of a per cent; 4,096 trivial callbacks hold the loop for a few ms.
BATCH_MAX = 4096


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

    def post(self, job: DispatcherHandle) -> None:
        """Any thread or signal handler: queue *job* for the loop's next batch."""
        try:
            self._queue.append(job)  # first the job...
            self._waker.wake()  # ...then the wake (see the module docstring)
        except BaseException:
            # A signal handler's exception may strike between the two: leave the job's wake
            # pending all the same (see Waker._rescue).
            self._waker._rescue()
            raise

    def _run_batch(self) -> None:
        queue = self._queue
        popleft = queue.popleft
        # The context for the jobs posted from an empty one (context None). Each must start in
        # an empty context, and one that a callback left empty is as good as new: nobody else
        # holds it (copy_context() copies; only a Token of a variable set and since reset
        # refers to it). So one serves them all until a callback leaves a variable set in it.
        # A Context less per job: about 20 ns, a sixth of what the batch spends on one.
        empty = _new_context()
        try:
            # Jobs queued after the count, or beyond BATCH_MAX, wait for the next batch.
            for _ in range(min(len(queue), BATCH_MAX)):
                # A job's run, inlined (handle or bare callback): this loop is the burst hot path.
                job = popleft()
                if type(job) is DispatcherHandle:  # type(), which no callable can pretend
                    callback = job._callback  # read once: a racing cancel() sets it to None
                    if callback is None:
                        continue
                    context, args = job._context, job._args
                else:  # from Dispatcher.post(): a callback alone, no arguments, context empty
                    callback, args, context = job, (), None
                try:
                    if context is None:
                        if empty:  # the last callback left a variable set in it
                            empty = _new_context()
                        context = empty
                    # Most posts have no arguments: a plain call then spares building the
                    # argument tuple that f(x, *args) makes.
                    if args:
                        context.run(callback, *args)
                    else:
                        context.run(callback)
                except (SystemExit, KeyboardInterrupt):
                    raise
                except BaseException as exc:  # as asyncio's Handle reports a failing callback
                    report_exception(self._loop, job, callback, exc)
        finally:
            # Also after a job let KeyboardInterrupt or SystemExit out: the rest still run.
            if not queue:
                # Drain, then look (see the module docstring); the look in a `finally`, so that
                # a signal handler's exception striking after the drain cannot skip it.
                try:
                    self._waker.drain()
                finally:
                    if queue and not self.closed:
                        self._waker.wake()
            # else: jobs are left, and the byte that woke this batch is still unread, so the
            # loop comes straight back for them: no read, no write.

    def release(self) -> None:
        """Any thread: one user fewer. After the last one the channel closes on the loop's next
        iteration, unless a user came back by then (see the module docstring), once the jobs
        already queued have run."""
        with _registry_lock:
            self._users -= 1
            if self._users:
                return
        loop = self._loop
        if not loop.is_running():
            self._close_if_unused()
        elif asyncio._get_running_loop() is loop:
            loop.call_soon(self._close_if_unused)
        else:
            loop.call_soon_threadsafe(self._close_if_unused)

    def _close_if_unused(self) -> None:
        """Loop thread (or loop not running)."""
        if self._queue and not self._loop.is_closed():
            # Jobs posted before their Dispatcher closed still run: the next batch is due (their
            # wake left the waker readable), so look again after it, when the loop next runs. A
            # loop closed before that drops them, as it drops its own ready callbacks, and our
            # descriptor goes with the loop.
            self._loop.call_soon(self._close_if_unused)
            return
        with _registry_lock:
            if self._users:
                return  # someone came back
            if _registry.get(self._loop) is self:
                del _registry[self._loop]
        self._close()

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
