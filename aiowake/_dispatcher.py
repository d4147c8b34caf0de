"""``Dispatcher``: a batching ``loop.call_soon_threadsafe``."""

from __future__ import annotations

import asyncio
import contextvars
import warnings
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self, TypeVarTuple, Unpack, final

from ._channel import Channel, acquire_channel

__all__ = ["Dispatcher", "DispatcherHandle"]

_Ts = TypeVarTuple("_Ts")


@final
class DispatcherHandle:
    """What ``Dispatcher.call_soon_threadsafe`` returns: ``cancel()`` keeps the callback from
    running, if it has not started yet."""

    __slots__ = ("_args", "_callback", "_cancelled", "_context", "_dispatcher")

    def __init__(
        self,
        callback: Callable[..., object],
        args: tuple[Any, ...],
        context: contextvars.Context,
        dispatcher: Dispatcher,
    ) -> None:
        self._callback = callback
        self._args = args
        self._context = context
        self._dispatcher = dispatcher
        self._cancelled = False

    def cancel(self) -> None:
        """Any thread. A cancel that races the callback's start may come too late, as with
        asyncio's handles; once it has returned on the loop's thread, the callback never runs."""
        self._cancelled = True

    def cancelled(self) -> bool:
        return self._cancelled

    def get_context(self) -> contextvars.Context:
        return self._context

    def _run(self) -> None:
        if self._cancelled or self._dispatcher._closed:
            return
        try:
            self._context.run(self._callback, *self._args)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:  # reported the way asyncio reports a failing Handle
            self._dispatcher._loop.call_exception_handler(
                {
                    "message": f"Exception in callback {self._format_callback()}",
                    "exception": exc,
                    "handle": self,
                }
            )

    def _format_callback(self) -> str:
        name = getattr(self._callback, "__qualname__", None) or repr(self._callback)
        args = ", ".join(repr(a) for a in self._args)
        return f"{name}({args})"

    def __repr__(self) -> str:
        state = " cancelled" if self._cancelled else ""
        return f"<aiowake.DispatcherHandle {self._format_callback()}{state}>"


@final
class Dispatcher:
    """Run callbacks posted from any thread on one loop, many posts for one wakeup.

    ``Dispatcher(loop)`` (default: the running loop) shares the loop's aiowake channel with its
    Events and other Dispatchers. Callbacks run on the loop's thread, in the order posted, each in
    the context that was current when it was posted; one batch runs only what was queued when it
    began. A callback's exception goes to ``loop.call_exception_handler`` and the others still run.

    Close it (or use ``with``) before closing the loop; callbacks not yet run when it closes are
    dropped, as ``loop.close()`` drops its own. A loop without ``add_reader`` (Windows' proactor
    loop) is refused with RuntimeError.
    """

    __slots__ = ("__weakref__", "_channel", "_closed", "_loop")

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
        loop is closed, as ``loop.call_soon_threadsafe`` does.
        """
        if self._closed:
            raise RuntimeError(f"{self!r} is closed")
        if self._loop.is_closed():
            raise RuntimeError("Event loop is closed")
        if not callable(callback):
            raise TypeError(f"a callable object was expected, got {callback!r}")
        handle = DispatcherHandle(
            callback, args, contextvars.copy_context() if context is None else context, self
        )
        self._channel.post(handle)
        return handle

    def close(self) -> None:
        """Stop accepting posts and drop the callbacks not yet run. Idempotent; any thread."""
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
