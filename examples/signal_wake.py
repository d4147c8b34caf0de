"""Waking a selectors loop from a Python signal handler (SIGUSR1 here; SIGTERM works alike).

A signal handler may run between any two bytecodes of the main thread, even inside wake() itself;
wake() is safe there. The loop sees the flag the handler set, because it drains before it looks.

Run: python examples/signal_wake.py
"""

from __future__ import annotations

import os
import selectors
import signal
import threading
from types import FrameType

import aiowake


def main() -> None:
    waker = aiowake.Waker()
    received: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        received.append(signum)  # record first...
        waker.wake()  # ...then wake

    previous = signal.signal(signal.SIGUSR1, on_signal)
    try:
        with selectors.DefaultSelector() as sel:
            sel.register(waker, selectors.EVENT_READ)
            # Some other thread (or process) sends the signal while the loop waits.
            threading.Thread(target=os.kill, args=(os.getpid(), signal.SIGUSR1)).start()
            while not received:
                sel.select(timeout=30.0)
                waker.drain()
        print(f"woken by {signal.Signals(received[0]).name}")
    finally:
        signal.signal(signal.SIGUSR1, previous)
        waker.close()


if __name__ == "__main__":
    main()
