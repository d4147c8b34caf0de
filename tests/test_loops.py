"""Waker on real event loops: stock asyncio (debug mode) and uvloop, via add_reader."""

from __future__ import annotations

import asyncio
import collections
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

import aiowake
from aiowake import BackendName

from .conftest import start_thread


@pytest.mark.parametrize("as_int", [False, True], ids=["object", "int"])
def test_add_reader_wakes_the_loop_from_a_thread(
    run_in_loop: Callable[..., Any], backend: BackendName, as_int: bool
) -> None:
    items = 5_000

    async def main() -> int:
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        queue: collections.deque[int] = collections.deque()
        seen = 0

        def on_wake() -> None:
            nonlocal seen
            waker.drain()  # first drain, then look for work
            while queue:
                assert queue.popleft() == seen
                seen += 1
            if seen == items and not done.done():
                done.set_result(None)

        def produce() -> None:
            for i in range(items):
                queue.append(i)
                waker.wake()

        with aiowake.Waker(backend) as waker:
            target = waker.fileno() if as_int else waker
            loop.add_reader(target, on_wake)
            try:
                thread = start_thread(produce)
                await asyncio.wait_for(done, 30)
                await asyncio.to_thread(thread.join, 30)
            finally:
                loop.remove_reader(target)  # uvloop returns None, asyncio a bool
        return seen

    assert run_in_loop(main) == items


def test_one_wake_per_quiet_loop_iteration(
    run_in_loop: Callable[..., Any], backend: BackendName
) -> None:
    """A loop that is woken once, by many wakes, runs its reader once."""

    async def main() -> int:
        loop = asyncio.get_running_loop()
        calls = 0
        fired = asyncio.Event()

        def on_wake() -> None:
            nonlocal calls
            calls += 1
            assert waker.drain()
            fired.set()

        with aiowake.Waker(backend) as waker:
            loop.add_reader(waker, on_wake)
            for _ in range(1000):
                waker.wake()
            await asyncio.wait_for(fired.wait(), 30)
            for _ in range(3):
                await asyncio.sleep(0)
            loop.remove_reader(waker)
        return calls

    assert run_in_loop(main) == 1


_INTERRUPTED_WAITER = """
import asyncio, sys, threading
import aiowake

loop = uvloop.new_event_loop() if sys.argv[1] == "uvloop" else asyncio.new_event_loop()
ev = aiowake.Event()

async def interrupted():
    await ev.wait()
    raise KeyboardInterrupt

first = loop.create_task(interrupted())
rest = [loop.create_task(ev.wait()) for _ in range(3)]
loop.run_until_complete(asyncio.sleep(0.01))
threading.Thread(target=ev.set).start()
try:
    loop.run_until_complete(asyncio.wait_for(asyncio.gather(*rest), 30))
except KeyboardInterrupt:
    print("interrupted", type(first.exception()).__name__)
print(loop.run_until_complete(asyncio.wait_for(asyncio.gather(*rest), 30)), len(ev._waiters))
loop.close()
"""


@pytest.mark.parametrize("kind", ["asyncio", "uvloop"])
def test_a_resumed_task_raising_keyboardinterrupt_strands_no_other_waiter(kind: str) -> None:
    """KeyboardInterrupt out of one resumed task leaves the loop, as from any callback; the
    other waiters of that set() are still woken when the loop runs again.

    In a subprocess: on CPython 3.11 a task that lets KeyboardInterrupt out of its step leaves
    the interpreter's recursion count off (later ast.parse() calls, pytest's among them, fail
    with "AST constructor recursion depth mismatch"), with or without aiowake."""
    pytest.importorskip(kind)
    script = ("import uvloop\n" if kind == "uvloop" else "") + _INTERRUPTED_WAITER
    out = subprocess.run(
        [sys.executable, "-c", script, kind], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["interrupted KeyboardInterrupt", "[True, True, True] 0"]
