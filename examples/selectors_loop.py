"""A hand-written selectors loop, in the style of kafka-python's client poll loop.

``poll()`` blocks in ``select()`` until a socket is ready or a timeout passes; ``send()``, called
from any thread, queues a request and wakes the poll so it goes out at once instead of after the
timeout.

Run: python examples/selectors_loop.py
"""

from __future__ import annotations

import collections
import selectors
import threading
import time

import aiowake


class Client:
    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        self._waker = aiowake.Waker()
        self._selector.register(self._waker, selectors.EVENT_READ)
        self._outbox: collections.deque[str] = collections.deque()
        self.sent: list[str] = []

    def send(self, request: str) -> None:
        """Any thread: queue *request* and interrupt a poll() that is blocked in select()."""
        self._outbox.append(request)
        self._waker.wake()

    def poll(self, timeout: float) -> None:
        """The loop's thread: wait for I/O or a wake, then do what is due."""
        for key, _ in self._selector.select(timeout):
            if key.fileobj is self._waker:
                self._waker.drain()
        while self._outbox:
            self.sent.append(self._outbox.popleft())

    def close(self) -> None:
        self._selector.close()
        self._waker.close()


def main() -> None:
    client = Client()

    def send_three() -> None:
        for i in range(3):
            client.send(f"request {i}")

    sender = threading.Thread(target=send_three)
    t0 = time.monotonic()
    sender.start()
    while len(client.sent) < 3:
        client.poll(timeout=30.0)  # a wake ends the wait long before 30 s
    sender.join()
    elapsed = time.monotonic() - t0
    client.close()
    print(f"sent {client.sent} in {elapsed * 1000:.1f} ms, not 30 s")


if __name__ == "__main__":
    main()
