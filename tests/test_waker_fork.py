"""Waker and fork(): the child's waker gets its own descriptors under the same numbers."""

from __future__ import annotations

import os
import sys
import traceback
import warnings
from collections.abc import Callable

import pytest

import aiowake

from .conftest import readable

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def fork(child: Callable[[], None]) -> int:
    """Fork; run *child* in the child and exit 0, or 1 with its traceback on stderr."""
    with warnings.catch_warnings():
        # Python 3.12+ warns when a process with threads forks; the child below only touches the
        # waker, whose locks the fork hooks re-create.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 0
        try:
            child()
        except BaseException:
            traceback.print_exc()
            sys.stderr.flush()
            code = 1
        os._exit(code)
    return pid


def wait_ok(pid: int) -> None:
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the child's checks failed (see stderr)"


def test_child_and_parent_do_not_wake_each_other(backend: str) -> None:
    to_child_r, to_child_w = os.pipe()
    to_parent_r, to_parent_w = os.pipe()
    with aiowake.Waker(backend) as w:
        fd = w.fileno()

        def child() -> None:  # pragma: no cover - runs in the child
            assert w.fileno() == fd, "numbers are kept, so registrations stay valid"
            assert not w.closed
            w.wake()
            assert readable(w)
            assert w.drain()
            os.write(to_parent_w, b"1")
            assert os.read(to_child_r, 1) == b"2"  # the parent has woken its own
            assert not readable(w), "the parent's wake reached the child"
            w.wake()
            assert readable(w)
            w.close()

        pid = fork(child)
        try:
            assert os.read(to_parent_r, 1) == b"1"  # the child has woken its own
            assert not readable(w), "the child's wake reached the parent"
            w.wake()
            os.write(to_child_w, b"2")
        finally:
            wait_ok(pid)
        assert readable(w), "the parent's own wake is still pending"
        assert w.drain()
    for fd_ in (to_child_r, to_child_w, to_parent_r, to_parent_w):
        os.close(fd_)


def test_pending_wake_is_not_inherited(backend: str) -> None:
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


def test_closed_waker_stays_closed_in_child(backend: str) -> None:
    w = aiowake.Waker(backend)
    w.close()

    def child() -> None:  # pragma: no cover - runs in the child
        assert w.closed
        w.wake()
        assert w.drain() is False

    wait_ok(fork(child))
