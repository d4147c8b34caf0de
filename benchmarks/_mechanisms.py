"""The things being measured: each one a way for a producer thread to run code on a loop thread.

A mechanism is built with a ``Probe``: whatever the loop runs on a wake calls ``probe.both`` where
the user's own code would start (the harness takes the time, then acknowledges the wake to the
producer). Where the loop must do something after the user's code starts but before the next wake
may come (clear an Event), it calls ``probe.stamp`` first and ``probe.ack`` after that:
acknowledging before the clear would let the producer's next set() be cleared away, and the wake
lost.

A Waker's reader can start the user's code at either of two places, both correct: its first line
(look for work, then drain, then look again, which is what the Dispatcher's batch does and where
stock asyncio runs a ``call_soon_threadsafe`` callback, before it reads its self-pipe), or after
its ``drain()`` (drain, then look: where uvloop runs one, and what the floor's blocking read
amounts to). So a Waker's reader calls ``probe.woke`` on its first line, then drains, then
``probe.both``: the sample is the first line, and the time after the drain is kept beside it.

``serve()`` runs the loop in the consumer thread until ``stop()``. ``wake_fn()`` / ``post_fn()``
give the producer what it calls: a bound method or a ``functools.partial``, never a Python-level
wrapper, so that no case pays for an extra frame.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import os
import selectors
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import aiowake

uvloop: types.ModuleType | None
try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is in the bench dependencies on POSIX
    uvloop = None
rloop: types.ModuleType | None
try:  # an asyncio loop written in Rust; imported by name: it ships no type information
    rloop = importlib.import_module("rloop")
except ImportError:  # pragma: no cover - rloop is in the bench dependencies on POSIX
    rloop = None

Callback = Callable[[], None]


def _nothing() -> None:
    pass


@dataclass(frozen=True, slots=True)
class Probe:
    """The harness's hooks into the loop side: ``stamp`` then ``ack``, or ``both`` in one call;
    ``woke`` before a Waker's drain (then ``both`` after it)."""

    both: Callback
    stamp: Callback
    ack: Callback
    woke: Callback = _nothing

    @classmethod
    def of(cls, both: Callback) -> Probe:
        """A probe that does everything in ``stamp`` (burst: no timing, no acknowledgement)."""
        return cls(both, both, _nothing)


#: What the producer calls: its result, if any, is ignored.
Wake = Callable[[], object]
LoopFactory = Callable[[], asyncio.AbstractEventLoop]

LOOPS: dict[str, LoopFactory] = {"asyncio": asyncio.new_event_loop}
if uvloop is not None:
    LOOPS["uvloop"] = uvloop.new_event_loop
if rloop is not None:
    LOOPS["rloop"] = rloop.new_event_loop


def close_loop(loop: asyncio.AbstractEventLoop) -> None:
    """``loop.close()``, and for rloop the reference cycle broken that would keep it alive.

    rloop 0.5's loop and its child watcher refer to each other, and the loop's type (written in
    Rust) is invisible to the cyclic collector, so a closed rloop loop is never freed and keeps
    two descriptors (its epoll and an eventfd): the suite makes hundreds of loops, and would run
    out of descriptors. (rloop 0.5 also closes its self-pipe's descriptors when a run ends, then
    drops the Python sockets that still hold those numbers, which close them again with a
    ResourceWarning: a descriptor another thread opened in between is closed under it. Seen here
    as an EBADF in the next run's ``socketpair()`` while the main thread read a /proc file.)"""
    loop.close()
    if hasattr(loop, "_watcher_child"):
        loop._watcher_child = None


