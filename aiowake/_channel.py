"""One wakeup channel per event loop, shared by all of that loop's Events, Dispatchers and Queues.

A channel is a ``Waker`` watched with ``loop.add_reader`` plus a deque of jobs: ``DispatcherHandle``
objects, or bare callbacks from ``Dispatcher.post``, one entry per job either way (so that one
``popleft`` takes a whole job: a signal handler's exception never leaves half of one queued).

**Posting.** Any thread or signal handler posts a job: append, then wake, then compare the backlog
with ``limit`` (see ``after_post``). ``deque.append``/``popleft`` are atomic against other threads
(the GIL; a C call is never split) and against signal handlers (they run between bytecodes).

**The batch.** The loop runs jobs in ``_run_batch``: count the queue, run that many (at most
``BATCH_MAX``); then, if jobs are left, leave the wake pending; if none, drain, and wake itself
again if a job came by then. Nothing is lost, because every job is appended *before* its wake: a
job is either counted by this batch or appended after the count. If the batch then finds jobs
left, it reads nothing, so the byte that made the descriptor readable is still there and the
reader runs again. If it finds none and drains, either the job's wake comes later (it writes,
since the drain re-armed the waker) or it came earlier and was consumed by the drain, and then
the job is in the queue when the batch looks again after the drain, and the batch wakes again.
Draining *after* the jobs puts the first job one system call sooner, and posts made during the
batch find the waker still pending and make no system call: a loop kept busy by posts makes no
system call of ours at all. Jobs beyond ``BATCH_MAX`` wait for the next iteration, after the
loop's timers and I/O.

**Lifetime.** Users (a Dispatcher until it closes, a task while it waits on an Event or a Queue)
come through ``acquire_channel()`` and leave through ``release()``. Three rules keep the
collector and signal handlers out of trouble:

1. ``release()`` takes no lock and closes nothing: it pops a use (one C call) and, after the
   last, asks the loop's thread to close the channel if still unused. Finalizers call it (a task
   abandoned in ``Event.wait()`` is closed by the collector, on any thread, at any bytecode on
   3.12+), so it must never wait for a lock the interrupted code may hold, nor close a descriptor
   the interrupted code may be writing to.
2. ``_registry_lock`` is taken only by ``acquire_channel()`` and by the close on the loop's
   thread (``_close_if_unused``), neither of which any finalizer runs.
3. The registry holds channels weakly, keyed by ``id(loop)``: a channel lives as long as its users
   or the loop's reader refer to it, and a closed loop drops its readers, so a loop closed with
   its channel still open frees both (the channel's descriptor is closed by a
   ``weakref.finalize``, which runs when nothing can be using it).

**Closing.** A channel closes on the loop's thread when its last user has left (unless one came
back meanwhile: an Event awaited in a loop keeps its channel instead of re-creating it every
round), or when its registration failed. A post that raced the close (it passed its poster's
"closed?" check, then appended after the close had looked at the queue) is not lost: the close
sets ``limit`` to -1 and ``closed`` *before* it looks at the queue, and a poster compares the
backlog with ``limit`` (or looks at ``closed``) *after* its append, so either the close sees
the job or the poster sees the close, and then asks the loop to run what is left
(``after_post``). A closed channel runs its leftovers through
``loop.call_soon`` instead of wakeups; only a closed loop drops them, as it drops its own
callbacks.

**Backpressure.** A pending wake makes no system call, so a producer thread never gives up the
GIL on its own and could queue millions of jobs while the loop runs one batch per iteration. So a
Dispatcher's post that leaves more than ``MAX_BACKLOG`` jobs queued makes its thread wait until
the loop has brought the backlog down to ``RESUME_BACKLOG``: only a plain thread, never the main
thread (it may be in a signal handler) nor the loop's own (it would wait for itself), never
while the loop is not running or makes no progress, and never holding a lock (a finalizer may
post inside the wait). The library's own posts (an Event's resume, a Queue's service) are one
job per loop iteration and never wait.

**Signal exceptions on the loop side.** A signal handler's exception may strike the library's
own jobs before they did their work; those jobs may run twice (they look at what is left to
do), so the batch puts such a job back first in line (``repeatable``).
"""

