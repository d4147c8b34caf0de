"""aiowake.Event: a worker thread finishes and wakes the coroutine that waits for it.

Run: python examples/event_from_thread.py  (add --uvloop to run it on uvloop)
"""

from __future__ import annotations

import asyncio
import hashlib
import sys
import threading

import aiowake


def crunch(data: bytes, result: list[str], done: aiowake.Event) -> None:
    result.append(hashlib.sha256(data * 100_000).hexdigest()[:16])
    done.set()  # any thread (or signal handler); no loop reference needed


async def main() -> None:
    done = aiowake.Event()
    result: list[str] = []
    worker = threading.Thread(target=crunch, args=(b"aiowake", result, done))
    worker.start()
    await done.wait()  # the loop stays free for other work meanwhile
    worker.join()
    print(f"digest {result[0]}")


if __name__ == "__main__":
    if "--uvloop" in sys.argv:
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())
