"""The two faces of a ``Queue``: ``SyncQueue`` for threads, ``AsyncQueue`` for tasks, and the
exceptions they raise.

Both faces run the queue's own code (``_queue.Queue._put``/``_take``/...); what is here is how each
kind of caller waits. A thread waits on a ``threading.Lock`` of its own, used as a binary
semaphore: acquired once up front, registered, then acquired again, which blocks until a notifier
releases it (``_queue._release_one``). A fresh lock per wait: a notifier that popped it may release
it after its thread has timed out and gone, and that late release must not land on a later wait.
The protocol and its invariants are in ``_queue``'s docstring.
"""

from __future__ import annotations

import math
import sys
import threading
from asyncio import QueueEmpty as AsyncQueueEmpty
from asyncio import QueueFull as AsyncQueueFull
from collections.abc import Callable
from queue import Empty as SyncQueueEmpty
from queue import Full as SyncQueueFull
from time import monotonic
from typing import TYPE_CHECKING, Any, Final, Generic, NoReturn, TypeVar, final

if TYPE_CHECKING:
    from collections import deque

    from ._queue import Queue
    from ._waiter import Waiter

__all__ = [
    "AsyncQueue",
    "AsyncQueueEmpty",
    "AsyncQueueFull",
    "AsyncQueueShutDown",
    "SyncQueue",
    "SyncQueueEmpty",
    "SyncQueueFull",
    "SyncQueueShutDown",
]

T = TypeVar("T")

if sys.version_info >= (3, 13):
    from asyncio import QueueShutDown as AsyncQueueShutDown
    from queue import ShutDown as SyncQueueShutDown
else:

    class SyncQueueShutDown(Exception):
        """Raised by ``sync_q``'s puts and gets once the queue is shut down or closed.

        ``queue.ShutDown`` itself from Python 3.13 on; this class on 3.11 and 3.12, which lack it.
        """

    class AsyncQueueShutDown(Exception):
        """Raised by ``async_q``'s puts and gets once the queue is shut down or closed.

        ``asyncio.QueueShutDown`` itself from Python 3.13 on; this class on 3.11 and 3.12.
        """


_new_lock = threading.Lock
#: ``Lock.acquire`` refuses longer timeouts; a longer wait is made of several.
_TIMEOUT_MAX: Final = threading.TIMEOUT_MAX


def _deadline(timeout: float | None) -> float | None:
    """The ``monotonic()`` time a blocking call gives up at; None: never."""
    if timeout is None:
        return None
    if not isinstance(timeout, int | float):
        raise TypeError(f"'timeout' must be a number or None, not {type(timeout).__name__}")
    if not timeout >= 0:  # also NaN
        raise ValueError("'timeout' must be a non-negative number")
    if math.isinf(timeout):
        return None
    return monotonic() + timeout


def _block(threads: deque[Any], ready: Callable[[], bool], deadline: float | None) -> None:
    """Block this thread in *threads* until a notifier releases it or *deadline* passes, unless
    *ready()* holds once it is registered. The caller looks at the queue again either way."""
    lock = _new_lock()
    lock.acquire()
    threads.append(lock)  # register first...
    try:
        if ready():  # ...then look again (see _queue's docstring)
            return
        if deadline is None:
            lock.acquire()
        else:
            remaining = deadline - monotonic()
            if remaining > 0:
                lock.acquire(True, min(remaining, _TIMEOUT_MAX))
    finally:
        try:
            threads.remove(lock)
        except ValueError:
            pass  # popped: a notifier released it, or is about to (and nothing waits on it then)


def _block_turn(
    q: Queue[Any],
    threads: deque[Any],
    tasks: deque[Waiter],
    ready: Callable[[], bool],
    deadline: float | None,
) -> None:
    """Thread: wait in *threads* (``_block``); a wait that ends by an exception passes its turn
    on (``Queue._pass_on``), since it may have been woken for an item or room it will not use."""
    try:
        _block(threads, ready, deadline)
    except BaseException:
        q._pass_on(threads, tasks, ready)
        raise


async def _await_turn(
    q: Queue[Any], tasks: deque[Waiter], threads: deque[Any], ready: Callable[[], bool]
) -> None:
    """Task: wait in *tasks* (``Queue._wait``); as ``_block_turn``, a wait that ends by an
    exception (a cancellation) passes its turn on."""
    try:
        await q._wait(tasks, ready)
    except BaseException:
        q._pass_on(threads, tasks, ready)
        raise


