"""A thread reads a blocking source and feeds a coroutine through one queue; the coroutine answers
back through a second, bounded queue, which the thread reads with a blocking get().

Run: python examples/queue_thread_to_loop.py  (add --uvloop to run it on uvloop)
"""

from __future__ import annotations

import asyncio
import sys
import threading
import zlib

from aiowake import Queue

READINGS = 50


def blocking_read(i: int) -> bytes:
    """Stands for a device, a socket, a file: anything that blocks the calling thread."""
    threading.Event().wait(0.0005)
    return f"reading {i}".encode()


def reader(requests: Queue[bytes | None], answers: Queue[int]) -> None:
    """Runs in a thread: no event loop here, only blocking calls."""
    for i in range(READINGS):
        requests.sync_q.put(blocking_read(i))  # wakes the coroutine; never blocks the loop
    requests.sync_q.put(None)  # end of input
    total = sum(answers.sync_q.get(timeout=10) for _ in range(READINGS))
    answers.sync_q.put(total)


async def main() -> None:
    requests: Queue[bytes | None] = Queue()
    answers: Queue[int] = Queue(maxsize=8)  # bounded: the coroutine waits if the thread lags
    thread = threading.Thread(target=reader, args=(requests, answers))
    thread.start()
    while (data := await requests.async_q.get()) is not None:
        await answers.async_q.put(zlib.crc32(data))
    await asyncio.to_thread(thread.join)
    print(f"{READINGS} readings, checksum total {answers.async_q.get_nowait()}")
    await requests.aclose()
    await answers.aclose()


if __name__ == "__main__":
    if "--uvloop" in sys.argv:
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())
