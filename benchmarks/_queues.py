"""The thread <-> loop queues compared: aiowake's and the libraries people use today.

Each kind opens a queue and gives its four ends as the calls a user would write: a thread's
blocking ``put``/``get`` and a task's ``await get()``/``await put()``, all bound methods (or a
``functools.partial``), never a wrapper of ours, so that no case pays for an extra frame. A queue
is made in the thread that builds the case, before its loop runs (each binds to the loop at its
first async use): the producer may put before the loop thread has started.

A kind whose library is missing is listed with the reason and has no cases, as uvloop's cases are
absent where uvloop is; ``aiowake.Queue`` is such a kind until ``aiowake._queue`` exists.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import importlib.metadata
import queue
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ._mechanisms import Probe, Wake, _OnLoop

#: The bounded size the scenarios use (the issue's).
BOUNDED = 1024


@dataclass(frozen=True, slots=True)
class Ends:
    """One queue's ends. ``task_put`` is awaited; where it is None the task calls
    ``task_put_nowait`` (a queue the loop never waits on)."""

    thread_put: Callable[[Any], object]
    task_get: Callable[[], Awaitable[Any]]
    thread_get: Callable[[], Any]
    task_put: Callable[[Any], Awaitable[object]] | None = None
    task_put_nowait: Callable[[Any], object] | None = None
    aclose: Callable[[], Awaitable[object]] | None = None


Opener = Callable[[int, asyncio.AbstractEventLoop], Ends]


@dataclass(frozen=True)
class QueueKind:
    name: str
    what: str
    #: None where the library cannot be imported (``unavailable`` says why).
    open: Opener | None
    version: str | None = None
    unavailable: str | None = None
    #: Supports a maxsize (the stock pair and aiologic's SimpleQueue do not).
    bounded: bool = True


def _mixed(cls: Any) -> Opener:
    """janus, culsans and aiowake: one queue with a ``sync_q`` and an ``async_q`` face."""

    def open_(maxsize: int, loop: asyncio.AbstractEventLoop) -> Ends:
        q = cls(maxsize)
        s, a = q.sync_q, q.async_q
        return Ends(s.put, a.get, s.get, task_put=a.put, aclose=q.aclose)

    return open_


def _aiologic_simple(cls: Any) -> Opener:
    def open_(maxsize: int, loop: asyncio.AbstractEventLoop) -> Ends:
        if maxsize:
            raise ValueError("aiologic.SimpleQueue is unbounded")
        q = cls()
        return Ends(q.put, q.async_get, q.green_get, task_put=q.async_put)

    return open_


def _aiologic_queue(cls: Any) -> Opener:
    def open_(maxsize: int, loop: asyncio.AbstractEventLoop) -> Ends:
        q = cls(maxsize=maxsize or None)  # None: unbounded
        return Ends(q.green_put, q.async_get, q.green_get, task_put=q.async_put)

    return open_


def _stock(maxsize: int, loop: asyncio.AbstractEventLoop) -> Ends:
    """Thread -> loop: an asyncio.Queue fed through ``loop.call_soon_threadsafe``; loop ->
    thread: a ``queue.Queue`` the task puts into without waiting. Neither can be bounded: the
    thread's put cannot wait for room, nor can the task's without blocking the loop."""
    if maxsize:
        raise ValueError("the stock pair is unbounded")
    to_loop: asyncio.Queue[Any] = asyncio.Queue()
    to_thread: queue.Queue[Any] = queue.Queue()
    post: Callable[..., object] = loop.call_soon_threadsafe  # (put_nowait, item): typed loosely
    return Ends(
        functools.partial(post, to_loop.put_nowait),
        to_loop.get,
        to_thread.get,
        task_put_nowait=to_thread.put_nowait,
    )


def _load(
    name: str,
    module: str,
    attr: str,
    dist: str | None,
    make: Callable[[Any], Opener],
    what: str,
    bounded: bool = True,
) -> QueueKind:
    try:
        cls = getattr(importlib.import_module(module), attr)
    except Exception as e:  # a missing library, or one being written: no case, and the reason
        return QueueKind(name, what, None, unavailable=f"{type(e).__name__}: {e}")
    version = None
    if dist is not None:
        try:
            version = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    return QueueKind(name, what, make(cls), version, bounded=bounded)


@functools.cache
def queue_kinds() -> tuple[QueueKind, ...]:
    """Every kind, available or not, in the order the tables list them."""
    return (
        _load(
            "aiowake.Queue",
            "aiowake._queue",
            "Queue",
            "aiowake",
            _mixed,
            "aiowake.Queue: sync_q.put / async_q.get, async_q.put / sync_q.get",
        ),
        _load("janus", "janus", "Queue", "janus", _mixed, "janus.Queue: sync_q and async_q"),
        _load(
            "culsans", "culsans", "Queue", "culsans", _mixed, "culsans.Queue: sync_q and async_q"
        ),
        _load(
            "aiologic.SimpleQueue",
            "aiologic",
            "SimpleQueue",
            "aiologic",
            _aiologic_simple,
            "aiologic.SimpleQueue: put / async_get, async_put / green_get (unbounded)",
            bounded=False,
        ),
        _load(
            "aiologic.Queue",
            "aiologic",
            "Queue",
            "aiologic",
            _aiologic_queue,
            "aiologic.Queue: green_put / async_get, async_put / green_get",
        ),
        QueueKind(
            "stock",
            "to the loop: asyncio.Queue fed by loop.call_soon_threadsafe(q.put_nowait, x); "
            "to a thread: queue.Queue, put_nowait from the task (unbounded only)",
            _stock,
            bounded=False,
        ),
    )


async def _get_forever(get: Callable[[], Awaitable[Any]], both: Callable[[], None]) -> None:
    while True:
        await get()
        both()  # the awaiting task's first line after its get


class QueueOnLoop(_OnLoop):
    """put -> get latency: the producer thread puts one item; a task awaiting ``get()`` takes
    the time on its next line. One item is in the queue at most, so the size does not matter."""

    def __init__(self, probe: Probe, loop_kind: str, kind: QueueKind) -> None:
        super().__init__(probe, loop_kind)
        if kind.open is None:  # pragma: no cover - unavailable kinds have no cases
            raise RuntimeError(f"{kind.name} is unavailable: {kind.unavailable}")
        self.ends = kind.open(0, self.loop)

    def setup(self) -> None:
        self._task = self.loop.create_task(_get_forever(self.ends.task_get, self.probe.both))

    def teardown(self) -> None:
        self._task.cancel()
        self.loop.run_until_complete(asyncio.gather(self._task, return_exceptions=True))
        if self.ends.aclose is not None:
            self.loop.run_until_complete(self.ends.aclose())

    def wake_fn(self) -> Wake:
        return functools.partial(self.ends.thread_put, None)
