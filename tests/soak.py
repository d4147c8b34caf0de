"""Soak: minutes of mixed load, then the invariants. ``make soak`` (not part of ``make test``).

Epochs of about two seconds alternate between stock asyncio and uvloop. In each, 8 producer
threads post numbered callbacks through a Dispatcher (``call_soon_threadsafe`` and ``post`` in
turn) and set an Event, a thread signals the process (the handler sets another Event and wakes a
Waker), a thread creates, wakes, drains and closes Wakers of every backend while others wake
them, and a thread forks children that check that their copy of a Waker is theirs alone. At the
end of each epoch and of the run:

- every posted callback ran exactly once, in its producer's order;
- no child failed, no Waker lost a wake;
- the process holds the descriptors it started with.

Bounded in time: every wait has a timeout, and the run ends by itself. Exit status 0 if every
invariant held.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import random
import selectors
import signal
import sys
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable
from types import FrameType

import uvloop

import aiowake

PRODUCERS = 8
EPOCH_SECONDS = 2.0
GUARD = 10.0  # seconds; a hang guard for every wait


def open_fds() -> set[int]:
    fds = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            os.fstat(int(name))
        except OSError:
            continue
        fds.add(int(name))
    return fds


def readable(fd: int, timeout: float = 0) -> bool:
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        return bool(sel.select(timeout))


class Soak:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.counts: Counter[str] = Counter()
        self.failures: list[str] = []
        self.lock = threading.Lock()
        self.on_signal: Callable[[], None] = lambda: None  # the current epoch's, set on its loop

    def _signal_handler(self, signum: int, frame: FrameType | None) -> None:
        self.count("signals handled")
        self.on_signal()

    def count(self, what: str, n: int = 1) -> None:
        with self.lock:
            self.counts[what] += n

    def fail(self, what: str) -> None:
        with self.lock:
            self.failures.append(what)

    # --- background load, shared by all epochs ----------------------------------------------

    def churn_wakers(self, stop: threading.Event) -> None:
        """Create, wake (from this and another thread), drain and close Wakers of every backend."""
        backends = aiowake.Waker.backends()
        while not stop.is_set():
            with aiowake.Waker(self.rng.choice(backends)) as w:
                waker_thread = threading.Thread(target=w.wake)
                waker_thread.start()
                w.wake()
                waker_thread.join(GUARD)
                if not readable(w.fileno(), 1.0) or not w.drain():
                    self.fail(f"{w!r}: a wake was lost")
                if w.drain():
                    self.fail(f"{w!r}: drained twice")
            self.count("wakers created and closed")

    def fork_children(self, stop: threading.Event) -> None:
        """Fork while everything else runs; the child checks that its copy of a Waker is its own."""
        with aiowake.Waker() as w:
            while not stop.wait(0.1):
                pid = os.fork()
                if pid == 0:  # the child: nothing but these few calls, then _exit
                    code = 1
                    try:
                        w.wake()
                        code = 0 if readable(w.fileno(), 5.0) and w.drain() else 2
                    finally:
                        os._exit(code)
                deadline = time.monotonic() + GUARD
                while True:
                    done, status = os.waitpid(pid, os.WNOHANG)
                    if done:
                        break
                    if time.monotonic() > deadline:
                        os.kill(pid, signal.SIGKILL)
                        os.waitpid(pid, 0)
                        self.fail("a forked child hung")
                        break
                    time.sleep(0.001)
                if done and os.waitstatus_to_exitcode(status) != 0:
                    self.fail(f"forked child exited with {os.waitstatus_to_exitcode(status)}")
                if readable(w.fileno()):
                    self.fail("a child's wake reached the parent's waker")
                self.count("forks survived")

    def send_signals(self, stop: threading.Event) -> None:
        while not stop.wait(0.002):
            os.kill(os.getpid(), signal.SIGUSR1)
            self.count("signals sent")

    # --- one epoch on one loop ----------------------------------------------------------------

    async def epoch(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        next_seq = [0] * PRODUCERS
        posted = [0] * PRODUCERS
        ev = aiowake.Event()
        sig_ev = aiowake.Event()
        sig_waker = aiowake.Waker()

        def on_signal() -> None:
            sig_ev.set()
            sig_waker.wake()

        def seen(producer: int, seq: int) -> None:
            if next_seq[producer] != seq:
                self.fail(f"producer {producer}: got {seq}, expected {next_seq[producer]}")
            next_seq[producer] = seq + 1

        async def count_sets(event: aiowake.Event, what: str) -> None:
            while True:
                await event.wait()
                event.clear()
                self.count(what)

        def on_sig_waker() -> None:
            if sig_waker.drain():
                self.count("signal wakes seen by add_reader")

        stop = threading.Event()
        self.on_signal = on_signal
        loop.add_reader(sig_waker.fileno(), on_sig_waker)
        watchers = [
            asyncio.create_task(count_sets(ev, "event sets seen")),
            asyncio.create_task(count_sets(sig_ev, "signal sets seen")),
        ]
        with aiowake.Dispatcher() as d:

            def produce(producer: int) -> None:
                seq = 0
                while not stop.is_set():
                    for _ in range(250):  # the two ways to post, in one order
                        d.call_soon_threadsafe(seen, producer, seq)
                        d.post(functools.partial(seen, producer, seq + 1))  # queued alone
                        seq += 2
                    ev.set()
                    while seq - next_seq[producer] > 5_000 and not stop.is_set():
                        time.sleep(0.001)  # back-pressure: let the loop catch up
                posted[producer] = seq

            threads = [
                threading.Thread(target=produce, args=(i,), name=f"producer-{i}")
                for i in range(PRODUCERS)
            ]
            for t in threads:
                t.start()
            await asyncio.sleep(seconds)
            stop.set()
            for t in threads:
                await asyncio.to_thread(t.join, GUARD)
            done = loop.create_future()
            d.call_soon_threadsafe(done.set_result, None)  # after every producer's last post
            await asyncio.wait_for(done, GUARD)
        self.on_signal = lambda: None
        loop.remove_reader(sig_waker.fileno())
        sig_waker.close()
        for task in watchers:
            task.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
        for producer in range(PRODUCERS):
            if next_seq[producer] != posted[producer]:
                ran = next_seq[producer]
                self.fail(f"producer {producer}: posted {posted[producer]}, ran {ran}")
        self.count("callbacks posted and run once, in order", sum(posted))
        self.count("epochs")

    def run(self, seconds: float) -> bool:
        warm_up = uvloop.new_event_loop()  # libuv's process-wide pipe, opened once, kept
        warm_up.run_until_complete(asyncio.sleep(0))
        warm_up.close()
        fds_before = open_fds()
        old_handler = signal.signal(signal.SIGUSR1, self._signal_handler)
        stop = threading.Event()
        background = [
            threading.Thread(target=fn, args=(stop,), name=fn.__name__)
            for fn in (self.churn_wakers, self.fork_children, self.send_signals)
        ]
        for t in background:
            t.start()
        factories: list[Callable[[], asyncio.AbstractEventLoop]] = [
            asyncio.new_event_loop,
            uvloop.new_event_loop,
        ]
        deadline = time.monotonic() + seconds
        epoch = 0
        try:
            while time.monotonic() < deadline and not self.failures:
                loop = factories[epoch % 2]()
                try:
                    left = deadline - time.monotonic()
                    try:
                        loop.run_until_complete(self.epoch(max(0.1, min(EPOCH_SECONDS, left))))
                    except TimeoutError:
                        self.fail(f"epoch {epoch} on {type(loop).__module__}: stuck (lost wakeup?)")
                    loop.run_until_complete(asyncio.sleep(0))  # unused channels close
                finally:
                    loop.close()
                self.count("loops started and closed")
                epoch += 1
        finally:
            stop.set()
            for t in background:
                t.join(GUARD)
            signal.signal(signal.SIGUSR1, old_handler)
        leaked = open_fds() - fds_before
        if leaked:
            self.fail(f"descriptors leaked: {sorted(leaked)}")
        self.count("descriptors leaked", len(leaked))
        return not self.failures


def main(argv: list[str] | None = None) -> int:
    summary = (__doc__ or "").split("\n")[0]
    parser = argparse.ArgumentParser(prog="python -m tests.soak", description=summary)
    parser.add_argument("--seconds", type=float, default=60.0, help="how long (default: 60)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    args = parser.parse_args(argv)
    if args.seconds <= 0:
        parser.error(f"--seconds must be positive, not {args.seconds}")
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork() with threads running
    soak = Soak(seed)
    started = time.monotonic()
    ok = soak.run(args.seconds)
    elapsed = time.monotonic() - started
    print(f"soak: {elapsed:.1f} s, seed {seed}, Python {sys.version.split()[0]}")
    for what, n in sorted(soak.counts.items()):
        print(f"  {n:>12,}  {what}")
    for failure in soak.failures[:20]:
        print(f"  FAILED: {failure}")
    print("soak: OK" if ok else f"soak: {len(soak.failures)} FAILURES")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
