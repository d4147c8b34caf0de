"""``Event``: ``threading.Event`` for an event loop — set from anywhere, awaited in the loop."""

from __future__ import annotations

import asyncio
import collections
from typing import final

from ._channel import Channel, acquire_channel
from ._handle import DispatcherHandle

__all__ = ["Event"]


@final
class Event:
    """An event flag that any thread or signal handler may set and coroutines of one loop await.

    Like ``asyncio.Event``, it binds to the running loop of its first waiter; awaiting it from
    another loop raises RuntimeError. It costs no descriptor of its own: while tasks wait on it,
    it shares its loop's one aiowake channel with every other Event and Dispatcher there.

    Works on stock asyncio and on uvloop.
    """

    __slots__ = ("_channel", "_loop", "_value", "_waiters")

    def __init__(self) -> None:
        self._value = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._channel: Channel | None = None
        self._waiters: collections.deque[asyncio.Future[bool]] = collections.deque()

    def is_set(self) -> bool:
        """True once ``set()`` and until ``clear()``. Any thread."""
        return self._value

    def set(self) -> None:
        """Set the flag and wake every task waiting now. Idempotent.

        Any thread may call it, and so may a Python signal handler. From a task on the event's own
        loop the waiters are woken directly, with no wakeup round-trip; elsewhere it costs at most
        one write, shared with every other wake of the loop before it next runs.
        """
        if self._value:
            return
        # Write the flag, then read the waiters; wait() does the mirror image (register, then read
        # the flag). With the GIL making these steps sequentially consistent, at least one side
        # sees the other: a set() never misses a waiter that wait() then leaves blocked.
        self._value = True
        # The waiters of *this* set: those registered by now. A task that starts waiting after
        # a later clear() must not be woken by this set when the loop gets to it. tuple() of a
        # deque is one C call, atomic against the loop thread and against signal handlers.
        waiters = tuple(self._waiters)
        if not waiters:
            return
        loop = self._loop
        if asyncio._get_running_loop() is loop and asyncio.current_task(loop) is not None:
            # Inside a task of the loop (maybe in a signal handler that interrupted it): the loop
            # will run its ready queue before it next polls. Elsewhere on the loop's thread --
            # a signal handler that interrupted select() -- a call_soon could sit unseen until the
            # poll times out, so that case goes through the channel below.
            _wake(waiters)
            return
        channel = self._channel
        if channel is not None:
            channel.post(DispatcherHandle(_wake, (waiters,), None))

    def clear(self) -> None:
        """Reset the flag; later ``wait()`` calls block until the next ``set()``. Any thread.

        Tasks already woken by an earlier ``set()`` still return True, as with asyncio.Event.
        """
        self._value = False

    async def wait(self) -> bool:
        """Wait until the flag is set; return True. Cancellable.

        Binds the event to the running loop at the first call; from another loop it raises
        RuntimeError. A cancelled wait leaves nothing behind.
        """
        if self._value:
            return True
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif self._loop is not loop:
            raise RuntimeError(f"{self!r} is bound to a different event loop")
        channel = self._channel = acquire_channel(loop)
        fut: asyncio.Future[bool] = loop.create_future()
        self._waiters.append(fut)  # register first...
        try:
            if self.is_set():  # ...then look at the flag again (see set())
                return True
            return await fut
        finally:
            self._waiters.remove(fut)
            channel.release()

    def __repr__(self) -> str:
        state = "set" if self._value else "unset"
        waiters = f" waiters={len(self._waiters)}" if self._waiters else ""
        return f"<aiowake.Event [{state}{waiters}]>"


def _wake(waiters: tuple[asyncio.Future[bool], ...]) -> None:
    """Loop thread: wake the tasks that were waiting when ``set()`` was called (skipping the
    cancelled ones; a future already woken by an earlier set is done too)."""
    for fut in waiters:
        if not fut.done():
            fut.set_result(True)