class _Face(Generic[T]):
    """What both faces of a ``Queue`` have alike: the looks at its state, which any caller may
    make (signal handlers included), ``shutdown()``, and the refusal to be copied."""

    __slots__ = ("_q",)

    def __init__(self, parent: Queue[T]) -> None:
        self._q = parent

    @property
    def maxsize(self) -> int:
        """The queue's bound; ``<= 0``: unbounded."""
        return self._q._maxsize

    @property
    def closed(self) -> bool:
        """True once the queue is shut down or closed."""
        return self._q._shutdown

    @property
    def unfinished_tasks(self) -> int:
        """Items put and not yet ``task_done()``: those in the queue plus those got and not done."""
        return self._q._unfinished()

    def qsize(self) -> int:
        """The number of items in the queue now (others may change it at once). Any caller."""
        return len(self._q._items)

    def empty(self) -> bool:
        """``qsize() == 0``, now. Any caller."""
        return not self._q._items

    def full(self) -> bool:
        """``qsize() >= maxsize`` for a bounded queue, now; False if unbounded. Any caller."""
        q = self._q
        return 0 < q._maxsize <= len(q._items)

    def shutdown(self, immediate: bool = False) -> None:
        """The queue's ``shutdown()``: see there."""
        self._q.shutdown(immediate)

    def __reduce_ex__(self, protocol: Any) -> NoReturn:
        raise TypeError(f"cannot pickle {type(self).__name__!r} object")

    def __repr__(self) -> str:
        return f"<aiowake.{type(self).__name__} of {self._q!r}>"


@final
class SyncQueue(_Face[T]):
    """``queue.Queue``'s interface to a ``Queue``, for threads (``queue.sync_q``).

    Any thread may call any method. Blocking calls (``put`` on a full queue, ``get`` on an empty
    one, ``join``) block only the calling thread; called from the loop's thread they would block
    the loop. Exceptions are ``queue``'s: ``queue.Empty``, ``queue.Full``, and
    ``SyncQueueShutDown`` (``queue.ShutDown`` on Python 3.13+).

    Safe in a Python signal handler, also one that interrupts the queue's own code in the same
    thread (no call takes a lock, so none can deadlock on the thread it interrupted; nothing is
    left half-done): ``put_nowait``, ``get_nowait``, ``task_done``, ``qsize``, ``empty``,
    ``full``, ``shutdown`` and the queue's ``close()`` on a ``Queue`` or ``LifoQueue`` (not on a
    ``PriorityQueue``: see there). Not the blocking calls, which may wait for the very thread
    the handler interrupted. A handler's exception (KeyboardInterrupt) striking inside a put
    leaves the item put or not, and in either case nothing waiting on it asleep; striking inside
    a get, it may lose the item being got, as with ``queue.Queue``.

    Copying or pickling it raises TypeError.
    """

    __slots__ = ()

    def put_nowait(self, item: T) -> None:
        """Put *item* if there is room, else raise ``queue.Full``; never blocks.

        Any thread, and a signal handler (see the class docstring). Raises ``SyncQueueShutDown``
        once the queue is shut down. Wakes one waiting getter, thread or task; from a thread it
        costs the loop at most one wakeup, shared with every other put before the loop next runs.
        """
        self._q._put(item, SyncQueueFull, SyncQueueShutDown)

    def put(self, item: T, block: bool = True, timeout: float | None = None) -> None:
        """Put *item*, blocking while the queue is full, as ``queue.Queue.put``.

        ``block=False``: ``put_nowait()``. Else wait for room, at most *timeout* seconds (None:
        without limit), then raise ``queue.Full``. Raises ``SyncQueueShutDown`` if the queue is
        shut down or closed, also while waiting. Waiting putters are served as room appears, the
        first in line (thread or task) first. Any thread; not a signal handler.
        """
        deadline = None if timeout is None or not block else _deadline(timeout)
        q = self._q
        while True:
            try:
                q._put(item, SyncQueueFull, SyncQueueShutDown)
                return
            except SyncQueueFull:
                if not block or (deadline is not None and deadline <= monotonic()):
                    raise
            _block_turn(q, q._tputters, q._aputters, q._can_put, deadline)

    def get_nowait(self) -> T:
        """Remove and return the next item if there is one, else raise ``queue.Empty``.

        Any thread, and a signal handler (see the class docstring). Once the queue is shut down
        it still returns the items left (none after ``shutdown(immediate=True)`` or ``close()``),
        then raises ``SyncQueueShutDown``.
        """
        return self.get(block=False)

    def get(self, block: bool = True, timeout: float | None = None) -> T:
        """Remove and return the next item, blocking while the queue is empty, as
        ``queue.Queue.get``.

        ``block=False``: ``get_nowait()``. Else wait for an item, at most *timeout* seconds
        (None: without limit), then raise ``queue.Empty``; a get that times out has taken no
        item. Raises ``SyncQueueShutDown`` once the queue is shut down and empty, also while
        waiting. Any thread; not a signal handler.
        """
        deadline = None if timeout is None or not block else _deadline(timeout)
        q = self._q
        while True:
            try:
                return q._take()
            except IndexError:
                pass
            if q._drained():  # looked at after the take (see Queue._put)
                raise SyncQueueShutDown(q._why)
            if not block or (deadline is not None and deadline <= monotonic()):
                raise SyncQueueEmpty
            _block_turn(q, q._tgetters, q._agetters, q._can_get, deadline)

    def task_done(self) -> None:
        """Mark one item got from the queue (by either face) as processed, for ``join()``.

        Any thread or task, and a signal handler. Raises ValueError when every item got has
        been marked already; unlike ``queue.Queue``, an item put and not yet got cannot be
        marked in advance. Works after shutdown and close too.
        """
        self._q._task_done()

    def join(self) -> None:
        """Block until every item put has been got and ``task_done()``, as ``queue.Queue.join``.

        Any thread; not a signal handler. It returns once the count of unfinished items was
        zero, which includes every item put before the call began. Not refused after shutdown:
        ``shutdown(immediate=True)`` drops the queued items, counting each as done.
        """
        q = self._q
        while q._unfinished():
            _block(q._tjoiners, q._all_done, None)


