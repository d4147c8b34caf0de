"""Soak: minutes of mixed load, then the invariants. ``make soak`` (not part of ``make test``).

Epochs of about two seconds alternate between stock asyncio and uvloop. In each, 8 producer
threads post numbered callbacks through a Dispatcher (``call_soon_threadsafe`` and ``post`` in
turn) and set an Event; Queue traffic runs both ways, bounded (2 threads put and a task gets; a
task puts and 2 threads get); and a thread signals the process (the handler sets another Event and
wakes a Waker). Throughout the run, a thread creates, wakes, drains and closes Wakers of every
backend while others wake them; a thread forks children that check that their copy of a Waker is
theirs alone; and a thread runs loops of its own (asyncio and uvloop in turn, each closed after a
few dozen rounds) in which a Dispatcher, the loop's only user of its channel, is closed while 3
threads still post to it with ``try_post``.

``--eager-gc`` (``gc.set_threshold(1)``: a finalizer may run at nearly any bytecode, on any
thread) and ``--switch-interval 1e-6`` (threads switch as often as the interpreter allows) drive
the lifecycle races on purpose; ``make soak`` uses both. At the end of each epoch and of the run:

- every posted callback ran exactly once, in its producer's order, and every ``try_post`` that
  returned True ran, also when its Dispatcher was closed meanwhile;
- every queue item was got exactly once, in its producer's order;
- no child failed, no Waker lost a wake, no wait hung;
- every closed loop was freed, and the process holds the descriptors it started with.

Bounded in time: every wait has a timeout, and the run ends by itself. It reports how many were
lost, leaked and hung, and exits 0 only if each is zero and every other invariant held.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import functools
import gc
import os
import queue
import random
import selectors
import signal
import sys
import threading
import time
import traceback
import warnings
import weakref
from collections import Counter
from collections.abc import Callable
from types import FrameType

import uvloop

import aiowake

PRODUCERS = 8
QUEUE_THREADS = 2  # per direction
QUEUE_MAXSIZE = 64
RACERS = 3  # threads posting while their Dispatcher is closed
RACE_POSTS = 2_000  # the most one racer posts in a round
RACE_ROUNDS = 30  # rounds per loop of the racing thread, before that loop is closed
EPOCH_SECONDS = 2.0
ROUND = 250  # posts per producer between two checkpoints
AHEAD = 20  # checkpoints a producer may be ahead of the loop before it waits
GUARD = 30.0  # seconds; a hang guard for every wait
#: What a failure is: lost (accepted, never delivered), leaked (a descriptor or a closed loop
#: outlived its use), hung (a wait ran out of its guard), wrong (anything else broken).
KINDS = ("lost", "leaked", "hung", "wrong")


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
        self.failures: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self.on_signal: Callable[[], None] = lambda: None  # the current epoch's, set on its loop
        self.loops: list[weakref.ref[asyncio.AbstractEventLoop]] = []  # every loop, closed

    def _signal_handler(self, signum: int, frame: FrameType | None) -> None:
        self.count("signals handled")
        self.on_signal()

    def count(self, what: str, n: int = 1) -> None:
        with self.lock:
            self.counts[what] += n

    def fail(self, kind: str, what: str) -> None:
        assert kind in KINDS, kind
        with self.lock:
            self.failures.append((kind, what))

    def join(self, threads: list[threading.Thread], what: str) -> None:
        for t in threads:
            t.join(GUARD)
            if t.is_alive():
                self.fail("hung", f"{what}: thread {t.name} still running after {GUARD} s")

    def guarded(self, fn: Callable[[threading.Event], None]) -> Callable[[threading.Event], None]:
        """*fn*, its exception a failure of the run instead of a thread's silent end."""

        @functools.wraps(fn)
        def run(stop: threading.Event) -> None:
            try:
                fn(stop)
            except BaseException:
                self.fail("wrong", f"{fn.__name__}: {traceback.format_exc()}")

        return run

    # --- background load, shared by all epochs ----------------------------------------------

    def churn_wakers(self, stop: threading.Event) -> None:
        """Create, wake (from this and another thread), drain and close Wakers of every backend."""
        backends = aiowake.Waker.backends()
        while not stop.is_set():
            with aiowake.Waker(self.rng.choice(backends)) as w:
                waker_thread = threading.Thread(target=w.wake)
                waker_thread.start()
                w.wake()
                self.join([waker_thread], "churn_wakers")
                if not readable(w.fileno(), GUARD) or not w.drain():
                    self.fail("lost", f"{w!r}: a wake was lost")
                if w.drain():
                    self.fail("wrong", f"{w!r}: drained twice")
            self.count("wakers created and closed")

    def fork_children(self, stop: threading.Event) -> None:
        """Fork while everything else runs; the child checks that its copy of a Waker is its own."""
        with aiowake.Waker() as w:
            while not stop.wait(0.1):  # the pace of the forks, not a synchronization
                r, wr = os.pipe()  # the child's copy of wr closes when it exits: end of file
                pid = os.fork()
                if pid == 0:  # the child: nothing but these few calls, then _exit
                    code = 1
                    try:
                        w.wake()
                        code = 0 if readable(w.fileno(), GUARD) and w.drain() else 2
                    finally:
                        os._exit(code)
                os.close(wr)
                try:
                    exited = readable(r, GUARD)
                    if not exited:
                        os.kill(pid, signal.SIGKILL)
                        self.fail("hung", "a forked child hung")
                    _, status = os.waitpid(pid, 0)
                finally:
                    os.close(r)
                if exited and os.waitstatus_to_exitcode(status) != 0:
                    code = os.waitstatus_to_exitcode(status)
                    self.fail("wrong", f"forked child exited with {code}")
                if readable(w.fileno()):
                    self.fail("wrong", "a child's wake reached the parent's waker")
                self.count("forks survived")

    def send_signals(self, stop: threading.Event) -> None:
        while not stop.wait(0.002):  # the pace of the signals
            os.kill(os.getpid(), signal.SIGUSR1)
            self.count("signals sent")

    def close_races(self, stop: threading.Event) -> None:
        """Loops of this thread's own, asyncio and uvloop in turn, each closed after
        RACE_ROUNDS rounds of ``_close_race``."""
        factories: list[Callable[[], asyncio.AbstractEventLoop]] = [
            asyncio.new_event_loop,
            uvloop.new_event_loop,
        ]
        n = 0
        while not stop.is_set():
            loop = factories[n % 2]()
            n += 1
            try:
                for i in range(RACE_ROUNDS):
                    if stop.is_set():
                        break
                    try:
                        loop.run_until_complete(self._close_race(i))
                    except TimeoutError:
                        self.fail("hung", f"close race on {type(loop).__module__}: stuck")
                        return
                loop.run_until_complete(loop.shutdown_default_executor())
            finally:
                loop.close()
            self.loops.append(weakref.ref(loop))
            self.count("loops started and closed")

    async def _close_race(self, i: int) -> None:
        """A Dispatcher, its loop's only user of the channel, is closed (by the loop's thread or
        by another, at a varying moment) while RACERS threads post to it with ``try_post``;
        every post accepted runs, in each racer's order."""
        loop = asyncio.get_running_loop()
        d = aiowake.Dispatcher()
        accepted = [0] * RACERS
        ran: list[list[int]] = [[] for _ in range(RACERS)]
        total_ran = 0
        settle: tuple[asyncio.Future[None], int] | None = None

        def record(k: int, seq: int) -> None:
            nonlocal total_ran
            ran[k].append(seq)
            total_ran += 1
            if settle is not None and total_ran >= settle[1] and not settle[0].done():
                settle[0].set_result(None)

        start = threading.Barrier(RACERS + 1)

        def racer(k: int) -> None:
            start.wait(GUARD)
            for seq in range(RACE_POSTS):
                if not d.try_post(record, k, seq):
                    return
                accepted[k] += 1

        racers = [
            threading.Thread(target=racer, args=(k,), name=f"racer-{k}") for k in range(RACERS)
        ]
        for t in racers:
            t.start()
        await asyncio.to_thread(start.wait, GUARD)
        for _ in range(i % 4):  # let some batches run first
            await asyncio.sleep(0)
        if i % 2:
            d.close()
        else:
            closer = threading.Thread(target=d.close, name="closer")
            closer.start()
            await asyncio.to_thread(self.join, [closer], "close race")
        await asyncio.to_thread(self.join, racers, "close race")
        total = sum(accepted)
        if total_ran < total:
            settle = (loop.create_future(), total)
            try:
                await asyncio.wait_for(settle[0], GUARD)
            except TimeoutError:
                pass  # counted below
        for k in range(RACERS):
            if ran[k] != list(range(accepted[k])):
                kind = "lost" if len(ran[k]) < accepted[k] else "wrong"
                self.fail(kind, f"close race, racer {k}: accepted {accepted[k]}, ran {ran[k]}")
        self.count("try_posts accepted while their Dispatcher closed, and run", total)
        self.count("Dispatchers closed while producers posted")

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
                self.fail("wrong", f"producer {producer}: got {seq}, expected {next_seq[producer]}")
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
                # Every ROUND posts a checkpoint; a producer more than AHEAD checkpoints ahead of
                # the loop waits for the oldest: the loop keeps up, and the order check is live.
                checkpoints: collections.deque[threading.Event] = collections.deque()
                while not stop.is_set():
                    for _ in range(ROUND // 2):  # the two ways to post, in one order
                        d.call_soon_threadsafe(seen, producer, seq)
                        d.post(functools.partial(seen, producer, seq + 1))  # queued alone
                        seq += 2
                    ev.set()
                    reached = threading.Event()
                    d.post(reached.set)
                    checkpoints.append(reached)
                    if len(checkpoints) > AHEAD and not checkpoints.popleft().wait(GUARD):
                        self.fail("hung", f"producer {producer}: the loop stopped running posts")
                        break
                posted[producer] = seq

            threads = [
                threading.Thread(target=produce, args=(i,), name=f"producer-{i}")
                for i in range(PRODUCERS)
            ]
            queues = QueueTraffic(self, stop)
            for t in threads:
                t.start()
            await asyncio.sleep(seconds)
            stop.set()
            await asyncio.to_thread(self.join, threads, "producers")
            await queues.finish()
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
                self.fail("lost", f"producer {producer}: posted {posted[producer]}, ran {ran}")
        self.count("callbacks posted and run once, in order", sum(posted))
        self.count("epochs")

    def run(self, seconds: float) -> bool:
        warm_up = uvloop.new_event_loop()  # libuv's process-wide pipe, opened once, kept
        warm_up.run_until_complete(asyncio.sleep(0))
        warm_up.close()
        gc.collect()
        fds_before = open_fds()
        old_handler = signal.signal(signal.SIGUSR1, self._signal_handler)
        stop = threading.Event()
        background = [
            threading.Thread(target=self.guarded(fn), args=(stop,), name=fn.__name__)
            for fn in (self.churn_wakers, self.fork_children, self.send_signals, self.close_races)
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
                        kind = type(loop).__module__
                        self.fail("hung", f"epoch {epoch} on {kind}: stuck (lost wakeup?)")
                    loop.run_until_complete(asyncio.sleep(0))  # unused channels close
                    loop.run_until_complete(loop.shutdown_default_executor())
                finally:
                    loop.close()
                self.loops.append(weakref.ref(loop))
                del loop
                self.count("loops started and closed")
                epoch += 1
        finally:
            stop.set()
            self.join(background, "background")
            signal.signal(signal.SIGUSR1, old_handler)
        gc.collect()
        alive = sum(ref() is not None for ref in self.loops)
        if alive:
            self.fail("leaked", f"{alive} of {len(self.loops)} closed loops still alive")
        leaked = open_fds() - fds_before
        if leaked:
            self.fail("leaked", f"descriptors leaked: {sorted(leaked)}")
        return not self.failures


class QueueTraffic:
    """One epoch's Queue traffic, bounded, both ways at once, until *stop*: QUEUE_THREADS threads
    put and a task gets; a task puts and QUEUE_THREADS threads get. ``finish()`` (a task of the
    loop, after *stop*) shuts both queues down once the producers are done, lets the consumers
    take what is left, and checks that every item was got exactly once, in its producer's order."""

    def __init__(self, soak: Soak, stop: threading.Event) -> None:
        self.soak = soak
        self.stop = stop
        self.into: aiowake.Queue[tuple[int, int]] = aiowake.Queue(QUEUE_MAXSIZE)
        self.out: aiowake.Queue[int] = aiowake.Queue(QUEUE_MAXSIZE)
        self.put_into = [0] * QUEUE_THREADS
        self.got_out: list[list[int]] = [[] for _ in range(QUEUE_THREADS)]
        self.putters = [
            threading.Thread(target=self._put_into_the_loop, args=(k,), name=f"q-putter-{k}")
            for k in range(QUEUE_THREADS)
        ]
        self.getters = [
            threading.Thread(target=self._get_from_the_loop, args=(k,), name=f"q-getter-{k}")
            for k in range(QUEUE_THREADS)
        ]
        for t in self.putters + self.getters:
            t.start()
        self.getter = asyncio.ensure_future(self._get_in_the_loop())
        self.putter = asyncio.ensure_future(self._put_from_the_loop())

    def _put_into_the_loop(self, k: int) -> None:
        seq = 0
        try:
            while not self.stop.is_set():
                self.into.sync_q.put((k, seq), timeout=GUARD)
                seq += 1
        except queue.Full:
            self.soak.fail("hung", f"queue putter {k}: no room for {GUARD} s")
        self.put_into[k] = seq

    async def _get_in_the_loop(self) -> list[int]:
        expected = [0] * QUEUE_THREADS
        while True:
            try:
                k, seq = await self.into.async_q.get()
            except aiowake.AsyncQueueShutDown:
                return expected
            if seq != expected[k]:
                self.soak.fail("wrong", f"queue item {seq} of thread {k}, expected {expected[k]}")
            expected[k] = seq + 1
            if seq % QUEUE_MAXSIZE == 0:
                await asyncio.sleep(0)  # a full queue may never make this get wait: yield

    async def _put_from_the_loop(self) -> int:
        seq = 0
        while not self.stop.is_set():
            await self.out.async_q.put(seq)
            seq += 1
            if seq % QUEUE_MAXSIZE == 0:
                await asyncio.sleep(0)  # as above, when the threads keep up
        self.out.shutdown()  # the threads take what is left, then get ShutDown
        return seq

    def _get_from_the_loop(self, k: int) -> None:
        mine = self.got_out[k]
        while True:
            try:
                mine.append(self.out.sync_q.get(timeout=GUARD))
            except aiowake.SyncQueueShutDown:
                return
            except queue.Empty:
                self.soak.fail("hung", f"queue getter {k}: nothing for {GUARD} s")
                return

    async def finish(self) -> None:
        soak = self.soak
        await asyncio.to_thread(soak.join, self.putters, "queue putters")
        self.into.shutdown()  # the task takes what is left, then gets ShutDown
        try:
            got_into = await asyncio.wait_for(self.getter, GUARD)
            put_out = await asyncio.wait_for(self.putter, GUARD)
        except TimeoutError:
            soak.fail("hung", "a queue task never finished")
            return
        await asyncio.to_thread(soak.join, self.getters, "queue getters")
        for k in range(QUEUE_THREADS):
            if got_into[k] != self.put_into[k]:
                soak.fail("lost", f"queue thread {k}: put {self.put_into[k]}, got {got_into[k]}")
        for k in range(QUEUE_THREADS):
            if self.got_out[k] != sorted(self.got_out[k]):
                soak.fail("wrong", f"queue getter {k}: items out of order")
        got_out = sorted(item for mine in self.got_out for item in mine)
        if got_out != list(range(put_out)):
            n = len(got_out)
            soak.fail("lost" if n < put_out else "wrong", f"queue task: put {put_out}, got {n}")
        soak.count("queue items, threads to a task, got once in order", sum(self.put_into))
        soak.count("queue items, a task to threads, got once in order", put_out)


def main(argv: list[str] | None = None) -> int:
    summary = (__doc__ or "").split("\n")[0]
    parser = argparse.ArgumentParser(prog="python -m tests.soak", description=summary)
    parser.add_argument("--seconds", type=float, default=60.0, help="how long (default: 60)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    parser.add_argument(
        "--eager-gc",
        action="store_true",
        help="gc.set_threshold(1): the collector at its most eager, so that finalizers run at "
        "nearly any bytecode of any thread",
    )
    parser.add_argument(
        "--switch-interval",
        type=float,
        default=None,
        metavar="SECONDS",
        help="sys.setswitchinterval(SECONDS), e.g. 1e-6: threads switch as often as they can "
        f"(default: Python's, {sys.getswitchinterval()})",
    )
    args = parser.parse_args(argv)
    if args.seconds <= 0:
        parser.error(f"--seconds must be positive, not {args.seconds}")
    if args.switch_interval is not None and not args.switch_interval > 0:
        parser.error(f"--switch-interval must be positive, not {args.switch_interval}")
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork() with threads running
    if args.eager_gc:
        gc.set_threshold(1)
    if args.switch_interval is not None:
        sys.setswitchinterval(args.switch_interval)
    soak = Soak(seed)
    started = time.monotonic()
    ok = soak.run(args.seconds)
    elapsed = time.monotonic() - started
    print(
        f"soak: {elapsed:.1f} s, seed {seed}, Python {sys.version.split()[0]}, "
        f"gc threshold {gc.get_threshold()[0]}, switch interval {sys.getswitchinterval():g} s"
    )
    for what, n in sorted(soak.counts.items()):
        print(f"  {n:>12,}  {what}")
    for kind, failure in soak.failures[:20]:
        print(f"  FAILED ({kind}): {failure}")
    kinds = Counter(kind for kind, _ in soak.failures)
    print(
        f"soak: {kinds['lost']} lost, {kinds['leaked']} leaked, {kinds['hung']} hung, "
        f"{kinds['wrong']} other failures"
    )
    print("soak: OK" if ok else f"soak: {len(soak.failures)} FAILURES")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