from __future__ import annotations

import asyncio
import collections
import os
import threading
import time
import types
import weakref
from asyncio.log import logger
from collections.abc import Callable
from contextvars import Context as _new_context
from typing import Final, TypeVar, final

from ._handle import DispatcherHandle, Job, describe, report_exception
from ._waker import Waker

_F = TypeVar("_F", bound=Callable[..., object])

__all__ = [
    "BATCH_MAX",
    "MAX_BACKLOG",
    "RESUME_BACKLOG",
    "Channel",
    "acquire_channel",
    "refuse_loop_without_readers",
    "repeatable",
]

#: The most jobs one batch runs. Stock asyncio runs every callback ready when an iteration starts,
#: each as its own handle; a batch is one handle, so without a bound 100,000 queued posts would
#: hold the loop for tens of milliseconds in one go. The rest run in the next iteration.
BATCH_MAX: Final = 4096
#: A post that leaves more jobs than this queued makes a plain thread wait (see the docstring)...
MAX_BACKLOG: Final = 16 * BATCH_MAX
#: ...until the loop has brought the backlog down to this.
RESUME_BACKLOG: Final = 2 * BATCH_MAX
#: How long a thread waiting for the backlog sleeps between looks at it...
_THROTTLE_SLEEP_S: Final = 0.001
#: ...and over how long the loop must have made progress for it to go on waiting.
_THROTTLE_POLL_S: Final = 0.05


def refuse_loop_without_readers(loop: asyncio.AbstractEventLoop) -> None:
    """Raise RuntimeError for a loop that cannot watch a descriptor (Windows' proactor loop)."""
    if getattr(type(loop), "add_reader", None) is asyncio.AbstractEventLoop.add_reader:
        raise RuntimeError(_no_readers(loop))


def _no_readers(loop: asyncio.AbstractEventLoop) -> str:
    return (
        f"{type(loop).__name__} has no add_reader(); aiowake needs a selector-based loop or "
        "uvloop (on Windows: asyncio.SelectorEventLoop, not the default ProactorEventLoop)"
    )


#: The library's own jobs that may run twice (they look at what is left to do): a signal
#: handler's exception striking one must not lose it (see Channel._requeue_if_repeatable).
_REPEATABLE: set[Callable[..., object]] = set()


def repeatable(fn: _F) -> _F:
    """Mark *fn* (a function, or the function of a bound method) as a job that may run twice."""
    _REPEATABLE.add(fn)
    return fn


def _is_repeatable(job: Job) -> bool:
    callback = job._callback if type(job) is DispatcherHandle else job
    return getattr(callback, "__func__", callback) in _REPEATABLE


def _refuse_coroutine(
    loop: asyncio.AbstractEventLoop, job: Job, callback: object, coro: object
) -> None:
    """Loop thread: a callback returned a coroutine, which nobody will ever await. Close it
    (no "never awaited" warning far from here) and report the mistake as the callback's error."""
    close = getattr(coro, "close", None)
    if close is not None:
        close()
    exc = TypeError(
        f"{callback!r} returned a coroutine: coroutine functions cannot be posted as callbacks "
        "(asyncio.run_coroutine_threadsafe() runs a coroutine on a loop from another thread)"
    )
    report_exception(loop, job, callback, exc)


