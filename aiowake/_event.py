"""``Event``: ``threading.Event`` for an event loop — set from anywhere, awaited in the loop."""

from __future__ import annotations

import asyncio
import collections
import contextvars
from collections.abc import Callable
from typing import Any, final

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
        self._waiters: collections.deque[_Waiter] = collections.deque()

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
        waiters: tuple[_Waiter, ...] | None = None
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

    def _wake_waiters(self, waiters: tuple[_Waiter, ...]) -> None:
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
            channel.post(DispatcherHandle(_resume, (waiters,), None))

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
        fut = _Waiter(loop)
        fut.channel = self._channel = acquire_channel(loop)  # the waiter's use of the channel
        self._waiters.append(fut)  # register first...
        try:
            if self.is_set():  # ...then look at the flag again (see set())
                return True
            return await fut
        finally:
            self._waiters.remove(fut)
            fut.release_channel()  # unless resume_now() has taken that over

    def __repr__(self) -> str:
        state = "set" if self._value else "unset"
        waiters = f" waiters={len(self._waiters)}" if self._waiters else ""
        return f"<aiowake.Event [{state}{waiters}]>"


def _wake(waiters: tuple[_Waiter, ...]) -> None:
    """Loop thread: wake the tasks that were waiting when ``set()`` was called (skipping the
    cancelled ones; a future already woken by an earlier set is done too). They resume on the
    loop's next iteration, as with asyncio.Event."""
    for fut in waiters:
        if not fut.done():
            fut.set_result(True)


def _resume(waiters: tuple[_Waiter, ...]) -> None:
    """Loop thread, in the channel's batch (a reader callback: no task is running): wake the tasks
    that were waiting when ``set()`` was called and resume each one right here, one loop
    iteration sooner than ``set_result()``'s scheduled callback would."""
    if asyncio.current_task(waiters[0].get_loop()) is not None:
        # A task is running after all (a loop re-entered from inside a task, as nest_asyncio
        # does): stepping another one inside it would fail, so wake them the usual way.
        _wake(waiters)
        return
    pending = iter(waiters)
    try:
        for fut in pending:
            if not fut.done():
                fut.resume_now()
    finally:
        # Only if a resumed task let KeyboardInterrupt or SystemExit out (a task keeps every other
        # exception): the rest are still woken, the usual way.
        _wake(tuple(pending))


class _Waiter(asyncio.Future[bool]):
    """The future a task awaits in ``Event.wait()``. It remembers the task's wake-up callback so
    that ``resume_now()`` can run it directly instead of scheduling it.

    Why that is safe: the batch is a reader callback, so no task is running and the task may be
    stepped, exactly as the loop would step it from its ready queue; the only difference is when.
    Cancellation is untouched: the callback stays registered with the future until
    ``resume_now()`` takes it off, so ``Task.cancel()`` (which cancels this future) schedules it
    as usual, and a cancelled future is done, which ``_resume`` skips.
    """

    __slots__ = ("_resume", "channel")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop=loop)
        # The first callback added while pending: the awaiting task's. (Only Event.wait() sees
        # this future, and the task registers before anything else can.)
        self._resume: tuple[Callable[[Any], object], contextvars.Context | None] | None = None
        #: The channel this wait holds a use of; None once released.
        self.channel: Channel | None = None

    def add_done_callback(
        self, fn: Callable[[Any], object], /, *, context: contextvars.Context | None = None
    ) -> None:
        if self._resume is None and not self.done():
            self._resume = (fn, context)
        super().add_done_callback(fn, context=context)

    def release_channel(self) -> None:
        """Give the wait's use of the channel back, once."""
        channel, self.channel = self.channel, None
        if channel is not None:
            channel.release()

    def resume_now(self) -> None:
        """Loop thread, no task running, future pending: set it and run its task's callback."""
        resume = self._resume
        # remove_done_callback() is 0 if the callback is gone: then set_result() alone (which
        # schedules whatever is registered) is all there is to do.
        if resume is None or not self.remove_done_callback(resume[0]):
            self.set_result(True)
            return
        self.set_result(True)  # schedules any other callback; the task's is ours to run
        fn, context = resume
        # The wait's channel is released after the step, not in wait()'s finally inside it: off
        # the path to the task's first line, and a task that waits again (the usual loop) takes
        # its new use before this one goes, so the channel is never unused in between.
        channel, self.channel = self.channel, None
        try:
            if context is None:
                fn(self)
            else:
                context.run(fn, self)
        finally:
            if channel is not None:
                channel.release()
