"""Stateful property tests: random sequences of operations checked against a model at every step.

Hypothesis shrinks any failing sequence to a minimal one, which is the point: interleavings a
hand-written test would not think of, for ``Waker`` (every backend), ``Dispatcher`` and ``Event``
(on both loops).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

import aiowake
from aiowake import BackendName

from .conftest import BACKENDS, LOOP_FACTORIES, LoopFactory, open_fds, readable

SETTINGS = settings(
    max_examples=40,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

GUARD = 10.0  # seconds; a hang guard, never a speed check


def in_thread(fn: Callable[[], object]) -> None:
    t = threading.Thread(target=fn)
    t.start()
    t.join(GUARD)
    assert not t.is_alive()


# --- Waker ---------------------------------------------------------------------------------------


def waker_machine(backend: BackendName) -> type[RuleBasedStateMachine]:
    class WakerMachine(RuleBasedStateMachine):
        """Model: ``pending`` (a wake since the last drain) and ``closed``."""

        def __init__(self) -> None:
            super().__init__()
            self.fds_before = open_fds()
            self.waker = aiowake.Waker(backend)
            self.pending = False
            self.closed = False

        @rule(times=st.integers(1, 3), from_thread=st.booleans())
        def wake(self, times: int, from_thread: bool) -> None:
            def go() -> None:
                for _ in range(times):
                    self.waker.wake()

            in_thread(go) if from_thread else go()
            self.pending = not self.closed

        @rule()
        def drain(self) -> None:
            assert self.waker.drain() is (self.pending and not self.closed)
            self.pending = False

        @rule()
        def close(self) -> None:
            self.waker.close()
            self.closed = True
            self.pending = False

        @rule()
        def fileno(self) -> None:
            if self.closed:
                with pytest.raises(ValueError, match="closed"):
                    self.waker.fileno()
            else:
                assert self.waker.fileno() >= 0

        @invariant()
        def readable_iff_pending(self) -> None:
            assert self.waker.closed is self.closed
            if not self.closed:
                assert readable(self.waker) is self.pending
                assert ("pending" in repr(self.waker)) is self.pending

        def teardown(self) -> None:
            self.waker.close()
            assert open_fds() == self.fds_before

    WakerMachine.__name__ = f"WakerMachine[{backend}]"
    return WakerMachine


@pytest.mark.parametrize("backend", BACKENDS)
def test_waker_follows_its_model(backend: BackendName) -> None:
    run_state_machine_as_test(waker_machine(backend), settings=SETTINGS)


# --- Dispatcher and Event ---------------------------------------------------------------------


def loop_machine(factory: LoopFactory) -> type[RuleBasedStateMachine]:
    class LoopMachine(RuleBasedStateMachine):
        """One loop, one Dispatcher (re-opened after close) and one Event, driven between loop
        runs. ``settle`` runs the loop until everything posted so far has had its turn, then
        checks the model: which callbacks ran, in which order, which waiters woke."""

        handles = Bundle("handles")
        waiters = Bundle("waiters")

        def __init__(self) -> None:
            super().__init__()
            self.fds_before = open_fds()
            self.loop = factory()
            self.dispatcher = aiowake.Dispatcher(self.loop)
            self.event = aiowake.Event()
            self.ran: list[int] = []
            self.expected: list[int] = []  # posted, not cancelled, in post order
            self.next_id = 0
            self.is_set = False
            self.live_waiters: dict[int, asyncio.Task[bool]] = {}
            self.should_be_done: set[int] = set()

        # Dispatcher

        @rule(target=handles, from_thread=st.booleans())
        def post(self, from_thread: bool) -> tuple[int, aiowake.DispatcherHandle | None]:
            n = self.next_id
            self.next_id += 1
            got: list[aiowake.DispatcherHandle] = []

            def go() -> None:
                got.append(self.dispatcher.call_soon_threadsafe(self.ran.append, n))

            in_thread(go) if from_thread else go()
            self.expected.append(n)
            return n, got[0]

        @rule(from_thread=st.booleans())
        def post_bare(self, from_thread: bool) -> None:
            """post() without arguments, from an empty context: the callback alone is queued."""
            n = self.next_id
            self.next_id += 1
            bare = functools.partial(self.ran.append, n)
            dispatcher = self.dispatcher

            def post() -> None:
                contextvars.Context().run(lambda: dispatcher.post(bare))

            in_thread(post) if from_thread else post()
            self.expected.append(n)

        @rule(handle=consumes(handles))
        def cancel(self, handle: tuple[int, aiowake.DispatcherHandle]) -> None:
            n, h = handle
            h.cancel()
            assert h.cancelled()
            if n not in self.ran:  # not run yet: it never will
                self.expected.remove(n)

        @rule()
        def close_and_reopen(self) -> None:
            self.dispatcher.close()
            with pytest.raises(RuntimeError, match="closed"):
                self.dispatcher.call_soon_threadsafe(print)
            self.dispatcher = aiowake.Dispatcher(self.loop)

        # Event

        @rule(from_thread=st.booleans())
        def set_event(self, from_thread: bool) -> None:
            in_thread(self.event.set) if from_thread else self.event.set()
            self.is_set = True
            self.should_be_done |= set(self.live_waiters)

        @rule()
        def clear_event(self) -> None:
            self.event.clear()
            self.is_set = False

        @rule(target=waiters)
        def start_waiter(self) -> int:
            n = self.next_id
            self.next_id += 1
            self.live_waiters[n] = self.loop.create_task(self.event.wait())
            # Let it take its first step: from then on it is waiting (or done, if set).
            self.loop.run_until_complete(asyncio.sleep(0))
            if self.is_set:
                self.should_be_done.add(n)
            return n

        @precondition(lambda self: self.live_waiters)
        @rule(n=consumes(waiters))
        def cancel_waiter(self, n: int) -> None:
            task = self.live_waiters.pop(n, None)
            if task is not None and not task.done():
                task.cancel()
            self.should_be_done.discard(n)

        # The loop

        @rule()
        def settle(self) -> None:
            async def until_all_had_their_turn() -> None:
                # Through the same channel, queued after everything posted so far.
                done = self.loop.create_future()
                with aiowake.Dispatcher() as sentinel:
                    sentinel.call_soon_threadsafe(done.set_result, None)
                    await asyncio.wait_for(done, GUARD)
                for _ in range(3):  # woken waiters' tasks take their next step
                    await asyncio.sleep(0)

            self.loop.run_until_complete(until_all_had_their_turn())
            assert self.ran == self.expected
            for n, task in list(self.live_waiters.items()):
                assert task.done() is (n in self.should_be_done), n
                if task.done():
                    assert task.result() is True
                    del self.live_waiters[n]
                    self.should_be_done.discard(n)

        @invariant()
        def ran_is_a_prefix_in_order(self) -> None:
            # Between settles the loop did not run, or ran part of the queue: always a prefix.
            assert self.ran == self.expected[: len(self.ran)]

        def teardown(self) -> None:
            self.dispatcher.close()
            for task in self.live_waiters.values():
                task.cancel()
            pending: list[Any] = list(self.live_waiters.values())
            if pending:
                self.loop.run_until_complete(asyncio.wait(pending))
            self.loop.run_until_complete(asyncio.sleep(0))
            self.loop.close()
            assert open_fds() == self.fds_before

    return LoopMachine


@pytest.mark.parametrize("loop_name", list(LOOP_FACTORIES))
def test_dispatcher_and_event_follow_their_model(loop_name: str) -> None:
    run_state_machine_as_test(loop_machine(LOOP_FACTORIES[loop_name]), settings=SETTINGS)


def test_a_set_wakes_only_the_tasks_waiting_when_it_was_made(loop_factory: LoopFactory) -> None:
    """A regression the Event model found: set() from outside the loop, clear(), then a new
    waiter. When the loop gets to the set, the earlier waiter wakes (as with asyncio.Event) and
    the new one keeps waiting, because the event it waits for is not set."""
    loop = loop_factory()
    try:
        ev = aiowake.Event()
        first = loop.create_task(ev.wait())
        loop.run_until_complete(asyncio.sleep(0))
        ev.set()  # not on a running loop: goes through the channel
        ev.clear()
        second = loop.create_task(ev.wait())
        loop.run_until_complete(asyncio.wait_for(first, GUARD))
        for _ in range(3):
            loop.run_until_complete(asyncio.sleep(0))
        assert first.result() is True
        assert not second.done()
        ev.set()
        assert loop.run_until_complete(asyncio.wait_for(second, GUARD)) is True
    finally:
        loop.close()