@final
class Channel:
    __slots__ = (
        "__weakref__",
        "_fd",
        "_loop",
        "_queue",
        "_requeued",
        "_uses",
        "_waker",
        "closed",
        "limit",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._queue: collections.deque[Job] = collections.deque()
        # One entry per use: append and pop are single C calls, so release() needs no lock.
        self._uses: list[None] = []
        self._requeued: Job | None = None  # the job last put back (see _requeue_if_repeatable)
        self.closed = False
        #: What a poster compares the backlog with after its append: MAX_BACKLOG while open, -1
        #: once closed, so that one comparison catches both rare cases (see ``after_post``).
        self.limit = MAX_BACKLOG
        self._waker = waker = Waker()
        self._fd = waker.fileno()
        # Closes the descriptor when the channel goes without having been closed (its loop was
        # closed first): then nothing refers to the channel, so nobody is inside its waker.
        weakref.finalize(self, waker.close)

    def _register(self) -> None:
        """Loop thread (or loop not running). Wakes posted before this are not lost: they left
        the waker readable."""
        loop = self._loop
        if self.closed or loop.is_closed():
            return
        try:
            # Our descriptor number is new, so a registration the loop holds for it is stale: a
            # descriptor closed without remove_reader. asyncio's add_reader would then only
            # replace that key's callback and never tell epoll about our descriptor.
            loop.remove_reader(self._fd)
            loop.add_reader(self._fd, self._run_batch)
        except BaseException as exc:
            with _registry_lock:
                self._unpublish()
            self._close()
            if isinstance(exc, NotImplementedError):
                raise RuntimeError(_no_readers(loop)) from exc
            raise

    def post(self, job: Job) -> None:
        """Any thread or signal handler: queue *job* for the loop's next batch. Raises nothing
        of its own, and never waits: the library's own posts (an Event's set, a Queue's
        service) are one job each and must not block, so only a Dispatcher's posts wait for the
        backlog. After the channel closed the job still runs (``after_post``)."""
        try:
            self._queue.append(job)  # first the job...
            self._waker.wake()  # ...then the wake (see the module docstring)
        except BaseException:
            # A signal handler's exception may strike between the two: leave the job's wake
            # pending all the same (see Waker._rescue).
            self._waker._rescue()
            raise
        if self.closed:
            self.after_post()

    def after_post(self) -> None:
        """Any thread or signal handler, after a post found the backlog over ``limit``: if the
        channel has closed, have the loop run what is left; else maybe wait for the loop."""
        if self.closed:
            try:
                self._loop.call_soon_threadsafe(self._run_batch)
            except RuntimeError:
                pass  # the loop is closed: it drops what it has not run, as it drops its own
            return
        if threading.current_thread() is threading.main_thread():
            return  # maybe a signal handler: never wait there
        loop = self._loop
        if asyncio._get_running_loop() is loop:
            return  # the loop's own thread would wait for itself
        # Sleep, not a lock or an Event: a finalizer the collector runs inside this wait may
        # post too, and must find nothing held. And wait only while the loop makes progress: a
        # loop thread blocked on this very producer (a join() inside a callback) must not make
        # it wait for good.
        queue = self._queue
        backlog = len(queue)
        waited = 0.0
        while backlog > RESUME_BACKLOG and not self.closed and loop.is_running():
            time.sleep(_THROTTLE_SLEEP_S)
            waited += _THROTTLE_SLEEP_S
            if waited >= _THROTTLE_POLL_S:
                if len(queue) >= backlog:
                    return  # no batch ran for a whole poll: stuck, or gone
                backlog, waited = len(queue), 0.0
            elif len(queue) <= RESUME_BACKLOG:
                return

    def _run_batch(self) -> None:
        """Loop thread: the reader. Runs the jobs counted at its start (at most BATCH_MAX)."""
        queue = self._queue
        try:
            if self._loop.get_debug():
                self._run_jobs_debug()
            else:
                self._run_jobs()
        finally:
            # Also after a job let KeyboardInterrupt or SystemExit out: the rest still run.
            if self.closed:
                if queue:  # leftovers: no wakeups any more, so the loop's own ready queue
                    self._loop.call_soon(self._run_batch)
            elif not queue:
                # Drain, then look (see the module docstring); the look in a `finally`, so that
                # a signal handler's exception striking after the drain cannot skip it.
                try:
                    self._waker.drain()
                finally:
                    if queue:
                        self._waker.wake()
            # else: jobs are left, and the byte that woke this batch is still unread, so the
            # loop comes straight back for them: no read, no write.

    def _run_jobs(self) -> None:
        """The batch's jobs. Each job's run is inlined here, where ``_run_job`` would cost a call
        per job: this loop is the burst hot path."""
        queue = self._queue
        popleft = queue.popleft
        # The context for the jobs posted from an empty one (context None). Each must start in
        # an empty context, and one that a callback left empty is as good as new: nobody else
        # holds it (copy_context() copies; only a Token of a variable set and since reset
        # refers to it). So one serves them all until a callback leaves a variable set in it.
        empty = _new_context()
        # Jobs queued after the count, or beyond BATCH_MAX, wait for the next batch.
        for _ in range(min(len(queue), BATCH_MAX)):
            job = callback = None
            try:
                job = popleft()
                if type(job) is DispatcherHandle:  # type(), which no callable can pretend
                    callback = job._callback  # read once: a racing cancel() sets it to None
                    if callback is None:
                        continue
                    context, args = job._context, job._args
                else:  # from Dispatcher.post(): a callback alone, no arguments, context empty
                    callback, args, context = job, (), None
                if context is None:
                    if empty:  # the last callback left a variable set in it
                        empty = _new_context()
                    context = empty
                # Most posts have no arguments: a plain call then spares building the
                # argument tuple that f(x, *args) makes.
                result = context.run(callback, *args) if args else context.run(callback)
                if result is not None and type(result) is types.CoroutineType:
                    _refuse_coroutine(self._loop, job, callback, result)
            except (SystemExit, KeyboardInterrupt):
                self._requeue_if_repeatable(job)
                raise
            except BaseException as exc:  # as asyncio's Handle reports a failing callback
                if job is None:
                    raise  # out of popleft(): not a callback's
                self._requeue_if_repeatable(job)
                report_exception(self._loop, job, callback, exc)

    def _run_job(self, job: Job) -> None:
        """Loop thread: one job, as ``_run_jobs`` runs it (which says why it does not call this)."""
        if type(job) is DispatcherHandle:
            callback = job._callback
            if callback is None:
                return
            context, args = job._context, job._args
        else:
            callback, args, context = job, (), None
        try:
            result = (context or _new_context()).run(callback, *args)
            if result is not None and type(result) is types.CoroutineType:
                _refuse_coroutine(self._loop, job, callback, result)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._requeue_if_repeatable(job)
            report_exception(self._loop, job, callback, exc)

    def _run_jobs_debug(self) -> None:
        """The batch in asyncio's debug mode: each slow callback is reported by name, as asyncio
        reports a slow handle, and the batch ends early once it has taken half of
        ``loop.slow_callback_duration``, so that many fast callbacks never make our reader look
        slow."""
        loop, queue = self._loop, self._queue
        slow = loop.slow_callback_duration
        deadline = loop.time() + slow / 2
        for _ in range(min(len(queue), BATCH_MAX)):
            job = None
            try:
                job = queue.popleft()
                start = loop.time()
                self._run_job(job)
            except (SystemExit, KeyboardInterrupt):
                self._requeue_if_repeatable(job)
                raise
            now = loop.time()
            if now - start >= slow:
                logger.warning("Executing %s took %.3f seconds", describe(job), now - start)
            if now >= deadline:
                break

    def _requeue_if_repeatable(self, job: Job | None) -> None:
        """Loop thread, after an exception left a job of the batch: maybe a signal handler's,
        striking our own code before it did its work. Put the library's own jobs back first in
        line, where the next batch runs them again; once in a row, so that a job that fails
        for good cannot make every iteration fail. (A user's callback has run, or started, as
        asyncio's would have: it is never run twice.)"""
        if job is None or job is self._requeued or not _is_repeatable(job):
            return
        self._requeued = job
        self._queue.appendleft(job)

    @property
    def backlog(self) -> int:
        """How many jobs are queued and not yet taken by a batch."""
        return len(self._queue)

    def release(self) -> None:
        """Any thread, also a finalizer or a signal handler: one use fewer. Takes no lock, closes
        nothing, raises nothing (see rule 1 in the module docstring)."""
        self._uses.pop()
        if not self._uses:
            self._close_soon()

    def release_now(self) -> None:
        """Like ``release()``, for an explicit close() (never a finalizer's): if the loop is not
        running, or closed by now, close the channel here and now, so that its descriptor goes at
        once."""
        self._uses.pop()
        if self._uses:
            return
        if self._loop.is_running() and self._close_soon():
            return
        if not self._close_if_unused(blocking=False):
            self._close_soon()

    def _close_soon(self) -> bool:
        """Any thread: have the loop's thread close the channel if it is still unused then.
        False if the loop is closed: then the channel goes with it (rule 3)."""
        loop = self._loop
        try:
            if asyncio._get_running_loop() is loop:
                loop.call_soon(self._close_if_unused)
            else:
                loop.call_soon_threadsafe(self._close_if_unused)
        except RuntimeError:
            return False
        return True

    def _close_if_unused(self, blocking: bool = True) -> bool:
        """Loop thread, or loop not running. False if *blocking* is False and the registry's
        lock was taken (maybe by this very thread, interrupted inside ``acquire_channel``)."""
        if not _registry_lock.acquire(blocking):
            return False
        try:
            if self._uses:
                return True  # someone came back
            self._unpublish()
        finally:
            _registry_lock.release()
        self._close()
        return True

    def _unpublish(self) -> None:
        """With ``_registry_lock`` held: no acquire_channel() finds this channel any more."""
        if _registry.get(id(self._loop)) is self:
            del _registry[id(self._loop)]

    def _close(self) -> None:
        """Loop thread, or loop closed; unpublished first. Idempotent. Queued jobs still run (see
        the module docstring), unless the loop is closed."""
        if self.closed:
            return
        self.limit = -1  # first: a post that appends after this sees it (see after_post)
        self.closed = True
        loop = self._loop
        try:
            if not loop.is_closed():
                loop.remove_reader(self._fd)
                if self._queue:
                    # From another thread, threadsafe: "not running" may have been true only
                    # until the loop started, and then a plain call_soon could sit unseen
                    # while the loop waits in its poll.
                    if asyncio._get_running_loop() is loop:
                        loop.call_soon(self._run_batch)
                    else:
                        loop.call_soon_threadsafe(self._run_batch)
        except Exception:
            # Here on a thread of its own (the loop not running), another thread may close the
            # loop between the look and the calls: then it has dropped its readers and what it
            # had not run, and there is nothing left to undo.
            if not loop.is_closed():
                raise
        if loop.is_closed():
            self._queue.clear()
        self._waker.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"uses={len(self._uses)}"
        return f"<aiowake channel {state} backlog={len(self._queue)} fd={self._fd}>"


#: The open channel of each loop, by ``id(loop)``: the channel refers to its loop, so the id
#: cannot be reused while the entry exists (rule 3 in the module docstring).
_registry: weakref.WeakValueDictionary[int, Channel] = weakref.WeakValueDictionary()
_registry_lock = threading.Lock()


def acquire_channel(loop: asyncio.AbstractEventLoop) -> Channel:
    """Any thread, not a finalizer or signal handler: the open channel of *loop* (made and
    registered if needed), one more use. Raises RuntimeError for a closed loop or one without
    readers, and what ``add_reader`` raises when the registration is made here."""
    refuse_loop_without_readers(loop)
    if loop.is_closed():
        raise RuntimeError("Event loop is closed")
    with _registry_lock:
        channel = _registry.get(id(loop))
        new = channel is None
        if channel is None:
            channel = _registry[id(loop)] = Channel(loop)
        channel._uses.append(None)
    if new:
        try:
            if asyncio._get_running_loop() is loop or not loop.is_running():
                channel._register()
            else:
                loop.call_soon_threadsafe(channel._register)
        except BaseException:
            channel._uses.pop()
            with _registry_lock:
                channel._unpublish()
            channel._close()
            raise
    return channel


def _reset_after_fork() -> None:
    global _registry_lock
    _registry_lock = threading.Lock()  # may have been held by a thread the child does not have


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)
