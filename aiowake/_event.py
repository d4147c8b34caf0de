"""``Event``: ``threading.Event`` for an event loop — set from anywhere, awaited in the loop."""

from __future__ import annotations

import asyncio
import collections
from typing import NoReturn, final

from ._channel import Channel, acquire_channel
from ._handle import DispatcherHandle
from ._waiter import Waiter, resume_all, wake_all

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
        self._waiters: collections.deque[Waiter] = collections.deque()

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
        waiters: tuple[Waiter, ...] | None = None
        try:
            self._value = True  # in the try: once the flag is set, the waiters must be woken
            # The waiters of *this* set: those registered by now. A task that starts waiting after
            # a later clear() must not be woken by this set when the loop gets to it. tuple() of a
            # deque is one C call, atomic against the loop thread and against signal handlers.
            waiters = tuple(self._waiters)
            self._wake_waiters(waiters)
        except BaseException:
            # A signal handler's exception (KeyboardInterrupt) can strike at any bytecode in
            # there, maybe before the wakeup was posted; with the flag set, no later set() would
            # post it, and the waiters would sleep on. So wake them once more: a waiter already
            # woken is done, and is skipped. Once the waiters are taken the flag was set, even
            # if another thread has cleared it since; before that, the flag tells. Struck before
            # the flag was set, nothing happened, and nobody is woken.
            if waiters is not None or self._value:
                try:
                    self._wake_waiters(tuple(self._waiters) if waiters is None else waiters)
                except BaseException:
                    pass  # the first exception is the one to report
            raise

    def _wake_waiters(self, waiters: tuple[Waiter, ...]) -> None:
        if not waiters:
            return
        loop = self._loop
        if asyncio._get_running_loop() is loop and asyncio.current_task(loop) is not None:
            # Inside a task of the loop (maybe in a signal handler that interrupted it): the loop
            # will run its ready queue before it next polls. Elsewhere on the loop's thread --
            # a signal handler that interrupted select() -- a call_soon could sit unseen until the
            # poll times out, so that case goes through the channel below.
            wake_all(waiters)
            return
        channel = self._channel
        if channel is not None:
            channel.post(DispatcherHandle(resume_all, (waiters,), None))

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
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "Event.wait() needs a running asyncio event loop (stock asyncio or uvloop); under "
                "trio or another library with no asyncio loop, watch a Waker instead "
                "(trio.lowlevel.wait_readable(waker))"
            ) from None
        if self._loop is None:
            self._loop = loop
        elif self._loop is not loop:
            raise RuntimeError(f"{self!r} is bound to a different event loop")
        fut = Waiter(loop)
        fut.channel = self._channel = acquire_channel(loop)  # the waiter's use of the channel
        self._waiters.append(fut)  # register first...
        try:
            if self.is_set():  # ...then look at the flag again (see set())
                return True
            return await fut
        finally:
            self._waiters.remove(fut)
            fut.release_channel()  # unless resume_now() has taken that over

    def __reduce_ex__(self, protocol: object) -> NoReturn:
        raise TypeError(
            f"cannot pickle or copy {type(self).__name__!r} object: its waiters belong to one "
            "event loop"
        )

    def __repr__(self) -> str:
        state = "set" if self._value else "unset"
        waiters = f" waiters={len(self._waiters)}" if self._waiters else ""
        return f"<aiowake.Event [{state}{waiters}]>"
