"""Waker and fork(): the child's waker gets its own descriptors under the same numbers, or, if it
cannot have them, is closed there and says why; the child never uses the parent's."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import re
import sys
import traceback
import warnings
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest

import aiowake

from .conftest import BACKENDS, readable

if TYPE_CHECKING:
    from aiowake._backends import BackendName

if sys.platform != "win32":
    import resource

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def fork(child: Callable[[], None], hook_warnings: list[str] | None = None) -> int:
    """Fork; run *child* in the child and exit 0, or 1 with its traceback on stderr.

    What the at-fork hooks warned in the child goes to *hook_warnings* (the child's copy of the
    list) if given, as ``"Category: message"``; else any such warning fails the child. So does
    an exception escaping a hook, which Python can only report as "Exception ignored".
    """
    unraisable: list[sys.UnraisableHookArgs] = []
    hook, sys.unraisablehook = sys.unraisablehook, unraisable.append
    try:
        with warnings.catch_warnings(record=True) as warned:
            warnings.simplefilter("always")
            # Python 3.12+ warns when a process with threads forks; the child below only touches
            # the waker, whose locks the fork hooks re-create.
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
    finally:
        sys.unraisablehook = hook
    if pid == 0:  # pragma: no cover - runs in the child
        code = 0
        try:
            assert not unraisable, [f"{u.err_msg}: {u.exc_value!r}" for u in unraisable]
            messages = [f"{w.category.__name__}: {w.message}" for w in warned]
            if hook_warnings is None:
                assert not messages, messages
            else:
                hook_warnings.extend(messages)
            child()
        except BaseException:
            traceback.print_exc()
            sys.stderr.flush()
            code = 1
        os._exit(code)
    for args in unraisable:  # another thread's, while the hook was swapped: pass it on
        hook(args)
    return pid


def wait_ok(pid: int) -> None:
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the child's checks failed (see stderr)"


def in_a_child(scenario: Callable[[], None]) -> None:
    """Run *scenario* in a forked child, where it plays the parent: its descriptor limit and
    filler descriptors then die with it instead of changing the test process."""
    wait_ok(fork(scenario))


def assert_closed_here(*fds: int) -> None:
    for fd in fds:
        with pytest.raises(OSError, match="Bad file descriptor") as info:
            os.fstat(fd)
        assert info.value.errno == errno.EBADF, f"descriptor {fd} is still open"


def fill_below(fd: int) -> list[int]:
    """Take every free descriptor number below *fd* (returned, to be closed), so that the next
    new descriptor gets a number above it."""
    fillers = []
    while (filler := os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)) < fd:
        fillers.append(filler)
    os.close(filler)
    return fillers


@contextlib.contextmanager
def at_the_descriptor_limit(w: aiowake.Waker) -> Iterator[Callable[[], None]]:
    """Within the block this process cannot open one more descriptor, and *w*'s are below the
    limit. Yields the function that lifts the limit again, for a child forked in the block (the
    child inherits it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    fillers = fill_below(max(w._rfd, w._wfd))
    try:
        # RLIMIT_NOFILE is one more than the highest number allowed, and every number below the
        # lowest free one is taken.
        lowest_free = os.open(os.devnull, os.O_RDONLY)
        os.close(lowest_free)
        resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, hard))
        try:
            with pytest.raises(OSError, match="Too many open files") as info:
                os.close(os.open(os.devnull, os.O_RDONLY))
            assert info.value.errno == errno.EMFILE
            yield lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    finally:
        for filler in fillers:
            os.close(filler)


@contextlib.contextmanager
def freed(spacers: list[int]) -> Iterator[None]:
    """Within the block, the numbers of *spacers* are free (the spacers are closed)."""
    for fd in spacers:
        os.close(fd)
    yield


def fork_apart(
    w: aiowake.Waker,
    child: Callable[[], None],
    *,
    around: contextlib.AbstractContextManager[Callable[[], None] | None] | None = None,
    hook_warnings: list[str] | None = None,
) -> None:
    """Fork inside *around*, if given (if it yields a function, the child calls it first: it
    lifts the descriptor limit); run *child* in the child; then check that the child's waker
    and the parent's do not wake each other, both ways.

    A child whose waker works must have it under the same numbers; one whose waker is closed
    must not have the parent's descriptors open at all (checked before anything else runs).
    """
    fds = (w._rfd, w._wfd)
    to_child_r, to_child_w = os.pipe()
    to_parent_r, to_parent_w = os.pipe()

    def in_child() -> None:  # pragma: no cover - runs in the child
        os.close(to_child_w)  # the parent's ends: see below
        os.close(to_parent_r)
        if w.closed:
            assert_closed_here(*fds)  # before lifting the limit: nothing can have taken them yet
        if lift is not None:
            lift()
        child()
        if w.closed:
            w.wake()  # silent, and reaches nothing
            assert w.drain() is False
        else:
            assert (w._rfd, w._wfd) == fds, "numbers are kept, so registrations stay valid"
            w.wake()
            assert readable(w)
            assert w.drain()
        os.write(to_parent_w, b"1")
        assert os.read(to_child_r, 1) == b"2"  # the parent has woken its own
        if not w.closed:
            assert not readable(w), "the parent's wake reached the child"
            w.close()

    try:
        with contextlib.ExitStack() as stack:
            lift = None if around is None else stack.enter_context(around)
            pid = fork(in_child, hook_warnings)
    except BaseException:
        for fd in (to_child_r, to_child_w, to_parent_r, to_parent_w):
            os.close(fd)
        raise
    # Each side keeps only its own ends, so that when one side fails and exits, the other reads
    # end of file instead of waiting for good.
    os.close(to_child_r)
    os.close(to_parent_w)
    try:
        assert os.read(to_parent_r, 1) == b"1"  # the child has woken its own, if it can
        assert not readable(w), "the child's wake reached the parent"
        w.wake()
        os.write(to_child_w, b"2")
    finally:
        os.close(to_child_w)
        os.close(to_parent_r)
        wait_ok(pid)
    assert readable(w), "the parent's own wake is still pending"
    assert w.drain()


