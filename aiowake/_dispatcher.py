"""``Dispatcher``: a batching ``loop.call_soon_threadsafe``."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import warnings
from collections.abc import Callable
from contextvars import Context
from contextvars import copy_context as _copy_context
from types import TracebackType
from typing import NoReturn, Self, TypeVarTuple, Unpack, final

from ._channel import Channel, acquire_channel
from ._handle import DispatcherHandle, Job, source_traceback

__all__ = ["Dispatcher"]

_Ts = TypeVarTuple("_Ts")
_new_handle = object.__new__


def _is_closed_check(loop: asyncio.AbstractEventLoop) -> Callable[[], bool]:
    """``loop.is_closed``, as a C-level call where that is the same thing: asyncio's own
    is_closed() is a Python method returning ``_closed``, and the post path calls it every time."""
    if getattr(type(loop), "is_closed", None) is asyncio.BaseEventLoop.is_closed:
        return functools.partial(getattr, loop, "_closed")
    return loop.is_closed


@final
class Dispatcher:
    """Run callbacks posted from any thread on one loop, many posts for one wakeup.

    ``Dispatcher(loop)`` (default: the running loop) shares the loop's aiowake channel with its
    Events and other Dispatchers. Callbacks run on the loop's thread, in the order posted, each in
    the context that was current when it was posted; one batch runs only what was queued when it
    began. A callback's exception goes to ``loop.call_exception_handler`` and the others still run.

    Close it (or use ``with``) before closing the loop: it then refuses new posts, and callbacks
    posted before still run, now or when the loop next runs. (A loop closed before it gets to them
    drops them, as it drops its own ready callbacks; the loop's shared descriptor is then released
    only when the loop object is garbage-collected, with a ResourceWarning.) A loop without
    ``add_reader`` (Windows' proactor loop) is refused with RuntimeError.
    """

    __slots__ = (
        "__weakref__",
        "_append",
        "_channel",
        "_closed",
        "_debug",
        "_loop",
        "_loop_is_closed",
        "_queue",
        "_take_token",
        "_write_token",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._closed = True  # until the channel is ours, so that __del__ has nothing to do
        if loop is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                raise RuntimeError(
                    "Dispatcher() needs a running asyncio event loop (stock asyncio or uvloop), "
                    "or pass one: Dispatcher(loop). Under trio or another library with no "
                    "asyncio loop, watch a Waker instead (trio.lowlevel.wait_readable(waker))"
                ) from None
        elif not isinstance(loop, asyncio.AbstractEventLoop):
            raise TypeError(
                f"loop must be an asyncio.AbstractEventLoop (or None), not {type(loop).__name__}"
            )
        if loop.is_closed():
            raise RuntimeError("Event loop is closed")
        self._loop = loop
        self._channel: Channel = acquire_channel(loop)
        # The post path's calls, bound once: call_soon_threadsafe is the burst hot path. The wake
        # is Waker.wake() in its two steps, so that a pending one costs a C call, not a method.
        waker = self._channel._waker
        self._queue = self._channel._queue
        self._append = self._queue.append
        self._take_token = waker._take_token
        self._write_token = waker._write_token
        self._loop_is_closed = _is_closed_check(loop)
        # Debug mode as it is now: asyncio.run(debug=True) and PYTHONASYNCIODEBUG set it before
        # any Dispatcher can be made, and a post reads one attribute instead of calling a method.
        self._debug = loop.get_debug()
        self._closed = False

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    @property
    def closed(self) -> bool:
        return self._closed

    def call_soon_threadsafe(
        self,
        callback: Callable[[Unpack[_Ts]], object],
        *args: *_Ts,
        context: contextvars.Context | None = None,
    ) -> DispatcherHandle:
        """Any thread: run ``callback(*args)`` on the loop soon; return a handle to cancel it.

        Posts from one thread run in the order made. Any number of posts before the loop next
        runs its batch cost one wakeup in all. Raises RuntimeError after ``close()`` or once the
        loop is closed, as ``loop.call_soon_threadsafe`` does. Without a need to cancel,
        ``post()`` is the faster way.
        """
        if (
            self._closed
            or self._loop_is_closed()
            or not callable(callback)
            or self._debug
            or (context is not None and type(context) is not Context)
        ):
            self._check(callback, context)
        # DispatcherHandle(callback, args, context), without the __init__ call (see there).
        handle = _new_handle(DispatcherHandle)
        handle._callback = callback
        handle._args = args
        # A copy of an empty context (any plain thread's) is an empty one, which the batch
        # provides: None here, so that the copy dies at once instead of waiting in the queue.
        handle._context = (_copy_context() or None) if context is None else context
        if self._debug:
            handle._source_traceback = source_traceback(1)
        # First the job, then the wake, as Waker.wake() does it: the order the channel's
        # no-lost-wakeup rests on. The job is inside the try too: a signal handler's exception
        # striking right after the append must still leave the wake pending (the rescue). Then
        # the backlog (Channel.after_post). post() below has the same lines, as Channel.post()
        # does: a shared helper would be a call more per post on the burst hot path.
        try:
            self._append(handle)
            if self._take_token() is not None:
                self._write_token()
        except BaseException:
            self._channel._waker._rescue()  # see there
            raise
        if len(self._queue) > self._channel.limit:
            self._channel.after_post()
        return handle

    def post(
        self,
        callback: Callable[[Unpack[_Ts]], object],
        *args: *_Ts,
        context: contextvars.Context | None = None,
    ) -> None:
        """Any thread: run ``callback(*args)`` on the loop soon, as ``call_soon_threadsafe()``
        does (same order, same context, same errors), but return nothing: it cannot be cancelled.

        In exchange a post without arguments from an empty context (any plain thread's) queues
        the callback itself, and nothing else: no object per post for the garbage collector to
        track while it waits, which is most of what a burst of posts costs beyond the calls.
        """
        if (
            self._closed
            or self._loop_is_closed()
            or not callable(callback)
            or self._debug
            or (context is not None and type(context) is not Context)
        ):
            self._check(callback, context)
        if context is None:
            context = _copy_context() or None  # as in call_soon_threadsafe()
        job: Job
        if args or context is not None or self._debug:
            job = _new_handle(DispatcherHandle)
            job._callback = callback
            job._args = args
            job._context = context
            if self._debug:
                job._source_traceback = source_traceback(1)
        else:
            job = callback
        try:  # as in call_soon_threadsafe()
            self._append(job)
            if self._take_token() is not None:
                self._write_token()
        except BaseException:
            self._channel._waker._rescue()
            raise
        if len(self._queue) > self._channel.limit:
            self._channel.after_post()

    def try_post(
        self,
        callback: Callable[[Unpack[_Ts]], object],
        *args: *_Ts,
        context: contextvars.Context | None = None,
    ) -> bool:
        """Any thread: ``post()``, returning True, or False where ``post()`` would raise
        RuntimeError because the Dispatcher or its loop is closed. For producers that race
        shutdown: no ``try`` needed. A wrong callback or context still raises TypeError."""
        if self._closed or self._loop_is_closed():
            return False
        try:
            self.post(callback, *args, context=context)
        except RuntimeError:
            if self._closed or self._loop_is_closed():
                return False  # closed since the look above
            raise
        return True

    @property
    def backlog(self) -> int:
        """How many callbacks are queued for the loop and not yet run, from every Dispatcher
        and Event of the loop (they share one queue). A post that leaves more than
        ``aiowake.MAX_BACKLOG`` queued makes its thread wait for the loop to catch up, unless it
        is the main thread or the loop's own."""
        return len(self._queue)

    def _check(self, callback: object, context: object) -> None:
        """The post path's rare cases: raise why a post is refused, or return (debug mode, or a
        context to check). Closed stays closed, so what failed there fails here."""
        if self._closed:
            raise RuntimeError(f"{self!r} is closed; try_post() returns False instead of raising")
        if self._loop_is_closed():
            raise RuntimeError("Event loop is closed; try_post() returns False instead of raising")
        if asyncio.iscoroutine(callback) or asyncio.iscoroutinefunction(callback):
            # asyncio's own check, made in debug mode as asyncio makes it; outside it, at no
            # cost to the post, the batch reports the coroutine such a callback returns.
            raise TypeError(
                "coroutines cannot be used with call_soon_threadsafe() or post(): use "
                "asyncio.run_coroutine_threadsafe() to run a coroutine on the loop"
            )
        if not callable(callback):
            raise TypeError(f"a callable object was expected, got {callback!r}")
        if context is not None and not isinstance(context, Context):
            raise TypeError(
                f"context must be a contextvars.Context or None, not {type(context).__name__}"
            )

    def close(self) -> None:
        """Refuse posts from now on; those made before still run, also those racing this
        close from other threads (unless the loop closes first, which drops them as it drops
        its own callbacks). Idempotent; any thread; never raises, also when the loop is being
        stopped or closed meanwhile."""
        if self._closed:
            return
        self._closed = True
        self._channel.release_now()

    def __reduce_ex__(self, protocol: object) -> NoReturn:
        raise TypeError(
            f"cannot pickle or copy {type(self).__name__!r} object: it holds a use of its "
            "loop's channel; make a new Dispatcher(loop) instead"
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<aiowake.Dispatcher {state} loop={self._loop!r}>"

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            self._closed = True
            self._channel.release()  # a finalizer's: takes no lock (see _channel)
            # Released first: under -W error the warning raises.
            warnings.warn(f"unclosed {self!r}", ResourceWarning, source=self, stacklevel=2)