@final
class AsyncQueue(_Face[T]):
    """``asyncio.Queue``'s interface to a ``Queue``, for tasks (``queue.async_q``).

    The coroutines (``put``, ``get``, ``join``) are for tasks of one loop: the queue binds to the
    loop of the first task that has to wait, and a task of another loop then gets RuntimeError.
    They are cancellable: a cancelled ``get()`` takes no item (if one was meant for it, the next
    waiting getter is woken for it), a cancelled ``put()`` puts none. Tasks waiting on the queue
    are served in the order they began to wait. Exceptions are asyncio's: ``asyncio.QueueEmpty``,
    ``asyncio.QueueFull``, and ``AsyncQueueShutDown`` (``asyncio.QueueShutDown`` on 3.13+).

    The methods that do not wait run the same code as ``sync_q``'s and may be called from
    anywhere as those may, signal handlers included (see ``SyncQueue``); they differ only in the
    exceptions raised.

    Copying or pickling it raises TypeError.
    """

    __slots__ = ()

    def put_nowait(self, item: T) -> None:
        """Put *item* if there is room, else raise ``asyncio.QueueFull``; ``AsyncQueueShutDown``
        once shut down. Any caller (see the class docstring). From a task of the loop it wakes
        the oldest waiting task at once, as asyncio.Queue does; waiting threads are woken too."""
        self._q._put(item, AsyncQueueFull, AsyncQueueShutDown)

    async def put(self, item: T) -> None:
        """Put *item*, waiting while the queue is full. Task of the queue's loop.

        Raises ``AsyncQueueShutDown`` if the queue is shut down or closed, also while waiting.
        Cancellable: a cancelled put has put nothing.
        """
        q = self._q
        waited = False
        try:
            while True:
                try:
                    q._put(item, AsyncQueueFull, AsyncQueueShutDown)
                    return
                except AsyncQueueFull:
                    pass
                await _await_turn(q, q._aputters, q._tputters, q._can_put)
                waited = True
        finally:
            if waited:  # however it leaves: the service may have stopped at it (see _chain)
                q._chain(q._aputters, q._can_put)

    def get_nowait(self) -> T:
        """Remove and return the next item, else raise ``asyncio.QueueEmpty``; once shut down,
        the items left, then ``AsyncQueueShutDown``. Any caller (see the class docstring)."""
        q = self._q
        try:
            return q._take()
        except IndexError:
            pass
        if q._drained():  # looked at after the take (see Queue._put)
            raise AsyncQueueShutDown(q._why)
        raise AsyncQueueEmpty

    async def get(self) -> T:
        """Remove and return the next item, waiting while the queue is empty. Task of the
        queue's loop.

        A task waiting here when a thread puts an item resumes inside the loop's wakeup batch,
        with no further loop iteration. Raises ``AsyncQueueShutDown`` once the queue is shut down
        and empty, also while waiting. Cancellable, and a cancelled get never takes an item.
        """
        q = self._q
        waited = False
        try:
            while True:
                try:
                    return q._take()
                except IndexError:
                    pass
                if q._drained():  # looked at after the take (see Queue._put)
                    raise AsyncQueueShutDown(q._why)
                await _await_turn(q, q._agetters, q._tgetters, q._can_get)
                waited = True
        finally:
            if waited:  # however it leaves: the service may have stopped at it (see _chain)
                q._chain(q._agetters, q._can_get)

    def task_done(self) -> None:
        """As ``SyncQueue.task_done()``: one item got is processed. Any caller."""
        self._q._task_done()

    async def join(self) -> None:
        """Wait until every item put has been got and ``task_done()``. Task of the queue's
        loop; as ``SyncQueue.join()`` otherwise."""
        q = self._q
        while q._unfinished():
            await q._wait(q._ajoiners, q._all_done)
