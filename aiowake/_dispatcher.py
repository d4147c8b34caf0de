"""``Dispatcher``: a batching ``loop.call_soon_threadsafe``."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import warnings
from collections.abc import Callable
from contextvars import copy_context as _copy_context
from types import TracebackType
from typing import NoReturn, Self, TypeVarTuple, Unpack, final

from ._channel import Channel, acquire_channel
from ._handle import DispatcherHandle, Job

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
        "_loop",
        "_loop_is_closed",
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
                    "Dispatcher() needs a running event loop, or pass one: Dispatcher(loop)"
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
        self._append = self._channel._queue.append
        self._take_token = waker._take_token
        self._write_token = waker._write_token
        self._loop_is_closed = _is_closed_check(loop)
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
        if self._closed or self._loop_is_closed() or not callable(callback):
            self._refuse(callback)
        # DispatcherHandle(callback, args, context), without the __init__ call: a fifth of a post.
        handle = _new_handle(DispatcherHandle)
        handle._callback = callback
        handle._args = args
        # A copy of an empty context (any plain thread's) is an empty one, which the batch
        # provides: None here, so that the copy dies at once instead of waiting in the queue.
        handle._context = (_copy_context() or None) if context is None else context
        # First the job, then the wake, as Waker.wake() does it: the order the channel's
        # no-lost-wakeup rests on. The job is inside the try too: a signal handler's exception
        # striking right after the append must still leave the wake pending (the rescue).
        # (post() below has the same lines: a shared helper would be a call more per post.)
        try:
            self._append(handle)
            if self._take_token() is not None:
                self._write_token()
        except BaseException:
            self._channel._waker._rescue()  # see there
            raise
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
        if self._closed or self._loop_is_closed() or not callable(callback):
            self._refuse(callback)
        if context is None:
            context = _copy_context() or None  # as in call_soon_threadsafe()
        job: Job
        if args or context is not None:
            job = _new_handle(DispatcherHandle)
            job._callback = callback
            job._args = args
            job._context = context
        else:
            job = callback
        try:  # as in call_soon_threadsafe()
            self._append(job)
            if self._take_token() is not None:
                self._write_token()
        except BaseException:
            self._channel._waker._rescue()
            raise

    def _refuse(self, callback: object) -> NoReturn:
        """Raise why a post was refused. Closed stays closed, so what failed there fails here."""
        if self._closed:
            raise RuntimeError(f"{self!r} is closed")
        if self._loop_is_closed():
            raise RuntimeError("Event loop is closed")
        raise TypeError(f"a callable object was expected, got {callback!r}")

    def close(self) -> None:
        """Refuse posts from now on; those made before still run. Idempotent; any thread."""
        if self._closed:
            return
        self._closed = True
        self._channel.release()

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
        if not self._closed:
            warnings.warn(f"unclosed {self!r}", ResourceWarning, source=self, stacklevel=2)
            self.close()
