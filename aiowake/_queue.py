"""``Queue``, ``LifoQueue``, ``PriorityQueue``: the thread <-> event loop queue.

One object with two faces, as janus has: ``sync_q`` (``queue.Queue``'s interface, for threads) and
``async_q`` (``asyncio.Queue``'s, for the tasks of one loop). Both faces run the same code on the
same state; they differ in how a caller waits (a thread blocks, a task awaits) and in the
exceptions they raise.

**State.** Every field is a deque or a dict changed only by single C calls (``append``,
``popleft``, ``insert``, ``remove``, ``dict.pop``), which no other thread can split (the GIL) and
no Python signal handler either (handlers run between bytecodes, never inside a C call). So there
is no lock: a signal handler that interrupts the queue's own code in the same thread, and a
finalizer that the collector runs at any bytecode of any thread, find every field consistent and
never wait for anything. (PriorityQueue's heap is the exception: see there.)

- ``_items``: the items. A bounded queue's is a ``deque(maxlen=maxsize)`` filled only with
  ``insert(END, item)``, which raises IndexError instead of growing past ``maxlen`` (where
  ``append`` would drop the oldest). The test and the insertion are then one C call, so
  ``qsize() <= maxsize`` always holds, with no count of free slots that an interrupted put could
  leave wrong.
- ``_outstanding``: one entry per item got and not yet ``task_done()``. Unfinished tasks are
  ``len(_items) + len(_outstanding)``: a put is the insertion alone, nothing to count beside it.
  A get appends to ``_outstanding`` *before* it takes the item (and undoes that if there was
  none), so an item is always counted in one or both, and ``join()``, reading ``_items`` and then
  ``_outstanding``, never misses one that was put before it started.
- Waiters. A blocked thread waits on a ``threading.Lock`` of its own, acquired beforehand, in
  ``_tgetters``/``_tputters``/``_tjoiners``; a notifier pops the lock and releases it, which never
  blocks. A task awaits a ``Waiter`` future in ``_agetters``/``_aputters``/``_ajoiners``; it stays
  there until the task itself removes it, so whoever looks finds every task still waiting.

**No lost wakeup.** A waiter registers, *then* looks at the state again and waits only if it
still must; a put changes the state, *then* looks for waiters. With the GIL ordering both, at
least one side sees the other. A notified waiter that leaves without an item (cancelled, timed
out, interrupted) passes the wake on if items are left (``_pass_on``); a notified one that looked
and found the item taken by someone else is harmless: the queue was empty then. More wakes than
needed are harmless everywhere (the woken re-check and wait again), so every rescue from an
exception wakes rather than guesses.

**Threads.** ``_queue_wake.release_one`` pops a lock and releases it inside one C call
(``deque.extend`` over ``map`` over ``islice``): a signal handler's exception can strike before
or after it, never between the pop and the release, where it would leave a thread asleep for
good with nobody able to find it.

**The loop.** A put from a thread (or from the loop's thread outside any task, as a signal
handler that interrupted the loop's poll) cannot touch a future; it asks for the *service*:
``_svc`` holds the token while no service is pending, ``dict.pop`` takes it (one C call, exactly
one caller wins), and the winner posts ``_service`` to the loop's shared channel. Puts that find
the token gone make no call at all: however many items between two loop iterations, one job, and
the channel adds at most one wakeup write per iteration for every queue and Event of the loop. The
service runs in the channel's batch (a reader callback, no task running): it gives the token back
*first*, then looks, so a put that found the token gone had put its item before the look. It
resumes each task whose wait is over right there (``Waiter.resume_now``): a getter takes its item
one loop iteration sooner than with ``set_result``. From inside a task of the loop, a put wakes
the oldest waiting task directly (``set_result``), as asyncio.Queue does.

A task holds a use of the channel only while it waits (as ``Event.wait()`` does), so a queue
nobody waits on holds none. A job posted to a channel that closed meanwhile runs late (a closed
channel runs its leftovers), or not at all if the loop closed too; so the token it carried is
given back when the next wait finds its loop's channel is a new one.

Signal handlers: see the ``SyncQueue`` and ``AsyncQueue`` docstrings for which calls are safe.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import heapq
import sys
import threading
from collections.abc import Callable
from typing import Any, Final, Generic, NoReturn, TypeVar

from ._channel import Channel, acquire_channel, repeatable
from ._queue_faces import (
    AsyncQueue,
    AsyncQueueEmpty,
    AsyncQueueFull,
    AsyncQueueShutDown,
    SyncQueue,
    SyncQueueEmpty,
    SyncQueueFull,
    SyncQueueShutDown,
)
from ._queue_wake import release_all as _release_all
from ._queue_wake import release_one as _release_one
from ._queue_wake import serve as _serve
from ._queue_wake import set_waiters as _set_waiters
from ._waiter import Waiter

__all__ = [
    "AsyncQueue",
    "AsyncQueueEmpty",
    "AsyncQueueFull",
    "AsyncQueueShutDown",
    "LifoQueue",
    "PriorityQueue",
    "Queue",
    "SyncQueue",
    "SyncQueueEmpty",
    "SyncQueueFull",
    "SyncQueueShutDown",
]

T = TypeVar("T")

_TOKEN: Final = 0
#: ``deque.insert`` at an index past the end appends (after the ``maxlen`` check).
_END: Final = sys.maxsize

_get_running_loop = asyncio._get_running_loop
_current_task = asyncio.current_task


class Queue(Generic[T]):
    """A FIFO queue between threads and the tasks of one event loop, bounded if ``maxsize > 0``.

    ``sync_q`` has ``queue.Queue``'s interface, for threads (blocking ``put``/``get`` with
    timeouts); ``async_q`` has ``asyncio.Queue``'s, for tasks (``await put``/``await get``). Any
    thread and any task of one loop may use either direction at once. It may be made anywhere,
    with or without a running loop; it binds to the loop of the first task that waits on it (a
    task of another loop then gets RuntimeError, as with asyncio's primitives).

    It costs no descriptor of its own: tasks waiting on it share their loop's one aiowake channel
    with every other Queue, Event and Dispatcher there, and a queue nobody waits on holds none.

    Order: items come out in the order they went in (``LifoQueue``: last in, first out;
    ``PriorityQueue``: lowest first), each exactly once, so each producer's items keep their
    order. Which waiting getter gets the next item is not promised, except that tasks are served
    in the order they began to wait.

    ``shutdown()`` and ``close()`` release every waiter on both sides (see there). After
    ``os.fork()``, a queue made before keeps its items in the child, but the threads and tasks
    that waited on it are the parent's: use a new queue in the child.

    Copying or pickling a queue raises TypeError, as it does for a socket.
    """

    __slots__ = (
        "__weakref__",
        "_agetters",
        "_ajoiners",
        "_aputters",
        "_async_q",
        "_bound",
        "_channel",
        "_closed",
        "_get_item",
        "_immediate",
        "_items",
        "_loop",
        "_maxsize",
        "_outstanding",
        "_put_item",
        "_putting",
        "_service_job",
        "_serving",
        "_shutdown",
        "_svc",
        "_sync_q",
        "_take_svc",
        "_tgetters",
        "_tjoiners",
        "_tputters",
        "_why",
    )

    _items: Any  # the container; len() is the queue's size
    _put_item: Callable[[T], object]  # inserts; IndexError (and no change) if full
    _get_item: Callable[[], T]  # removes the next item; IndexError if none

    def __init__(self, maxsize: int = 0) -> None:
        if not isinstance(maxsize, int):
            raise TypeError(f"maxsize must be an int, not {type(maxsize).__name__}")
        self._maxsize = maxsize
        self._init_items(maxsize)
        self._outstanding: collections.deque[None] = collections.deque()
        #: One entry per put between its look at ``_shutdown`` and its insertion (see _put).
        self._putting: list[None] = []
        self._tgetters: collections.deque[Any] = collections.deque()
        self._tputters: collections.deque[Any] = collections.deque()
        self._tjoiners: collections.deque[Any] = collections.deque()
        self._agetters: collections.deque[Waiter] = collections.deque()
        self._aputters: collections.deque[Waiter] = collections.deque()
        self._ajoiners: collections.deque[Waiter] = collections.deque()
        self._shutdown = False
        self._serving = False  # True while _service runs (see _chain)
        self._immediate = False
        self._closed = False
        self._why = "the queue is shut down"
        #: The bound loop: set once, by dict.setdefault (atomic), so that two loops racing to
        #: bind agree on the winner; ``_loop`` is the plain copy the hot paths read.
        self._bound: dict[int, asyncio.AbstractEventLoop] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._channel: Channel | None = None
        self._svc: dict[int, bool] = {_TOKEN: True}
        self._take_svc = functools.partial(self._svc.pop, _TOKEN, None)
        self._service_job = self._service
        self._sync_q: SyncQueue[T] = SyncQueue(self)
        self._async_q: AsyncQueue[T] = AsyncQueue(self)

    def _init_items(self, maxsize: int) -> None:
        items: collections.deque[T] = collections.deque(maxlen=maxsize if maxsize > 0 else None)
        self._items = items
        # Unbounded: append. Bounded: insert, never append (see the module docstring).
        self._put_item = items.append if maxsize <= 0 else functools.partial(items.insert, _END)
        self._get_item = items.popleft

    # --- the faces and the queue's own API ----------------------------------------------------

    @property
    def sync_q(self) -> SyncQueue[T]:
        """The ``queue.Queue`` interface, for threads."""
        return self._sync_q

    @property
    def async_q(self) -> AsyncQueue[T]:
        """The ``asyncio.Queue`` interface, for the tasks of one loop."""
        return self._async_q

    @property
    def maxsize(self) -> int:
        """The bound given at construction; ``<= 0`` means unbounded."""
        return self._maxsize

    @property
    def closed(self) -> bool:
        """True once ``shutdown()`` or ``close()`` was called (as janus has it)."""
        return self._shutdown

    def shutdown(self, immediate: bool = False) -> None:
        """Refuse puts from now on; release every waiter on both sides. Idempotent.

        Any thread or task may call it, and so may a signal handler (except PriorityQueue's with
        ``immediate=True``, which takes the heap's lock). Puts raise the face's ShutDown exception
        (``SyncQueueShutDown``/``AsyncQueueShutDown``), and so do the puts waiting now. Gets go on
        returning the items left, in order, then raise it; with ``immediate=True`` the items left
        are dropped (each counts as done for ``join()``), so every get raises at once. ``join()``
        is not refused: it returns once every item got has been ``task_done()``.
        """
        self._shutdown = True
        if immediate:
            self._immediate = True
            self._discard()
        _release_all(self._tputters)
        self._wake_getters()
        self._wake_loop(self._aputters, everyone=True)  # from a thread: the service is pending

    def close(self) -> None:
        """``shutdown(immediate=True)``, as janus's ``close()`` is; idempotent; any thread.

        Threads blocked in ``put()``/``get()`` and tasks waiting in them raise the face's ShutDown
        exception, whose message says the queue was closed, as does every later put and get.
        """
        self._why = "the queue is closed"
        self._closed = True
        self.shutdown(immediate=True)

    async def wait_closed(self) -> None:
        """Task: return once ``close()`` (or ``shutdown()``)'s wakeups have reached every task of
        the queue's loop that was waiting on it. RuntimeError if the queue is not shut down."""
        if not self._shutdown:
            raise RuntimeError(f"{self!r} is not closed: call close() first")
        loop = asyncio.get_running_loop()
        if self._loop is not loop or not (self._agetters or self._aputters or self._ajoiners):
            return
        # The channel runs jobs in order, and the shutdown's service was posted before this.
        done = loop.create_future()
        channel = acquire_channel(loop)
        try:
            channel.post(functools.partial(_set_if_pending, done))
            await done
        finally:
            channel.release()

    async def aclose(self) -> None:
        """Task: ``close()``, then ``await wait_closed()``."""
        self.close()
        await self.wait_closed()

    # --- what both faces run ------------------------------------------------------------------

    def _put(self, item: T, full: type[Exception], shut: type[Exception]) -> None:
        """Put without waiting: *full* if there is no room, *shut* once shut down.

        A put looks at ``_shutdown`` and then inserts; a shutdown() may come in between, and a
        getter that then found the queue shut down and empty would leave with the item still to
        come. So a put is counted in ``_putting`` across the two, and a getter concludes "shut
        down and empty" only when no put is in flight (``_drained``); the last put to land after
        a shutdown wakes the getters, who look again.
        """
        putting = self._putting
        try:
            putting.append(None)
            if self._shutdown:
                raise shut(self._why)
            try:
                self._put_item(item)  # the put itself: one call, which changes nothing if it fails
                if self._immediate:
                    self._discard()  # raced shutdown(immediate=True): dropped, as if put before
                # A waiting task needs nothing from a put while the service's token is out: the
                # service is pending, and looks after giving the token back (see _service).
                if self._tgetters or (self._agetters and self._svc):
                    self._notify(self._tgetters, self._agetters)
            except IndexError:
                raise full from None
            except BaseException:
                # A signal handler's exception, maybe after the item went in: its wake too.
                self._notify(self._tgetters, self._agetters, rescue=True)
                raise
        finally:
            try:
                putting.pop()
            except IndexError:
                pass  # struck before its append: another put's entry went instead, harmlessly
            if self._shutdown and not putting:
                self._wake_getters()

    def _drained(self) -> bool:
        """Shut down, empty, and no put in flight: a get may raise ShutDown."""
        return self._shutdown and not self._items and not self._putting

    def _wake_getters(self) -> None:
        _release_all(self._tgetters)
        self._wake_loop(self._agetters, everyone=True)

    def _take(self) -> T:
        """Get without waiting; IndexError if empty. Frees a waiting putter's room."""
        self._outstanding.append(None)  # counted first (see the module docstring)
        try:
            item = self._get_item()
            if self._tputters or self._aputters:
                self._notify(self._tputters, self._aputters)
        except IndexError:
            self._outstanding.pop()
            if not self._outstanding and (self._tjoiners or self._ajoiners):
                self._finished()
            raise
        except BaseException:
            # A signal handler's exception, maybe after the item came out: wake a putter for
            # its room. (The item itself is lost to the caller, as with queue.Queue.)
            self._notify(self._tputters, self._aputters, rescue=True)
            raise
        return item

    def _task_done(self) -> None:
        try:
            self._outstanding.pop()
            if not self._outstanding and not self._items:
                self._finished()
        except IndexError:
            raise ValueError("task_done() called more times than items were got") from None
        except BaseException:
            self._finished()  # a signal handler struck, maybe after the pop: the joiners re-check
            raise

    def _unfinished(self) -> int:
        # _items first, then _outstanding: a get moves an item the other way round.
        return len(self._items) + len(self._outstanding)

    def _can_get(self) -> bool:
        return bool(self._items) or self._drained()

    def _can_put(self) -> bool:
        return len(self._items) < self._maxsize or self._shutdown

    def _all_done(self) -> bool:
        return not self._unfinished()

    def _discard(self) -> None:
        """Drop every item (shutdown(immediate=True)); each counts as done."""
        while True:
            try:
                self._get_item()
            except IndexError:
                break
        if not self._outstanding:
            self._finished()

    def _finished(self) -> None:
        """Unfinished tasks may have reached zero: every joiner looks again."""
        _release_all(self._tjoiners)
        if self._ajoiners:
            self._wake_loop(self._ajoiners, everyone=True)

    def _notify(
        self,
        threads: collections.deque[Any],
        tasks: collections.deque[Waiter],
        *,
        rescue: bool = False,
    ) -> None:
        """An item (or room) may be there: wake one waiting thread and the loop's side."""
        if threads:
            _release_one(threads)
        if tasks or rescue:
            self._wake_loop(tasks, rescue=rescue)

    def _pass_on(
        self,
        threads: collections.deque[Any],
        tasks: collections.deque[Waiter],
        ready: Callable[[], bool],
    ) -> None:
        """A waiter leaves without using its wake (cancelled, timed out, interrupted): if what it
        waited for is there (*ready*), wake the next one, who may have been passed over for it."""
        if ready():
            self._notify(threads, tasks)

    def _wake_loop(
        self, tasks: collections.deque[Waiter], *, everyone: bool = False, rescue: bool = False
    ) -> None:
        """Any thread, signal handler or finalizer: have the tasks waiting in *tasks* look again.

        Inside a task of the loop, wake them directly (one, or *everyone*); elsewhere ask for the
        service (see the module docstring). *rescue*: post the service even if the token is out,
        because an exception may have struck between taking it and posting.
        """
        loop = self._loop
        if loop is None:
            return  # no task has ever waited
        if _get_running_loop() is loop and _current_task(loop) is not None:
            # As Event.set() does: a call_soon from the loop's thread outside a task (a signal
            # handler that interrupted the poll) could sit unseen; inside one it cannot.
            _set_waiters(tasks, everyone)
            return
        try:
            if self._take_svc() is not None or rescue:
                channel = self._channel  # read after the token: see _wait()
                if channel is not None:
                    channel.post(self._service_job)
        except BaseException as exc:
            if isinstance(exc, RuntimeError) and loop.is_closed():
                return  # the channel refuses a closed loop: none of its tasks waits any more
            if self._channel is not None:
                self._channel.post(self._service_job)  # struck: post it again; one more is harmless
            raise

    @repeatable  # see _channel: a signal handler's exception must not lose the token with it
    def _service(self) -> None:
        """Loop thread, in the channel's batch: resume the tasks whose wait is over."""
        self._svc[_TOKEN] = True  # the token back first, then look (see the module docstring)
        try:
            loop = self._loop
            step = loop is not None and _current_task(loop) is None
            self._serving = True
            _serve(self._agetters, self._can_get, step)
            _serve(self._aputters, self._can_put, step)
            if self._ajoiners:
                _serve(self._ajoiners, self._all_done, step)
        except BaseException:
            # A resumed task let KeyboardInterrupt or SystemExit out, or a signal handler's
            # exception struck: the waiters are all still registered, so look again next batch.
            self._wake_loop(self._agetters, rescue=True)
            raise
        finally:
            self._serving = False

    def _chain(self, tasks: collections.deque[Waiter], ready: Callable[[], bool]) -> None:
        """Task, leaving a put or get after a wait, however it leaves: if what it waited for is
        still there and tasks still wait, wake the next one, which the service may have stopped
        at this one for (see _queue_wake.serve). Inside the service, the service goes on."""
        if tasks and not self._serving and ready():
            _set_waiters(tasks, False)

    async def _wait(self, tasks: collections.deque[Waiter], ready: Callable[[], bool]) -> None:
        """Task: wait in *tasks* until woken, unless *ready()* already holds once registered."""
        loop = asyncio.get_running_loop()
        bound = self._loop
        if bound is None:
            bound = self._loop = self._bound.setdefault(_TOKEN, loop)
        if bound is not loop:
            raise RuntimeError(f"{self!r} is bound to a different event loop")
        fut = Waiter(loop)
        fut.channel = channel = acquire_channel(loop)  # the wait's use of the channel
        if channel is not self._channel:
            # A new channel: a job posted to the old one may have been dropped with it, and the
            # token with it. Set the channel, then the token: a put that takes the token reads
            # the channel after, so it posts here.
            self._channel = channel
            self._svc[_TOKEN] = True
        tasks.append(fut)  # register first...
        try:
            if not ready():  # ...then look again (see the module docstring)
                await fut
        finally:
            tasks.remove(fut)
            fut.release_channel()  # unless resume_now() has taken that over

    # --- housekeeping -------------------------------------------------------------------------

    def __reduce_ex__(self, protocol: Any) -> NoReturn:
        raise TypeError(f"cannot pickle {type(self).__name__!r} object")

    def __repr__(self) -> str:
        state = [f"maxsize={self._maxsize}", f"qsize={len(self._items)}"]
        getters = len(self._tgetters) + len(self._agetters)
        putters = len(self._tputters) + len(self._aputters)
        if getters:
            state.append(f"getters={getters}")
        if putters:
            state.append(f"putters={putters}")
        if self._closed:
            state.append("closed")
        elif self._shutdown:
            state.append("shut down")
        return f"<aiowake.{type(self).__name__} {' '.join(state)}>"


def _set_if_pending(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class LifoQueue(Queue[T]):
    """A ``Queue`` whose next item is the one put last. Same calls, same promises otherwise."""

    __slots__ = ()

    def _init_items(self, maxsize: int) -> None:
        super()._init_items(maxsize)
        self._get_item = self._items.pop


class PriorityQueue(Queue[T]):
    """A ``Queue`` whose next item is the lowest (``heapq`` order; ``(priority, data)`` tuples).

    A heap operation calls the items' comparisons, which may run Python code (a class's
    ``__lt__``), and with it other threads; so the heap has a lock. Hence, unlike the other
    queues, a PriorityQueue's ``put_nowait()``/``get_nowait()`` (and ``shutdown(immediate=True)``)
    are not safe in a signal handler; everything else is as for ``Queue``.
    """

    __slots__ = ()

    def _init_items(self, maxsize: int) -> None:
        heap: list[Any] = []  # heapq's items must be comparable; T is not bound to say so
        lock = threading.Lock()  # never taken by a finalizer's path: only by puts and gets
        bound = maxsize if maxsize > 0 else _END

        def put(item: T) -> None:
            with lock:
                if len(heap) >= bound:
                    raise IndexError("full")
                heapq.heappush(heap, item)

        def get() -> T:
            with lock:
                item: T = heapq.heappop(heap)  # IndexError if empty
                return item

        self._items = heap
        self._put_item = put
        self._get_item = get
