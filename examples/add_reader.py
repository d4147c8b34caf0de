"""Worker threads hand results to an asyncio loop through one Waker watched with add_reader.

Run: python examples/add_reader.py  (add --uvloop to run it on uvloop)
"""

from __future__ import annotations

import asyncio
import collections
import sys
import threading

import aiowake


def worker(n: int, results: collections.deque[tuple[int, int]], waker: aiowake.Waker) -> None:
    for i in range(3):
        results.append((n, i * i))  # the work first...
        waker.wake()  # ...then the wake: never blocks, coalesces with the others


async def main() -> None:
    loop = asyncio.get_running_loop()
    results: collections.deque[tuple[int, int]] = collections.deque()
    got = 0
    all_in = loop.create_future()

    def on_wake() -> None:
        nonlocal got
        waker.drain()  # drain first, then look: no wake that came before is missed
        while results:
            n, value = results.popleft()
            got += 1
            print(f"worker {n}: {value}")
        if got == 12 and not all_in.done():
            all_in.set_result(None)

    # attached() removes the reader when the block ends, however it ends (a cancellation at the
    # await too), before the waker is closed: the loop never watches a closed descriptor.
    with aiowake.Waker() as waker, waker.attached(loop, on_wake):
        threads = [threading.Thread(target=worker, args=(n, results, waker)) for n in range(4)]
        for t in threads:
            t.start()
        await all_in
    for t in threads:
        t.join()
    print(f"{got} results via {waker.backend}")


if __name__ == "__main__":
    if "--uvloop" in sys.argv:
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())
