"""Running one case once: a consumer (loop) thread, producer thread(s), CPU pinning, counters.

Latency: the producer waits for the loop's acknowledgement of the previous wake, pauses a little so
the loop is idle again (blocked in its poll), takes ``t0 = perf_counter_ns()`` and wakes. The loop
takes ``t1`` where the user's code would start (see ``_mechanisms``) and acknowledges. A sample is
``t1 - t0``: one-way, wake call included. A Waker's reader takes ``t1`` on its first line and
again after its ``drain()``: both are kept. The pause is a ``gap``: ``sleep_gap`` (an idle
producer, like a thread that was blocked on I/O or a timer) or ``work_gap`` (a working producer,
like an executor's worker thread computing in C code that releases the GIL). With ``busy_ns`` the
producer computes (holding the GIL) for that long after each wake instead of going idle, so the
loop must wait for the interpreter's switch interval.

Burst: P producers post N callbacks each as fast as they can; the rate is callbacks run per second
from the start until the loop ran the last one. Every burst starts after a full collection, so no
case inherits another's garbage; the share of the burst the garbage collector took is recorded
(every posted callback is a new tracked object, and a burst keeps up to N x P of them queued, so
the collections grow with the burst). With ``gc_off`` the collector is off during the burst: what
the mechanisms cost without it.

With both threads on one CPU a wake lands in one of two modes: the woken loop thread preempts the
producer right at its write (it finds the GIL free: the write released it), or the producer runs on
until it blocks and the loop runs then, a few µs later. The kernel's scheduler picks: a producer
that has just woken from sleeping is mostly let run on, one that has been computing is mostly
preempted, so the two gaps show the two modes; ``loop_first`` records the share.

Counters come from the kernel, so they cost the mechanisms nothing: context switches of the loop
thread (``getrusage(RUSAGE_THREAD)``) and write system calls of the process (``syscw`` in
``/proc/self/io``), read at the first and the last measured wake.
"""

from __future__ import annotations

import gc
import hashlib
import os
import resource
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ._mechanisms import Mechanism, Probe

#: How long the producer pauses between samples so that the loop is back in its poll.
IDLE_GAP_S = 50e-6

Gap = Callable[[], None]


def sleep_gap() -> None:
    """An idle producer: it sleeps between wakes."""
    time.sleep(IDLE_GAP_S)


_WORK = bytes(4096)  # hashlib releases the GIL while it hashes 2 KiB or more


def work_gap() -> None:
    """A working producer: between wakes it computes in C code that releases the GIL (hashing here;
    compression or numpy do the same), so the loop thread could take the GIL at any moment."""
    perf, sha, chunk = time.perf_counter_ns, hashlib.sha256, _WORK
    end = perf() + int(IDLE_GAP_S * 1e9)
    while perf() < end:
        sha(chunk)


Pin = tuple[frozenset[int] | None, frozenset[int] | None]  # (loop thread, producer threads)


