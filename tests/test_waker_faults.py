"""Fault injection: the backend's write or read fails once, the way the OS can make it fail.

``aiowake._waker._write``/``_read`` are the only two system calls of the wake protocol; each test
replaces one of them with a function that raises once and then behaves.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable

import pytest

import aiowake
from aiowake import _waker

from .conftest import interrupted_after, readable

SysCall = Callable[[int, object], object]


def fail_once(monkeypatch: pytest.MonkeyPatch, name: str, exc: BaseException) -> list[int]:
    """Make ``_waker.<name>`` raise *exc* on its first call; returns the list of calls made."""
    real: SysCall = getattr(_waker, name)
    calls: list[int] = []

    def faulty(fd: int, arg: object) -> object:
        calls.append(fd)
        if len(calls) == 1:
            raise exc
        return real(fd, arg)

    monkeypatch.setattr(_waker, name, faulty)
    return calls


def test_wake_retries_eintr(monkeypatch: pytest.MonkeyPatch, waker: aiowake.Waker) -> None:
    calls = fail_once(monkeypatch, "_write", InterruptedError(errno.EINTR, "interrupted"))
    waker.wake()
    assert len(calls) == 2  # the interrupted write, then the one that went through
    assert readable(waker)
    waker.wake()
    assert len(calls) == 2  # pending: no third write
    assert waker.drain()
    assert not readable(waker)


def test_drain_retries_eintr(monkeypatch: pytest.MonkeyPatch, waker: aiowake.Waker) -> None:
    waker.wake()
    calls = fail_once(monkeypatch, "_read", InterruptedError(errno.EINTR, "interrupted"))
    assert waker.drain()
    assert len(calls) == 2
    assert not readable(waker)
    waker.wake()  # re-armed: this writes again
    assert readable(waker)


def test_wake_would_block_means_already_pending(
    monkeypatch: pytest.MonkeyPatch, waker: aiowake.Waker
) -> None:
    """EAGAIN on write means the descriptor is full, so readable: the wake counts as made.

    Simulated faithfully: the failing write first fills the descriptor the way the OS would
    have found it (one real byte in it), then reports EAGAIN.
    """
    real = _waker._write
    calls: list[int] = []

    def full(fd: int, data: bytes) -> int:
        calls.append(fd)
        real(fd, data)
        raise BlockingIOError(errno.EAGAIN, "full")

    monkeypatch.setattr(_waker, "_write", full)
    waker.wake()  # no exception
    waker.wake()
    assert len(calls) == 1  # the token stayed out: "pending", no second write
    assert readable(waker)
    monkeypatch.setattr(_waker, "_write", real)
    assert waker.drain()
    waker.wake()  # the drain re-armed it
    assert readable(waker)


def test_wake_propagates_ebadf_and_stays_usable(
    monkeypatch: pytest.MonkeyPatch, waker: aiowake.Waker
) -> None:
    """Any other OS error propagates from wake(), after one more try (the rescue); a wake is
    never silently swallowed: the failure is reported, and once writes work again the waker is
    readable and armed."""
    calls = fail_once(monkeypatch, "_write", OSError(errno.EBADF, os.strerror(errno.EBADF)))
    with pytest.raises(OSError, match="Bad file descriptor") as info:
        waker.wake()
    assert info.value.errno == errno.EBADF
    assert len(calls) == 2  # the failed write, then the rescue's, which went through
    assert readable(waker)
    assert_not_stuck(waker)


def test_wake_with_a_broken_descriptor_keeps_reporting_it(
    monkeypatch: pytest.MonkeyPatch, waker: aiowake.Waker
) -> None:
    """While every write fails, every wake() raises (none returns as if it had woken anyone)."""
    calls: list[int] = []

    def broken(fd: int, data: bytes) -> int:
        calls.append(fd)
        raise OSError(errno.EBADF, os.strerror(errno.EBADF))

    monkeypatch.setattr(_waker, "_write", broken)
    for _ in range(3):
        with pytest.raises(OSError, match="Bad file descriptor"):
            waker.wake()
    assert len(calls) == 6  # each wake: its write and the rescue's
    assert not readable(waker)
    monkeypatch.undo()
    waker.wake()
    assert readable(waker)


def test_drain_would_block_returns_false_and_loses_nothing(
    monkeypatch: pytest.MonkeyPatch, waker: aiowake.Waker
) -> None:
    """EAGAIN on read is "not there yet": drain() is False and the wake stays pending, so the
    next drain finds it."""
    waker.wake()
    fail_once(monkeypatch, "_read", BlockingIOError(errno.EAGAIN, "not yet"))
    assert not waker.drain()
    assert readable(waker)
    assert waker.drain()
    assert not readable(waker)


def test_drain_propagates_other_errors_and_keeps_the_wake(
    monkeypatch: pytest.MonkeyPatch, waker: aiowake.Waker
) -> None:
    waker.wake()
    fail_once(monkeypatch, "_read", OSError(errno.EIO, os.strerror(errno.EIO)))
    with pytest.raises(OSError, match="Input/output error"):
        waker.drain()
    assert readable(waker)
    assert waker.drain()
    waker.wake()
    assert readable(waker)


def test_keyboard_interrupt_in_write_gives_the_token_back(
    monkeypatch: pytest.MonkeyPatch, waker: aiowake.Waker
) -> None:
    """A signal handler raising out of an interrupted write (as PEP 475 lets it) must not leave
    the waker "pending" with nothing written, stuck for good; and a wake that returned meanwhile
    trusting this one's write is not lost: the waker is readable at once."""
    fail_once(monkeypatch, "_write", KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        waker.wake()
    assert readable(waker)
    assert waker.drain()
    waker.wake()
    assert readable(waker)


# A signal handler may raise anything, an OSError from its own I/O included: the rescue must not
# take an OSError for the system call's own and skip itself.
HANDLER_EXCEPTIONS = pytest.mark.parametrize("exc", [KeyboardInterrupt, BrokenPipeError])


@HANDLER_EXCEPTIONS
def test_an_exception_just_after_the_take_leaves_the_waker_readable(
    monkeypatch: pytest.MonkeyPatch, waker: aiowake.Waker, exc: type[BaseException]
) -> None:
    """A signal handler's exception can strike right after wake() took the token, before its
    write. Another thread's wake that found the token out meanwhile returned trusting that write,
    so the waker must end readable, and armed (not stuck "pending" with nothing to read)."""
    monkeypatch.setattr(waker, "_take_token", interrupted_after(waker._take_token, exc))
    with pytest.raises(exc):
        waker.wake()
    monkeypatch.undo()
    assert readable(waker), f"the wake's byte was never written: {waker!r}"
    assert_not_stuck(waker)


@HANDLER_EXCEPTIONS
def test_an_exception_just_after_the_read_leaves_the_waker_readable(
    monkeypatch: pytest.MonkeyPatch, waker: aiowake.Waker, exc: type[BaseException]
) -> None:
    """The same in drain(): right after its read consumed the byte, before it re-armed. The
    caller, unwinding, will not look for the work that byte announced, so it must be announced
    again; and the waker must not be left stuck."""
    waker.wake()
    monkeypatch.setattr(_waker, "_read", interrupted_after(_waker._read, exc))
    with pytest.raises(exc):
        waker.drain()
    monkeypatch.undo()
    assert readable(waker), f"the drained wake was not announced again: {waker!r}"
    assert_not_stuck(waker)


def assert_not_stuck(waker: aiowake.Waker) -> None:
    """Drain what is there; then a wake must make the waker readable again."""
    assert waker.drain()
    assert not readable(waker)
    waker.wake()
    assert readable(waker), f"stuck pending: {waker!r}"


def test_an_exception_escaping_after_close_writes_nothing(
    monkeypatch: pytest.MonkeyPatch, waker: aiowake.Waker
) -> None:
    """The rescue is a write: after close() it must not happen (the numbers may be reused)."""
    calls = fail_once(monkeypatch, "_write", KeyboardInterrupt())
    real_take = waker._take_token

    def take_then_close() -> object:
        real_take()
        waker.close()
        raise KeyboardInterrupt

    monkeypatch.setattr(waker, "_take_token", take_then_close)
    with pytest.raises(KeyboardInterrupt):
        waker.wake()
    assert calls == []
    assert waker.closed
