"""The things being measured: each one a way for a producer thread to run code on a loop thread.

A mechanism is built with a ``Probe``: whatever the loop runs on a wake calls ``probe.both`` where
the user's own code would start (the harness takes the time, then acknowledges the wake to the
producer). For a Waker that is after its ``drain()``, which the Waker's protocol puts first, as the
loops' own ``call_soon_threadsafe`` and the floor consume their wakeup before the callback runs.
Where the loop must do something after the user's code starts but before the next wake may come
(clear an Event), it calls ``probe.stamp`` first and ``probe.ack`` after that: acknowledging before
the clear would let the producer's next set() be cleared away, and the wake lost. ``serve()`` runs
the loop in the consumer thread until ``stop()``. ``wake_fn()`` / ``post_fn()`` give the producer
what it calls: a bound method or a ``functools.partial``, never a Python-level wrapper, so that no
case pays for an extra frame.
"""

from __future__ import annotations

import asyncio
import functools
import os
import selectors
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass

import aiowake

uvloop: types.ModuleType | None
try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is in the bench dependencies on POSIX
    uvloop = None

Callback = Callable[[], None]


@dataclass(frozen=True, slots=True)
class Probe:
    """The harness's hooks into the loop side: ``stamp`` then ``ack``, or ``both`` in one call."""

    both: Callback
    stamp: Callback
    ack: Callback

    @classmethod
    def of(cls, both: Callback) -> Probe:
        """A probe that does everything in ``stamp`` (burst: no timing, no acknowledgement)."""
        return cls(both, both, _nothing)


def _nothing() -> None:
    pass


#: What the producer calls: its result, if any, is ignored.
Wake = Callable[[], object]
LoopFactory = Callable[[], asyncio.AbstractEventLoop]

LOOPS: dict[str, LoopFactory] = {"asyncio": asyncio.new_event_loop}
if uvloop is not None:
    LOOPS["uvloop"] = uvloop.new_event_loop


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
            self.loop.close()

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


class WakerOnLoop(_OnLoop):
    """A Waker watched with ``loop.add_reader``."""

    def __init__(self, probe: Probe, loop_kind: str, backend: str) -> None:
        super().__init__(probe, loop_kind)
        self.waker = aiowake.Waker(backend)

    def setup(self) -> None:
        both, drain = self.probe.both, self.waker.drain

        def on_readable() -> None:
            drain()  # first, as the Waker's protocol says; then the user's code would start
            both()

        self.loop.add_reader(self.waker.fileno(), on_readable)

    def teardown(self) -> None:
        self.loop.remove_reader(self.waker.fileno())
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

    def setup(self) -> None:
        self.event = self.stock_event = asyncio.Event()  # made on the loop's thread
        super().setup()

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


class WakerOnSelectors(Mechanism):
    """A hand-written ``selectors`` loop watching a Waker (kafka-python's poll loop, in short)."""

    def __init__(self, probe: Probe, backend: str) -> None:
        super().__init__(probe)
        self.waker = aiowake.Waker(backend)
        self._stopping = False

    def serve(self) -> None:
        waker, both = self.waker, self.probe.both
        with selectors.DefaultSelector() as sel:
            sel.register(waker, selectors.EVENT_READ)
            select, drain = sel.select, waker.drain
            while True:
                select()
                drain()  # first, as the Waker's protocol says; then the user's code would start
                # Drain, then look: stop()'s wake may have coalesced with the one just drained.
                if self._stopping:
                    break
                both()
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