class Mechanism:
    """The interface every mechanism has."""

    def __init__(self, probe: Probe) -> None:
        self.probe = probe
        self.on_wake = probe.both

    def serve(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def wake_fn(self) -> Wake:
        """The latency scenarios' producer calls this once per sample."""
        raise NotImplementedError

    def post_fn(self) -> Callable[[Callback], object] | None:
        """The burst scenario's producers post callbacks with this; None if not a poster."""
        return None

    def backlog_fn(self) -> Callable[[], int] | None:
        """The flood scenario reads how many posted callbacks are queued and not yet run with
        this; None where the mechanism's queue is out of reach (the flood then counts them)."""
        return None


class _OnLoop(Mechanism):
    """A mechanism on an asyncio-compatible loop, run in the consumer thread."""

    def __init__(self, probe: Probe, loop_kind: str) -> None:
        super().__init__(probe)
        self.loop = LOOPS[loop_kind]()
        self.loop.set_debug(False)  # never time debug mode

    def serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.setup()
            self.loop.run_forever()
            self.teardown()
        finally:
            asyncio.set_event_loop(None)
            close_loop(self.loop)

    def setup(self) -> None:
        pass

    def teardown(self) -> None:
        pass

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)


class CallSoonThreadsafe(_OnLoop):
    """The loop's own ``call_soon_threadsafe`` (stock asyncio: a self-pipe write per call;
    uvloop: an eventfd write per call, made while holding the GIL)."""

    def wake_fn(self) -> Wake:
        return functools.partial(self.loop.call_soon_threadsafe, self.on_wake)

    def post_fn(self) -> Callable[[Callback], object]:
        return self.loop.call_soon_threadsafe

    def backlog_fn(self) -> Callable[[], int] | None:
        ready = getattr(self.loop, "_ready", None)  # stock asyncio's deque of ready handles
        return None if ready is None else ready.__len__


#: The backend name for a raw eventfd with no aiowake around it (see ``Watched``).
BARE = "bare"


@dataclass(frozen=True, slots=True)
class Watched:
    """What a reader watches: a Waker's four operations, or for ``backend=BARE`` the same done by
    hand on a raw eventfd that the producer writes directly. The bare cases are the issue's
    reference rows ("add_reader on a bare eventfd"): what the loop costs with no aiowake in it, so
    that a Waker case minus its bare case is what aiowake itself costs."""

    fd: int
    wake: Wake
    drain: Callable[[], object]
    close: Callable[[], None]

    @classmethod
    def open(cls, backend: str) -> Watched:
        if backend == BARE:
            fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            p = functools.partial
            return cls(fd, p(os.eventfd_write, fd, 1), p(os.eventfd_read, fd), p(os.close, fd))
        # One of Waker.backends() (a case name's backend: a plain str here).
        w = aiowake.Waker(cast(Any, backend))
        return cls(w.fileno(), w.wake, w.drain, w.close)


class WakerOnLoop(_OnLoop):
    """A Waker (or a bare eventfd) watched with ``loop.add_reader``."""

    def __init__(self, probe: Probe, loop_kind: str, backend: str) -> None:
        super().__init__(probe, loop_kind)
        self.waker = Watched.open(backend)

    def setup(self) -> None:
        woke, both, drain = self.probe.woke, self.probe.both, self.waker.drain

        def on_readable() -> None:
            woke()  # a reader that looks for work before draining starts here
            drain()
            both()  # one that drains first starts here

        self.loop.add_reader(self.waker.fd, on_readable)

    def teardown(self) -> None:
        self.loop.remove_reader(self.waker.fd)
        self.waker.close()

    def wake_fn(self) -> Wake:
        return self.waker.wake


async def _wait_forever(event: asyncio.Event | aiowake.Event, probe: Probe) -> None:
    stamp, ack = probe.stamp, probe.ack
    while True:
        await event.wait()
        stamp()
        event.clear()  # before the acknowledgement, or the next set() could be cleared away
        ack()


class _TaskOnLoop(_OnLoop):
    event: asyncio.Event | aiowake.Event

    def setup(self) -> None:
        self._task = self.loop.create_task(_wait_forever(self.event, self.probe))

    def teardown(self) -> None:
        self._task.cancel()
        self.loop.run_until_complete(asyncio.gather(self._task, return_exceptions=True))


class EventOnLoop(_TaskOnLoop):
    """A task awaiting ``aiowake.Event``; the producer calls ``event.set()``."""

    def __init__(self, probe: Probe, loop_kind: str) -> None:
        super().__init__(probe, loop_kind)
        self.event = self.aio_event = aiowake.Event()

    def wake_fn(self) -> Wake:
        return self.aio_event.set


