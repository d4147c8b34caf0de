"""aiowake.Dispatcher: a callback-heavy thread (think: a C library's event thread) posts many
small events into the loop; many posts share one wakeup.

Run: python examples/dispatcher_burst.py  (add --uvloop to run it on uvloop)
"""

from __future__ import annotations

import asyncio
import sys
import threading

import aiowake

EVENTS = 100_000


async def main() -> None:
    loop = asyncio.get_running_loop()
    total = 0
    finished = loop.create_future()

    def on_event(value: int) -> None:  # runs on the loop's thread, in posting order
        nonlocal total
        total += value

    with aiowake.Dispatcher() as dispatcher:

        def event_thread() -> None:
            post = dispatcher.post  # nothing here is ever cancelled: no handles needed
            for i in range(EVENTS):
                post(on_event, i)
            post(finished.set_result, None)

        thread = threading.Thread(target=event_thread)
        thread.start()
        await finished
        thread.join()
    print(f"{EVENTS} events, sum {total}")


if __name__ == "__main__":
    if "--uvloop" in sys.argv:
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())
