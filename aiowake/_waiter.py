"""The future a task awaits until a set() (or a queue's put) wakes it, and how the loop's batch
resumes such tasks one iteration sooner than ``set_result()`` would."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._channel import repeatable

if TYPE_CHECKING:
    from ._channel import Channel

__all__ = ["Waiter", "resume_all", "wake_all"]


def wake_all(waiters: tuple[Waiter, ...]) -> None:
    """Loop thread: wake the tasks that were waiting when ``set()`` was called (skipping the
    cancelled ones; a future already woken by an earlier set is done too). They resume on the
    loop's next iteration, as with asyncio.Event."""
    for fut in waiters:
        if not fut.done():
            fut.set_result(True)


@repeatable  # see _channel: struck by a signal handler's exception, the batch runs it again
def resume_all(waiters: tuple[Waiter, ...]) -> None:
    """Loop thread, in the channel's batch (a reader callback: no task is running): wake the tasks
    that were waiting when ``set()`` was called and resume each one right here, one loop
    iteration sooner than ``set_result()``'s scheduled callback would. It may run twice: the
    tasks woken by the first run are done, and skipped."""
    if asyncio.current_task(waiters[0].get_loop()) is not None:
        # A task is running after all (a loop re-entered from inside a task, as nest_asyncio
        # does): stepping another one inside it would fail, so wake them the usual way.
        wake_all(waiters)
        return
    i = 0
    try:
        for i, fut in enumerate(waiters):  # noqa: B007 - i is read in the finally
            if not fut.done():
                fut.resume_now()
    finally:
        # Only if a resumed task let KeyboardInterrupt or SystemExit out (a task keeps every other
        # exception), or a signal handler's struck: the rest, from the one it left at (done
        # already if it was woken), are still woken, the usual way.
        wake_all(waiters[i:])


class Waiter(asyncio.Future[bool]):
    """The future a task awaits in ``Event.wait()``. It remembers the awaiting task's wake-up
    callback so that ``resume_now()`` can run it directly instead of scheduling it.

    This rests on asyncio behaviour that is not documented: a task awaiting a future registers a
    bound method of itself with ``add_done_callback`` before anything else can see the future,
    and its ``_fut_waiter`` is that future until its next step begins. Both hold on CPython
    3.11-3.13 for the C and the Python Task; if a version changes them,
    ``tests/test_event.py::test_a_set_from_another_thread_resumes_the_waiter_inside_the_batch``
    fails. Anything else (a callback that is not a task's) is woken the usual way.

    Why stepping the task is safe: the batch is a reader callback, so no task is running and the
    task may be stepped, exactly as the loop would step it from its ready queue; the only
    difference is when. Cancellation is untouched: the callback stays registered with the
    future until ``resume_now()`` takes it off, so ``Task.cancel()`` (which cancels this future)
    schedules it as usual, and a cancelled future is done, which ``resume_all`` skips.
    """

    __slots__ = ("_step", "channel")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop=loop)
        #: The awaiting task's wake-up callback and its context, once it has registered.
        self._step: tuple[Callable[[Any], object], contextvars.Context | None] | None = None
        #: The channel this wait holds a use of; None once released.
        self.channel: Channel | None = None

    def add_done_callback(
        self, fn: Callable[[Any], object], /, *, context: contextvars.Context | None = None
    ) -> None:
        if (
            self._step is None
            and not self.done()
            and isinstance(getattr(fn, "__self__", None), asyncio.Task)
        ):
            self._step = (fn, context)
        super().add_done_callback(fn, context=context)

    def release_channel(self) -> None:
        """Give the wait's use of the channel back, once."""
        channel, self.channel = self.channel, None
        if channel is not None:
            channel.release()

    def resume_now(self) -> None:
        """Loop thread, no task running, future pending: set it and run its task's callback.

        A signal handler's exception may strike at any line here. Whatever it interrupted, the
        ``except`` leaves the task either stepped, or with its result set and its wake-up
        scheduled: never waiting on a done future that no longer calls it back, which no
        ``set()`` could wake and no ``cancel()`` could finish.
        """
        step = self._step
        if step is None:
            self.set_result(True)
            return
        channel = None
        try:
            fn, context = step
            # The wait's channel is released after the step, not in wait()'s finally inside it:
            # off the path to the task's first line, and a task that waits again (the usual
            # loop) takes its new use before this one goes, so the channel is never unused in
            # between.
            channel, self.channel = self.channel, None
            # remove_done_callback() is 0 if the callback is gone: then set_result() alone
            # (which schedules whatever is registered) is all there is to do.
            if self.remove_done_callback(fn):
                self.set_result(True)  # the task's callback is ours to run
                if context is None:
                    fn(self)
                else:
                    context.run(fn, self)
            else:
                self.set_result(True)
        except BaseException:
            fn, context = step
            task: Any = getattr(fn, "__self__", None)
            if getattr(task, "_fut_waiter", None) is self:  # struck before the task's step
                self.remove_done_callback(fn)
                if not self.done():
                    self.set_result(True)
                self.get_loop().call_soon(fn, self, context=context)
            if channel is None:
                channel, self.channel = self.channel, None  # struck before it was taken
            raise
        finally:
            if channel is not None:
                channel.release()