class StockEventOnLoop(_TaskOnLoop):
    """The stock way to do what EventOnLoop does: a task awaiting ``asyncio.Event``, set through
    ``loop.call_soon_threadsafe(event.set)``."""

    def __init__(self, probe: Probe, loop_kind: str) -> None:
        super().__init__(probe, loop_kind)
        # Made here, not in setup() on the loop's thread: the producer asks for wake_fn() as soon
        # as both threads start, maybe before the loop thread gets to setup(). (Since Python
        # 3.10 an asyncio.Event binds to a loop at its first wait, not when made.)
        self.event = self.stock_event = asyncio.Event()

    def wake_fn(self) -> Wake:
        return functools.partial(self.loop.call_soon_threadsafe, self.stock_event.set)


class DispatcherOnLoop(_OnLoop):
    """``aiowake.Dispatcher(loop).call_soon_threadsafe``."""

    def __init__(self, probe: Probe, loop_kind: str) -> None:
        super().__init__(probe, loop_kind)
        self.dispatcher = aiowake.Dispatcher(self.loop)

    def teardown(self) -> None:
        self.dispatcher.close()

    def wake_fn(self) -> Wake:
        return functools.partial(self.dispatcher.call_soon_threadsafe, self.on_wake)

    def post_fn(self) -> Callable[[Callback], object]:
        return self.dispatcher.call_soon_threadsafe

    def backlog_fn(self) -> Callable[[], int] | None:
        # The channel's deque of jobs, until the Dispatcher shows its backlog itself.
        queue = getattr(getattr(self.dispatcher, "_channel", None), "_queue", None)
        return None if queue is None else queue.__len__


class DispatcherPostOnLoop(DispatcherOnLoop):
    """``aiowake.Dispatcher(loop).post``: no handle; a callback without arguments posted from a
    plain thread is queued alone."""

    def wake_fn(self) -> Wake:
        return functools.partial(self.dispatcher.post, self.on_wake)

    def post_fn(self) -> Callable[[Callback], object]:
        return self.dispatcher.post


class WakerOnSelectors(Mechanism):
    """A hand-written ``selectors`` loop watching a Waker (kafka-python's poll loop, in short), or a
    bare eventfd."""

    def __init__(self, probe: Probe, backend: str) -> None:
        super().__init__(probe)
        self.waker = Watched.open(backend)
        self._stopping = False

    def serve(self) -> None:
        waker, woke, both = self.waker, self.probe.woke, self.probe.both
        with selectors.DefaultSelector() as sel:
            sel.register(waker.fd, selectors.EVENT_READ)
            select, drain = sel.select, waker.drain
            while True:
                select()
                woke()  # a reader that looks for work before draining starts here
                drain()
                # Drain, then look: stop()'s wake may have coalesced with the one just drained.
                if self._stopping:
                    break
                both()  # one that drains first starts here
        waker.close()

    def stop(self) -> None:
        self._stopping = True
        self.waker.wake()

    def wake_fn(self) -> Wake:
        return self.waker.wake


class RawEventfdFloor(Mechanism):
    """The floor: two threads on a blocking eventfd, no loop, no selector."""

    def __init__(self, probe: Probe) -> None:
        super().__init__(probe)
        if sys.platform != "linux":  # pragma: no cover - guarded by the case list
            raise RuntimeError("the eventfd floor is Linux-only")
        self.fd = os.eventfd(0, os.EFD_CLOEXEC)
        self._stopping = False

    def serve(self) -> None:
        read, fd, on_wake = os.eventfd_read, self.fd, self.on_wake
        while True:
            read(fd)
            if self._stopping:
                break
            on_wake()
        os.close(fd)

    def stop(self) -> None:
        self._stopping = True
        os.eventfd_write(self.fd, 1)

    def wake_fn(self) -> Wake:
        return functools.partial(os.eventfd_write, self.fd, 1)
