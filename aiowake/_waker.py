"""``Waker``: a descriptor that a loop watches for readability and that anyone may poke.

The protocol, in two parts.

**The token (coalescing).** ``_armed`` is a dict that holds the single key ``_TOKEN`` while no wake
is pending. ``wake()`` takes the token with ``dict.pop(key, None)``, which is atomic: it is one C
call, which neither another thread (it holds the GIL throughout; on free-threaded builds the dict's
own lock) nor a Python signal handler (those run between bytecodes) can split. So of any number of
concurrent wakes exactly one gets the token, and only that one writes. ``drain()`` puts the token
back *only after its read consumed a byte*. Together:

    the token is absent  <=>  one byte is in the descriptor, or is about to be written,
                              and no drain has consumed it yet.

Hence at most one byte is ever in flight (a pipe or socket can never fill), a wake that finds the
token gone needs no system call, and no wakeup is lost: a drain that runs while the token holder
has not written yet reads nothing and leaves the token out, so the late byte makes the descriptor
readable and the next drain re-arms. (Re-arming before, or regardless of, the read is the classic
bug: a wake slipping in between writes a byte the read then swallows, or two bytes pile up, and in
the first case the waker is left "pending" with nothing to read, stuck for good.)

**The locks (lifetime).** The token holder writes under ``_wlock``, ``drain()`` reads under
``_rlock``, and ``close()`` holds both while it sets the descriptors to -1 and closes them. So no
write or read can use a descriptor number after ``close()`` released it to the OS, which could
meanwhile have handed the number to someone else's file. A write and a read exclude only
``close()``, never each other: the loop's ``drain()`` never waits for a producer that was
preempted inside its write (on one CPU the woken loop thread often preempts the producer right
there; one lock for both would then cost the loop two more context switches per wake). The order
is always ``_rlock`` before ``_wlock`` (``close()``; a signal handler's ``wake()`` inside
``drain()``; ``drain()``'s rescue, below), so the two cannot deadlock. ``_wlock`` is reentrant
because a signal handler may call ``wake()`` in a thread that holds it (inside ``wake()`` or
``close()``), and ``_rlock`` is too, so that no thread can block on itself; the handler then sees
either the open descriptors or -1, never a closed-but-not-yet-marked one. Pending wakes never
touch a lock.

**Exceptions (signals).** A signal handler's exception (KeyboardInterrupt, or any other, an
OSError included) is raised at whatever bytecode the signal interrupted: maybe between taking the
token and writing, or between reading and re-arming, leaving the token out with nothing to read.
Which exception it was says nothing about where it struck, so *every* exception escaping
``wake()`` or ``drain()``, the system call's own OSError too, goes through ``_rescue()``, which
writes a byte and re-arms: then the invariant above holds again, except that the token may be in
while a byte is there, which costs a spurious wakeup, never a lost one. (Each such exception may
add one byte; a drain reads them all.) A second exception striking inside the rescue itself is
beyond what any Python code can guard against.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
import warnings
import weakref
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any, Final, NoReturn, Protocol, Self, SupportsIndex, TypeVarTuple, Unpack, final

from ._backends import AUTO_ORDER, BACKENDS, Backend, BackendName, resolve

__all__ = ["ReaderLoop", "Waker"]

_TOKEN: Final = 0
_Ts = TypeVarTuple("_Ts")


class ReaderLoop(Protocol):
    """What ``Waker.attached()`` needs of a loop: asyncio's, uvloop's, or any loop that has
    these two methods (and, optionally, ``is_closed()``)."""

    def add_reader(self, fd: int, callback: Callable[..., object], /, *args: Any) -> object: ...

    def remove_reader(self, fd: int, /) -> object: ...


# The two system calls of the protocol, as module globals so that tests can count them and
# inject faults by patching exactly these (and nothing else in the process).
_write = os.write
_read = os.read


@final
class Waker:
    """A self-pipe: ``wake()`` from anywhere makes ``fileno()`` readable until ``drain()``.

    ``backend`` is ``"eventfd"`` (Linux), ``"pipe"`` (POSIX), ``"socketpair"``, ``"tcp"`` (the
    TCP-loopback :func:`aiowake.fallback_socketpair`) or ``"auto"``, the fastest one this
    platform has. Descriptors are non-blocking and close-on-exec.

    Watch it with ``with waker.attached(loop, callback):`` (``loop.add_reader``, and however the
    block ends, ``loop.remove_reader``) or ``selector.register(waker, selectors.EVENT_READ)``; in
    the callback call ``drain()`` first, then look for work: every wake that returned before
    ``drain()`` started is then seen. (Or look, drain, and look again if ``drain()`` returned
    True: the first look acts sooner.)
    """

    __slots__ = (
        "__weakref__",
        "_armed",
        "_backend",
        "_fork_error",
        "_rfd",
        "_rlock",
        "_take_token",
        "_wfd",
        "_wlock",
    )

    @staticmethod
    def backends() -> tuple[BackendName, ...]:
        """The backend names this platform offers, fastest first (``"auto"`` picks the first)."""
        return tuple(name for name in AUTO_ORDER if name in BACKENDS)

    def __init__(self, backend: BackendName = "auto") -> None:
        self._rfd = self._wfd = -1  # so that __del__ and repr work if opening fails
        self._fork_error: str | None = None  # why _reopen_in_child() failed, if it did
        self._backend: Backend = resolve(backend)
        self._rlock, self._wlock = threading.RLock(), threading.RLock()
        self._armed: dict[int, bool] = {}
        # wake()'s first step, one C call: None if a wake is already pending. Also bound by the
        # Dispatcher's post path, which then calls _write_token() itself.
        self._take_token = functools.partial(self._armed.pop, _TOKEN, None)
        self._rfd, self._wfd = self._backend.open()
        self._armed[_TOKEN] = True
        _live[id(self)] = weakref.ref(self)  # one C call: see _live for why there is no lock

    @property
    def backend(self) -> str:
        """The backend's name; never ``"auto"``."""
        return self._backend.name

    @property
    def closed(self) -> bool:
        return self._rfd < 0

    def fileno(self) -> int:
        """The descriptor to watch for readability; any thread. Raises ValueError once closed
        (and in a forked child that could not re-create the waker, saying why)."""
        fd = self._rfd
        if fd < 0:
            if self._fork_error is not None:
                raise ValueError(f"I/O operation on closed Waker, which {self._fork_error}")
            raise ValueError("I/O operation on closed Waker")
        return fd

    @contextlib.contextmanager
    def attached(
        self, loop: ReaderLoop, callback: Callable[[Unpack[_Ts]], object], *args: *_Ts
    ) -> Iterator[None]:
        """``with waker.attached(loop, callback, *args):`` watches the waker inside the block.

        On entry ``loop.add_reader(self.fileno(), callback, *args)``; on exit, however the block
        ends (a task's cancellation included), ``loop.remove_reader()`` of that same descriptor
        number, unless the loop is closed by then. So a ``with`` that closes the waker after
        this block never closes a descriptor that the loop still watches. Call it on the loop's
        thread, as ``add_reader`` itself. Entering after ``close()`` raises ValueError; closing
        the waker inside the block is the caller's bug, and the exit still removes that number.
        """
        fd = self.fileno()
        loop.add_reader(fd, callback, *args)
        try:
            yield
        finally:
            is_closed = getattr(loop, "is_closed", None)
            if is_closed is None or not is_closed():
                loop.remove_reader(fd)

    def wake(self) -> None:
        """Make ``fileno()`` readable, if it is not already; return at once.

        Any thread may call it, and so may a Python signal handler, also one that interrupts
        ``wake()`` itself. It never waits for I/O: the descriptor is non-blocking and at most one
        byte is ever in it. Wakes before the next ``drain()`` cost one write in all; the others
        make no system call. After ``close()`` it does nothing. ``EINTR`` is retried; "would block"
        means the descriptor is full, hence readable, hence already pending; any other OS error
        (``EBADF`` if someone else closed our descriptor) propagates, after one more try at
        writing (the rescue, see the module docstring); the next wake tries again.
        """
        try:
            if self._take_token() is not None:
                self._write_token()
            # else: a byte is written or about to be: nothing to add
        except BaseException:
            self._rescue()
            raise

    def _write_token(self) -> None:
        """The second half of ``wake()``, for the caller that has just taken the token with
        ``_take_token()`` (the Dispatcher's post path does: a pending wake costs no method call).
        The caller handles exceptions as ``wake()`` does: any exception out of the two halves or
        the gap between them goes through ``_rescue()``."""
        # `with`, not acquire() then try: that is ~0.1 µs cheaper, but a signal handler's
        # exception landing between the two leaves the lock held for good, and every other
        # thread's wake() then blocks (see test_a_raising_handler_never_leaves_the_waker_...).
        with self._wlock:
            fd = self._wfd
            if fd < 0:
                return  # closed; the token stays out, so later wakes return above
            payload = self._backend.payload
            try:
                while True:
                    try:
                        _write(fd, payload)
                        return
                    except InterruptedError:
                        continue  # PEP 475 retries inside os.write; this is the belt to its braces
            except BlockingIOError:
                pass  # full, so readable: the wakeup is pending all the same

    def _rescue(self) -> None:
        """Leave the waker readable and armed after an exception escaped ``wake()`` or
        ``drain()``.

        It may be the system call's own OSError, after which nothing was written (or read), or a
        signal handler's, which Python raises at whatever bytecode the signal interrupted: maybe
        just after ``wake()`` took the token and before its write, or just after ``drain()`` read
        a byte and before it re-armed. Either leaves the token out with nothing to read: the
        waker stuck for good, every later wake (and any wake that had just returned trusting this
        one's write) lost. Where it struck cannot be known, so assume the worst: write a byte and
        give the token back. A byte too many is one spurious wakeup; one too few is a lost one.

        Write first, then re-arm: an exception striking between the two leaves a byte with the
        token out, which the next drain() puts right, where the other order would leave the token
        in with nothing written, losing the wake of anyone who trusted ours.
        """
        with self._wlock:
            fd = self._wfd
            if fd < 0:
                return  # closed: nothing to wake, and the token must stay out
            try:
                _write(fd, self._backend.payload)
            except OSError:
                pass  # full, so readable; or broken, which the next wake() will report
            self._armed[_TOKEN] = True

    def drain(self) -> bool:
        """Consume every pending wake without blocking; True if there was one.

        Call it from the thread that watches ``fileno()`` (the loop), before looking for work. It
        returns False when nothing was pending and after ``close()``. A wake that races the drain
        is never lost: it is either consumed here (and its work, queued before it, is there to be
        found after this returns) or leaves ``fileno()`` readable for the next round. ``EINTR``
        is retried; any other OS error propagates and leaves ``fileno()`` readable (the rescue,
        see the module docstring), so the wake is announced again.
        """
        try:
            with self._rlock:
                fd = self._rfd
                if fd < 0:
                    return False
                size = self._backend.read_size
                while True:
                    try:
                        data = _read(fd, size)
                        break
                    except InterruptedError:
                        continue  # as in wake()
                    except BlockingIOError:
                        return False  # nothing yet; if the token is out, its byte is on its way
                # Read first, then re-arm (see the module docstring for why not the other way).
                if data:
                    self._armed[_TOKEN] = True
                    return True
                return False  # end of file: cannot happen while we hold both ends open
        except BaseException:
            # The byte may have been read, and the caller will not look for work: announce it
            # again. Around the whole `with`: an exception can also strike in its exit, after
            # a read and re-arm that the caller never hears of.
            self._rescue()
            raise

    def close(self) -> None:
        """Close the descriptors; idempotent. Wakes after (or racing) it write nothing anywhere.

        Any thread may call it; not a signal handler. Closing a waker that a loop still watches
        is the caller's bug, as it is for any descriptor: remove the reader first.
        """
        with self._rlock, self._wlock:  # in this order: see the module docstring
            rfd, wfd = self._rfd, self._wfd
            if rfd < 0:
                return
            # Mark closed before closing: a signal handler running in this thread between the
            # two sees -1, never a descriptor number the OS may already have reused.
            self._rfd = self._wfd = -1
            self._armed.clear()
            _live.pop(id(self), None)  # one C call: see _live for why there is no lock
            try:
                os.close(rfd)
            finally:
                if wfd != rfd:
                    os.close(wfd)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        if not hasattr(self, "_backend"):  # made by Waker.__new__ alone, or __init__ failed
            return "<aiowake.Waker uninitialized>"
        if self._rfd < 0:
            state, fds = "closed", ""
            if self._fork_error is not None:
                state = f"closed, {self._fork_error}"
        else:
            state = "idle" if self._armed else "pending"
            fds = (
                f" fd={self._rfd}" if self._rfd == self._wfd else f" fds=({self._rfd}, {self._wfd})"
            )
        return f"<aiowake.Waker backend={self._backend.name!r}{fds} {state}>"

    def __reduce_ex__(self, protocol: SupportsIndex) -> NoReturn:
        # A copy would share the descriptors, and the first of the two to close would close
        # them under the other: refuse, as sockets do (copy and deepcopy end up here too).
        raise TypeError(f"cannot pickle {type(self).__name__!r} object")

    def __del__(self) -> None:
        # getattr: a Waker made by Waker.__new__ alone has no attributes. Close first, then
        # warn: under `-W error` the warning raises, and the descriptors must be closed anyway.
        if getattr(self, "_rfd", -1) >= 0:
            message = f"unclosed {self!r}"
            self.close()
            warnings.warn(message, ResourceWarning, source=self, stacklevel=2)

    def _reopen_in_child(self) -> str | None:
        """After fork, in the child (``_after_fork_in_child``): fresh descriptors under the same
        numbers, fresh locks, idle. Returns None, or, if that failed, what to warn about: then
        the waker is closed here and says why (``fileno()``, ``repr``).

        The old locks may be held by a parent thread that does not exist here. Keeping the
        numbers keeps valid every ``add_reader``/``selector.register`` that the child makes with
        a number it read before the fork. The inherited descriptors are closed first: that frees
        their numbers, so at the descriptor limit the new ones still fit; and whatever happens
        next, the child never reads or writes the parent's.
        """
        self._rlock, self._wlock = threading.RLock(), threading.RLock()
        rfd, wfd = self._rfd, self._wfd
        if rfd < 0:
            return None
        # Closed until reopened: a signal handler's wake() in between writes nothing anywhere.
        self._armed.clear()
        self._rfd = self._wfd = -1
        try:
            try:
                os.close(rfd)
            finally:
                if wfd != rfd:
                    os.close(wfd)
            self._backend.open_at(rfd, wfd)
        except OSError as exc:
            _live.pop(id(self), None)
            self._fork_error = f"could not be re-created after fork: {exc}"
            fds = f"fd {rfd}" if rfd == wfd else f"fds ({rfd}, {wfd})"
            return (
                f"aiowake.Waker (backend {self._backend.name!r}, {fds}) {self._fork_error}; "
                "it is closed in this process"
            )
        self._rfd, self._wfd = rfd, wfd
        self._armed[_TOKEN] = True
        return None


