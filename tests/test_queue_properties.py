"""Queue against a model with queue.Queue's semantics: random sequences of puts, gets, task_done,
shutdowns from this thread and from other threads, and tasks that wait to put and to get (and get
cancelled), on stock asyncio and uvloop, bounded and not."""

from __future__ import annotations

import asyncio
import collections
import queue
import threading
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

import aiowake
from aiowake._queue import AsyncQueueShutDown, Queue, SyncQueueShutDown

from .conftest import LOOP_FACTORIES, LoopFactory, open_fds

SETTINGS = settings(
    max_examples=40,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
GUARD = 10.0
SHUTDOWN = "ShutDown"


def in_thread(fn: Callable[[], object]) -> None:
    t = threading.Thread(target=fn)
    t.start()
    t.join(GUARD)
    assert not t.is_alive()


def outcome(fn: Callable[[], Any]) -> Any:
    """What *fn()* returned, or the name of the exception's kind."""
    try:
        return fn()
    except (queue.Full, asyncio.QueueFull):
        return "Full"
    except (queue.Empty, asyncio.QueueEmpty):
        return "Empty"
    except (SyncQueueShutDown, AsyncQueueShutDown):
        return SHUTDOWN
    except ValueError:
        return "ValueError"


def queue_machine(factory: LoopFactory, maxsize: int) -> type[RuleBasedStateMachine]:
    class QueueMachine(RuleBasedStateMachine):
        """The model: the items, the count of items got and not done, the shutdown flag, and
        the tasks waiting to get and to put, in the order they began. Puts and gets from
        outside the loop change the items at once; waiting tasks are served when the loop runs
        (``settle``), oldest first, as long as there is an item (or room)."""

        def __init__(self) -> None:
            super().__init__()
            self.fds_before = open_fds()
            self.loop = factory()
            self.q: Queue[int] = Queue(maxsize)
            self.items: collections.deque[int] = collections.deque()
            self.outstanding = 0
            self.shut = False
            self.getters: list[int] = []  # task ids
            self.putters: list[tuple[int, int]] = []  # (task id, item)
            self.tasks: dict[int, asyncio.Task[Any]] = {}
            self.expected: dict[int, Any] = {}
            self.next = 0

        def fresh(self) -> int:
            self.next += 1
            return self.next

        def has_room(self) -> bool:
            return maxsize <= 0 or len(self.items) < maxsize

        # outside the loop: this thread or another one

        @rule(face=st.sampled_from(["sync", "async"]), from_thread=st.booleans())
        def put_nowait(self, face: str, from_thread: bool) -> None:
            item = self.fresh()
            face_q = self.q.sync_q if face == "sync" else self.q.async_q
            got: list[Any] = []

            def go() -> None:
                got.append(outcome(lambda: face_q.put_nowait(item)))

            in_thread(go) if from_thread else go()
            if self.shut:
                assert got == [SHUTDOWN]
            elif not self.has_room():
                assert got == ["Full"]
            else:
                assert got == [None]
                self.items.append(item)

        @rule(face=st.sampled_from(["sync", "async"]), from_thread=st.booleans())
        def get_nowait(self, face: str, from_thread: bool) -> None:
            face_q = self.q.sync_q if face == "sync" else self.q.async_q
            got: list[Any] = []

            def go() -> None:
                got.append(outcome(face_q.get_nowait))

            in_thread(go) if from_thread else go()
            if self.items:
                assert got == [self.items.popleft()]
                self.outstanding += 1
            else:
                assert got == [SHUTDOWN if self.shut else "Empty"]

        @rule(from_thread=st.booleans())
        def task_done(self, from_thread: bool) -> None:
            got: list[Any] = []

            def go() -> None:
                got.append(outcome(self.q.sync_q.task_done))

            in_thread(go) if from_thread else go()
            if self.outstanding:
                assert got == [None]
                self.outstanding -= 1
            else:
                assert got == ["ValueError"]

        @rule(immediate=st.booleans(), from_thread=st.booleans())
        def shutdown(self, immediate: bool, from_thread: bool) -> None:
            def go() -> None:
                self.q.shutdown(immediate)

            in_thread(go) if from_thread else go()
            self.shut = True
            if immediate:
                self.items.clear()

        # tasks of the loop

        @rule()
        def start_getter(self) -> None:
            self.settle()  # else it would take an item a waiting getter is due (as asyncio's)
            n = self.fresh()
            self.tasks[n] = self.loop.create_task(self.q.async_q.get())
            self.getters.append(n)
            self.settle()

        @precondition(lambda self: maxsize > 0)
        @rule()
        def start_putter(self) -> None:
            self.settle()
            n = self.fresh()
            self.tasks[n] = self.loop.create_task(self.q.async_q.put(n))
            self.putters.append((n, n))
            self.settle()

        @rule()
        def put_in_a_task(self) -> None:
            """put_nowait from inside a task: wakes the oldest getter directly."""
            self.settle()
            item = self.fresh()
            got: list[Any] = []

            async def put() -> None:
                got.append(outcome(lambda: self.q.async_q.put_nowait(item)))

            self.loop.run_until_complete(put())
            if self.shut:
                assert got == [SHUTDOWN]
            elif not self.has_room():
                assert got == ["Full"]
            else:
                assert got == [None]
                self.items.append(item)
            self.settle()

        @precondition(lambda self: self.getters or self.putters)
        @rule(data=st.data())
        def cancel_a_waiting_task(self, data: st.DataObject) -> None:
            waiting = self.getters + [n for n, _ in self.putters]
            n = data.draw(st.sampled_from(waiting))
            self.tasks[n].cancel()
            if n in self.getters:
                self.getters.remove(n)
            else:
                self.putters = [p for p in self.putters if p[0] != n]
            self.expected[n] = "cancelled"
            self.settle()

        @rule()
        def settle(self) -> None:
            """Run the loop until everything posted so far has had its turn; serve the model's
            waiting tasks as the queue should have; compare."""

            async def until_all_had_their_turn() -> None:
                done = self.loop.create_future()
                with aiowake.Dispatcher() as sentinel:
                    sentinel.call_soon_threadsafe(done.set_result, None)
                    await asyncio.wait_for(done, GUARD)
                for _ in range(5):
                    await asyncio.sleep(0)

            for _ in range(3):  # a served putter's item may serve a getter, and so on
                self.loop.run_until_complete(until_all_had_their_turn())
            self.serve_model()
            for n, task in list(self.tasks.items()):
                waiting = n in self.getters or any(p[0] == n for p in self.putters)
                assert task.done() is not waiting, (n, task)
                if task.done():
                    if task.cancelled():
                        got: Any = "cancelled"
                    else:
                        got = outcome(task.result)
                    assert got == self.expected.pop(n), n
                    del self.tasks[n]

        def serve_model(self) -> None:
            changed = True
            while changed:
                changed = False
                while self.getters and self.items:
                    self.expected[self.getters.pop(0)] = self.items.popleft()
                    self.outstanding += 1
                    changed = True
                while self.putters and self.has_room() and not self.shut:
                    n, item = self.putters.pop(0)
                    self.items.append(item)
                    self.expected[n] = None
                    changed = True
            if self.shut:
                for n, _ in self.putters:
                    self.expected[n] = SHUTDOWN
                self.putters = []
                if not self.items:
                    for n in self.getters:
                        self.expected[n] = SHUTDOWN
                    self.getters = []

        @invariant()
        def sizes_agree(self) -> None:
            assert self.q.sync_q.qsize() == len(self.items)
            assert list(self.q._items) == list(self.items)
            assert self.q.sync_q.unfinished_tasks == len(self.items) + self.outstanding
            assert self.q.closed is self.shut
            assert len(self.q._items) <= (maxsize if maxsize > 0 else len(self.q._items))

        def teardown(self) -> None:
            for task in self.tasks.values():
                task.cancel()
            if self.tasks:
                self.loop.run_until_complete(asyncio.wait(list(self.tasks.values())))
            self.loop.run_until_complete(asyncio.sleep(0))
            self.loop.close()
            assert open_fds() == self.fds_before

    return QueueMachine


@pytest.mark.parametrize("maxsize", [0, 2])
@pytest.mark.parametrize("loop_name", list(LOOP_FACTORIES))
def test_queue_follows_its_model(loop_name: str, maxsize: int) -> None:
    run_state_machine_as_test(queue_machine(LOOP_FACTORIES[loop_name], maxsize), settings=SETTINGS)
