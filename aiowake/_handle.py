"""The jobs a loop's channel runs: a handle (a callback, its arguments and its context), or from
``Dispatcher.post`` a bare callback; and how the loop hears of one that failed."""

from __future__ import annotations

import asyncio
import contextvars
import sys
import traceback
from asyncio import format_helpers
from collections.abc import Callable
from typing import Any, final

__all__ = ["DispatcherHandle", "Job", "describe", "report_exception"]


@final
class DispatcherHandle:
    """What ``Dispatcher.call_soon_threadsafe`` returns: ``cancel()`` keeps the callback from
    running, if it has not started yet."""

    # Cancelled is "callback is None": cancel() is then one store, and the loop reads the callback
    # once, so a cancel racing the run never leaves it with half of a pair. No flag, no lock.
    # Making one is most of what a post costs, which is why the Dispatcher makes its handles
    # without calling __init__: _repr and _source_traceback may be unset (getattr with a
    # default). A None context is the copy of an empty one: the batch runs the callback in an
    # empty context.
    __slots__ = ("_args", "_callback", "_context", "_repr", "_source_traceback")
    _repr: str
    _source_traceback: traceback.StackSummary

    def __init__(
        self, callback: Any, args: tuple[Any, ...], context: contextvars.Context | None
    ) -> None:
        self._callback = callback
        self._args = args
        self._context = context

    def cancel(self) -> None:
        """Any thread. A cancel that races the callback's start may come too late, as with
        asyncio's handles; once it has returned on the loop's thread, the callback never runs."""
        callback = self._callback
        if callback is not None:
            self._repr = _format_callback(callback, self._args)
            self._callback = None

    def cancelled(self) -> bool:
        return self._callback is None

    def get_context(self) -> contextvars.Context | None:
        """The context the callback runs in: ``context=`` if given, else a copy of the poster's,
        made at the post. None when the poster's context was empty (any plain thread's): the
        callback then starts in an empty context, as a copy of an empty one would be."""
        return self._context

    def __repr__(self) -> str:
        if self._callback is None:
            return f"<aiowake.DispatcherHandle {self._repr} cancelled>"
        return f"<aiowake.DispatcherHandle {_format_callback(self._callback, self._args)}>"

    def __reduce_ex__(self, protocol: object) -> Any:
        raise TypeError(f"cannot pickle {type(self).__name__!r} object")


def _format_callback(callback: object, args: tuple[Any, ...]) -> str:
    name = getattr(callback, "__qualname__", None) or repr(callback)
    return f"{name}({', '.join(repr(a) for a in args)})"


#: What a channel queues: a handle, or (from ``Dispatcher.post``) a callback that takes no
#: arguments and runs in an empty context.
Job = DispatcherHandle | Callable[[], object]


def describe(job: Job) -> str:
    """The job as asyncio names a handle in its messages: ``callback(args)``."""
    if isinstance(job, DispatcherHandle):
        return repr(job)
    return _format_callback(job, ())


def source_traceback(depth: int) -> traceback.StackSummary:
    """Where a post was made, *depth* frames above the caller: what asyncio records as a
    handle's ``_source_traceback`` in debug mode."""
    return format_helpers.extract_stack(sys._getframe(depth + 1))


def report_exception(
    loop: asyncio.AbstractEventLoop, job: Job, callback: Any, exc: BaseException
) -> None:
    """Loop thread: hand *callback*'s exception to the loop, as asyncio reports a Handle's.
    *callback* is passed in, not re-read: a cancel() racing the run may have cleared it. The
    post's traceback (debug mode) goes in as ``source_traceback``, so that the report points at
    the post, not at where the loop's channel was registered."""
    handle = job if isinstance(job, DispatcherHandle) else DispatcherHandle(job, (), None)
    context: dict[str, Any] = {
        "message": f"Exception in callback {_format_callback(callback, handle._args)}",
        "exception": exc,
        "handle": handle,
    }
    source = getattr(handle, "_source_traceback", None)
    if source is not None:
        context["source_traceback"] = source
    loop.call_exception_handler(context)
