"""Waker on real event loops: stock asyncio (debug mode) and uvloop, via add_reader."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from typing import Any

import pytest

import aiowake

from .conftest import start_thread


@pytest.mark.parametrize("as_int", [False, True], ids=["object", "int"])
def test_add_reader_wakes_the_loop_from_a_thread(
    run_in_loop: Callable[..., Any], backend: str, as_int: bool
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


def test_one_wake_per_quiet_loop_iteration(run_in_loop: Callable[..., Any], backend: str) -> None:
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
