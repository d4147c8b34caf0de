"""How a Queue wakes its waiters: a blocked thread by releasing its lock, a task by its future.
Why each is done this way is in ``_queue``'s docstring."""

from __future__ import annotations

import _thread
import collections
from collections.abc import Callable, Iterable
from itertools import islice
from typing import Any, Final

from ._waiter import Waiter

__all__ = ["release_all", "release_one", "serve", "set_waiters"]

# The one C call that pops a waiting thread's lock and releases it (see _queue's docstring).
_consume: Final[Callable[[Iterable[object]], None]] = collections.deque[object](maxlen=0).extend
_release: Final = _thread.LockType.release


def release_one(threads: collections.deque[Any]) -> None:
    """Pop the oldest blocked thread's lock and release it; nothing if none waits."""
    try:
        _consume(map(_release, islice(iter(threads.popleft, None), 1)))
    except IndexError:
        pass  # nobody waits (any more)


def release_all(threads: collections.deque[Any]) -> None:
    """Pop and release every blocked thread's lock, in one C call."""
    try:
        _consume(map(_release, iter(threads.popleft, None)))
    except IndexError:
        pass  # the normal end: the deque ran empty


def set_waiters(tasks: collections.deque[Waiter], everyone: bool) -> None:
    """Loop thread, in a task: wake the oldest pending waiter, or all of them, the usual way.
    A snapshot (one C call): a finalizer on another thread may remove one meanwhile."""
    for fut in tuple(tasks):
        if not fut.done():
            fut.set_result(True)
            if not everyone:
                return


def serve(tasks: collections.deque[Waiter], ready: Callable[[], bool], step: bool) -> None:
    """Loop thread, in the channel's batch: while *ready()*, resume the tasks waiting in *tasks*
    (those waiting when it began), oldest first. Each resumed task's step runs here, so a getter
    has taken its item before the next look.

    It stops at a task woken already and not yet run (its future done, not cancelled: a put
    inside another task woke it the usual way): resuming the tasks behind it now would let them
    overtake it. That task wakes the next one when it has had its turn (``Queue._chain``)."""
    for fut in tuple(tasks):
        if not ready():
            return
        if fut.cancelled():
            continue
        if fut.done():
            return
        if step:
            fut.resume_now()
        else:
            # A task is running after all (a loop re-entered inside a task, as nest_asyncio
            # does): stepping another one inside it would fail, so wake it the usual way.
            fut.set_result(True)