# Every open Waker, by id, so that a forked child can give each its own descriptors. No lock:
# a finalizer (__del__ -> close()) runs at whatever bytecode the collector interrupts, on any
# thread, maybe one that is inside another Waker's __init__ or close() right there. A plain lock
# would then wait for its own thread for good; a reentrant one would let the finalizer change the
# set in the middle of a change. Instead each access is one C call on a dict, atomic under the GIL
# (on free-threaded builds, under the dict's own lock), also against the collector and signal
# handlers, which run between bytecodes: __init__'s `_live[key] = ref`, close()'s
# `_live.pop(key, None)`, the child's `list(_live.values())`. The child's hook runs with no other
# thread in the process (fork copies only the calling one). An id is not reused while its waker
# lives, and a waker leaves the dict in close(), which __del__ calls. The refs are weak so that
# an unclosed waker still dies, warns and closes itself; one that is dead but not yet finalized
# (the collector clears weak refs first) is skipped.
_live: dict[int, weakref.ref[Waker]] = {}


def _after_fork_in_child() -> None:
    failed = []
    for ref in list(_live.values()):
        waker = ref()
        if waker is not None and (why := waker._reopen_in_child()) is not None:
            failed.append(why)
    # After the loop: under `-W error` a warning raises, and every waker must be reopened first.
    for why in failed:
        warnings.warn(why, RuntimeWarning, stacklevel=2)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