def test_child_and_parent_do_not_wake_each_other(backend: BackendName) -> None:
    with aiowake.Waker(backend) as w:
        fork_apart(w, lambda: None)


def test_pending_wake_is_not_inherited(backend: BackendName) -> None:
    with aiowake.Waker(backend) as w:
        w.wake()

        def child() -> None:  # pragma: no cover - runs in the child
            assert not readable(w), "a fresh child waker starts idle"
            assert w.drain() is False
            w.wake()
            assert w.drain() is True
            w.close()

        wait_ok(fork(child))
        assert w.drain() is True, "the parent's pending wake is untouched"


def test_closed_waker_stays_closed_in_child(backend: BackendName) -> None:
    w = aiowake.Waker(backend)
    w.close()

    def child() -> None:  # pragma: no cover - runs in the child
        assert w.closed
        w.wake()
        assert w.drain() is False

    wait_ok(fork(child))


@pytest.mark.parametrize("holes", [1, 2])
def test_child_keeps_the_numbers_when_lower_ones_are_free(backend: BackendName, holes: int) -> None:
    """The child's new descriptors land on free numbers below the old ones and are moved up; with
    one hole below a pipe, the new write end lands on the old read end's number. (Spacers take
    the lowest free numbers, the waker the next ones; closing the spacers leaves the holes.)"""

    def scenario() -> None:  # pragma: no cover - runs in a child
        spacers = [os.open(os.devnull, os.O_RDONLY) for _ in range(holes)]
        with aiowake.Waker(backend) as w:
            fork_apart(w, lambda: None, around=freed(spacers))

    in_a_child(scenario)


@pytest.mark.parametrize("limited", [False, True], ids=["room", "at-the-limit"])
def test_child_turns_a_crossed_pair_round(limited: bool) -> None:
    """A pair whose read end has the higher number comes back crossed over after the old one is
    closed; turning it round takes a spare number, which at the descriptor limit there is not."""

    def scenario() -> None:  # pragma: no cover - runs in a child
        with aiowake.Waker("pipe") as w:
            r, wr = w._rfd, w._wfd
            assert r < wr
            spare = os.dup(r)
            os.dup2(wr, r, inheritable=False)
            os.dup2(spare, wr, inheritable=False)
            os.close(spare)
            w._rfd, w._wfd = wr, r
            if not limited:
                fillers = fill_below(wr)
                fork_apart(w, lambda: None)
                for fd in fillers:
                    os.close(fd)
                return
            warned: list[str] = []

            def child() -> None:  # pragma: no cover - runs in a grandchild
                assert w.closed
                [message] = warned
                assert "could not be re-created after fork" in message, message
                assert "Too many open files" in message, message

            fork_apart(w, child, around=at_the_descriptor_limit(w), hook_warnings=warned)

    in_a_child(scenario)


@pytest.mark.parametrize("backend", [name for name in BACKENDS if name != "tcp"])
def test_child_at_the_descriptor_limit_reopens_in_place(backend: BackendName) -> None:
    """A process at its descriptor limit forks: the child closes the inherited descriptors
    first, so that its own fit in their place."""

    def scenario() -> None:  # pragma: no cover - runs in a child
        with aiowake.Waker(backend) as w:

            def child() -> None:  # pragma: no cover - runs in a grandchild
                assert not w.closed

            fork_apart(w, child, around=at_the_descriptor_limit(w))

    in_a_child(scenario)


def assert_unusable_in_child(w: aiowake.Waker, warned: list[str], why: str) -> None:
    """The child could not re-create *w*: it is closed there, loudly, and says why."""
    assert w.closed
    [message] = warned
    assert message.startswith("RuntimeWarning: aiowake.Waker (backend"), message
    assert f"could not be re-created after fork: {why}" in message, message
    with pytest.raises(
        ValueError,
        match=re.escape(f"closed Waker, which could not be re-created after fork: {why}"),
    ):
        w.fileno()
    assert f"closed, could not be re-created after fork: {why}" in repr(w)
    w.close()  # idempotent
    assert w.closed


@pytest.mark.skipif("tcp" not in BACKENDS, reason="needs the tcp backend")
def test_child_that_cannot_reopen_at_the_limit_is_closed_loudly() -> None:
    """The tcp backend needs three descriptors to open; closing the old pair frees two. The
    child's waker is then closed, says why, and never uses the parent's descriptors."""

    def scenario() -> None:  # pragma: no cover - runs in a child
        with aiowake.Waker("tcp") as w:
            warned: list[str] = []
            fork_apart(
                w,
                lambda: assert_unusable_in_child(w, warned, "[Errno 24] Too many open files"),
                around=at_the_descriptor_limit(w),
                hook_warnings=warned,
            )

    in_a_child(scenario)


def test_child_whose_backend_fails_to_open_is_closed_loudly(backend: BackendName) -> None:
    with aiowake.Waker(backend) as w:
        spec = w._backend

        def failing_open() -> tuple[int, int]:
            raise OSError(errno.ENFILE, "Too many open files in system")

        w._backend = dataclasses.replace(spec, open=failing_open)
        warned: list[str] = []
        try:
            fork_apart(
                w,
                lambda: assert_unusable_in_child(
                    w, warned, "[Errno 23] Too many open files in system"
                ),
                hook_warnings=warned,
            )
        finally:
            w._backend = spec