def pin_plan(mode: str) -> Pin | None:
    """CPU sets for the loop and producer threads, or None if this machine cannot do *mode*."""
    if mode == "none":
        return (None, None)
    if not hasattr(os, "sched_setaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))
    if mode == "same":
        return (frozenset(cpus[-1:]), frozenset(cpus[-1:]))
    if mode == "split":
        if len(cpus) < 2:
            return None
        return (frozenset(cpus[:1]), frozenset(cpus[1:2]))
    raise ValueError(f"pin must be 'same', 'split' or 'none', not {mode!r}")


def _pin_this_thread(cpus: frozenset[int] | None) -> None:
    if cpus is not None:
        os.sched_setaffinity(0, cpus)  # 0: the calling thread, on Linux


def _thread_switches() -> int | None:
    if not hasattr(resource, "RUSAGE_THREAD"):
        return None
    ru = resource.getrusage(resource.RUSAGE_THREAD)
    return ru.ru_nvcsw + ru.ru_nivcsw


def _write_syscalls() -> int | None:
    try:
        with open("/proc/self/io", "rb") as f:
            for line in f:
                if line.startswith(b"syscw:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _per(a: int | None, b: int | None, n: int) -> float | None:
    return None if a is None or b is None or n <= 0 else (b - a) / n


@dataclass
class LatencyRun:
    samples_ns: list[int] = field(default_factory=list)
    #: A Waker's reader only: the same wakes timed after its drain() (empty for the other cases).
    drained_ns: list[int] = field(default_factory=list)
    switches_per_wake: float | None = None
    writes_per_wake: float | None = None
    #: Share of the measured wakes whose first loop line ran before the producer's wake call had
    #: returned: the loop thread preempted the producer at its write (see the module docstring).
    loop_first: float | None = None
    error: str | None = None


@dataclass
class BurstRun:
    callbacks_per_s: float = 0.0
    writes_per_callback: float | None = None
    #: The collections' CPU time over the burst's wall time (0 with the collector off).
    gc_share: float = 0.0
    error: str | None = None


def _start(target: Callable[[], None], name: str) -> threading.Thread:
    t = threading.Thread(target=target, name=name, daemon=True)
    t.start()
    return t


def _reporting(
    body: Callable[[], None],
    errors: list[str],
    who: str,
    on_error: Callable[[], None] | None = None,
) -> Callable[[], None]:
    """*body* for a thread of a run: whatever it raises becomes the case's failure, and
    *on_error* then frees whoever waits for the thread (a thread that dies silently would leave
    the run waiting for it until its timeout, or for good, then report the wrong cause)."""

    def run() -> None:
        try:
            body()
        except BaseException as e:
            errors.append(f"{who}: {e!r}")
            if on_error is not None:
                on_error()

    return run


def _serve(
    mech: Mechanism,
    cpus: frozenset[int] | None,
    errors: list[str],
    on_error: Callable[[], None] | None = None,
) -> Callable[[], None]:
    def run() -> None:
        _pin_this_thread(cpus)
        mech.serve()

    return _reporting(run, errors, "loop thread", on_error)


def run_latency(
    make: Callable[[Probe], Mechanism],
    samples: int,
    warmup: int,
    pin: Pin,
    timeout: float,
    busy_ns: int = 0,
    gap: Gap = sleep_gap,
) -> LatencyRun:
    total = warmup + samples
    result = LatencyRun()
    out, drained = result.samples_ns, result.drained_ns
    t0 = [0]
    returned = [False]  # the producer's wake call has returned
    woke_at = [0, False]  # a Waker reader's first line: when, and whether before `returned`
    loop_first = 0
    ack = threading.Lock()
    counters: dict[str, int | None] = {}
    perf = time.perf_counter_ns

    def woke() -> None:
        woke_at[0] = perf()  # first: the timestamp; the drain follows, so keep this short
        woke_at[1] = not returned[0]

    def stamp() -> None:
        nonlocal loop_first
        now = perf()  # first: the timestamp; all else after it
        first, early = woke_at
        if first:  # a Waker's reader: the sample is its first line; now is after its drain
            woke_at[0] = 0
            out.append(first - t0[0])
            drained.append(now - t0[0])
        else:
            out.append(now - t0[0])
            early = not returned[0]
        n = len(out)
        if n > warmup and early:
            loop_first += 1
        if n == warmup + 1:
            counters["cs0"], counters["w0"] = _thread_switches(), _write_syscalls()
        elif n == total:
            counters["cs1"], counters["w1"] = _thread_switches(), _write_syscalls()

    def stamp_and_ack() -> None:
        stamp()
        ack.release()

    errors: list[str] = []
    mech = make(Probe(stamp_and_ack, stamp, ack.release, woke))
    loop_thread = _start(_serve(mech, pin[0], errors), "bench-loop")

    def produce() -> None:
        _pin_this_thread(pin[1])
        wake = mech.wake_fn()
        for _ in range(total):
            if not ack.acquire(timeout=timeout):
                errors.append(f"no wakeup within {timeout} s after {len(out)} samples")
                return
            gap()
            returned[0] = False
            t0[0] = start = perf()
            wake()
            returned[0] = True  # one store: all the producer does before it blocks or computes
            if busy_ns:
                while perf() - start < busy_ns:  # compute, holding the GIL
                    pass
        if not ack.acquire(timeout=timeout):
            errors.append(f"no wakeup within {timeout} s after {len(out)} samples")

    producer = _start(_reporting(produce, errors, "producer thread"), "bench-producer")
    producer.join(timeout * (total + 1))
    mech.stop()
    loop_thread.join(timeout)
    if loop_thread.is_alive():
        errors.append("the loop thread did not stop")
    if errors:
        result.error = "; ".join(errors)
        return result
    for timed in (out, drained):  # `drained` is empty or runs parallel to `out`
        del timed[:warmup]
        # The selectors and floor loops see stop()'s own wake, which is not a sample.
        del timed[samples:]
    result.switches_per_wake = _per(counters.get("cs0"), counters.get("cs1"), samples - 1)
    result.writes_per_wake = _per(counters.get("w0"), counters.get("w1"), samples - 1)
    result.loop_first = loop_first / samples
    return result


def run_burst(
    make: Callable[[Probe], Mechanism],
    producers: int,
    per_producer: int,
    pin: Pin,
    timeout: float,
    gc_off: bool = False,
) -> BurstRun:
    gc.collect()
    was_enabled = gc.isenabled()
    if gc_off:
        gc.disable()
    timer = _GcTimer()
    gc.callbacks.append(timer)
    try:
        return _burst(make, producers, per_producer, pin, timeout, timer)
    finally:
        gc.callbacks.remove(timer)
        if was_enabled:
            gc.enable()


class _GcTimer:
    """A ``gc.callbacks`` hook: the time spent in collections, in ns.

    CPU time of the collecting thread, not wall time: a hook is Python code, so the thread may
    hand the GIL to another between its "start" hook and the collection, and wall time would count
    that other thread's run as collecting.
    """

    def __init__(self) -> None:
        self.spent = self._start = 0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.thread_time_ns()
        else:
            self.spent += time.thread_time_ns() - self._start


def _burst(
    make: Callable[[Probe], Mechanism],
    producers: int,
    per_producer: int,
    pin: Pin,
    timeout: float,
    timer: _GcTimer,
) -> BurstRun:
    total = producers * per_producer
    result = BurstRun()
    done = threading.Event()
    count = 0
    end: dict[str, int | None] = {}  # at the last callback: time, write count, time in GC

    def callback() -> None:
        nonlocal count
        count += 1  # only the loop thread runs callbacks
        if count == total:
            end["t"], end["w"], end["gc"] = time.perf_counter_ns(), _write_syscalls(), timer.spent
            done.set()

    errors: list[str] = []
    mech = make(Probe.of(lambda: None))
    post = mech.post_fn()
    if post is None:
        raise ValueError("not a burst case")
    loop_thread = _start(_serve(mech, pin[0], errors, done.set), "bench-loop")
    start = threading.Barrier(producers + 1)

    def produce() -> None:
        _pin_this_thread(pin[1])
        start.wait(timeout)
        for _ in range(per_producer):
            post(callback)

    def failed() -> None:  # a producer raised: nobody waits for it in vain
        start.abort()
        done.set()

    threads = [
        _start(_reporting(produce, errors, f"producer thread {i}", failed), f"bench-producer-{i}")
        for i in range(producers)
    ]
    w0 = _write_syscalls()
    t0 = time.perf_counter_ns()
    timer.spent = 0
    try:
        start.wait(timeout)
        if not done.wait(timeout):
            errors.append(f"only {count} of {total} callbacks ran within {timeout} s")
    except threading.BrokenBarrierError:
        if not errors:  # else the producer's error says why
            errors.append(f"the producer threads did not all start within {timeout} s")
    for t in threads:
        t.join(timeout)
    mech.stop()
    loop_thread.join(timeout)
    if errors:
        result.error = "; ".join(errors)
        return result
    t1 = end["t"]
    assert t1 is not None
    result.callbacks_per_s = total / ((t1 - t0) / 1e9)
    result.gc_share = (end["gc"] or 0) / (t1 - t0)
    result.writes_per_callback = _per(w0, end["w"], total)
    return result


def platform_can_pin() -> bool:
    return sys.platform == "linux" and hasattr(os, "sched_setaffinity")
