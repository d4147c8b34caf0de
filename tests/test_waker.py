"""Waker: the single-threaded contract, on every backend."""

from __future__ import annotations

import os
import select
import selectors
import sys

import pytest

import aiowake
from aiowake import _backends, _waker

from .conftest import BACKENDS, open_fds, readable


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every write a waker makes, by descriptor."""
    calls: list[int] = []
    real = _waker._write

    def counting_write(fd: int, data: bytes) -> int:
        calls.append(fd)
        return real(fd, data)

    monkeypatch.setattr(_waker, "_write", counting_write)
    return calls


def test_wake_makes_readable_and_drain_consumes(waker: aiowake.Waker) -> None:
    assert not readable(waker)
    assert waker.drain() is False
    waker.wake()
    assert readable(waker)
    assert readable(waker.fileno())
    assert waker.drain() is True
    assert not readable(waker)
    assert waker.drain() is False


def test_selector_register_accepts_object_and_int(waker: aiowake.Waker) -> None:
    for target in (waker, waker.fileno()):
        with selectors.DefaultSelector() as sel:
            sel.register(target, selectors.EVENT_READ)
            assert sel.select(0) == []
            waker.wake()
            [(key, events)] = sel.select(0)
            assert key.fd == waker.fileno()
            assert events == selectors.EVENT_READ
            assert waker.drain()


def test_wake_cycles_repeat(waker: aiowake.Waker) -> None:
    for _ in range(1000):
        waker.wake()
        assert readable(waker)
        assert waker.drain()
        assert not readable(waker)


def test_a_million_wakes_coalesce_into_one_write(waker: aiowake.Waker, writes: list[int]) -> None:
    for _ in range(1_000_000):
        waker.wake()
    assert writes == [waker._wfd]
    assert waker.drain() is True
    assert not readable(waker)
    assert waker.drain() is False
    waker.wake()
    waker.wake()
    assert len(writes) == 2, "after a drain the next wake writes again, once"


def test_drain_with_nothing_pending_makes_no_write(waker: aiowake.Waker, writes: list[int]) -> None:
    for _ in range(10):
        assert waker.drain() is False
    assert writes == []


def test_backend_name(backend: str) -> None:
    with aiowake.Waker(backend) as w:
        assert w.backend == backend


def test_auto_is_the_first_available_backend() -> None:
    with aiowake.Waker() as w, aiowake.Waker("auto") as w2:
        assert w.backend == w2.backend == BACKENDS[0]
    if sys.platform == "linux":
        assert BACKENDS[0] == "eventfd"


def test_descriptors_are_nonblocking_and_close_on_exec(waker: aiowake.Waker) -> None:
    for fd in {waker._rfd, waker._wfd}:
        assert os.get_blocking(fd) is False
        assert os.get_inheritable(fd) is False


def test_close_is_idempotent_and_final(waker: aiowake.Waker, writes: list[int]) -> None:
    fd, wfd = waker.fileno(), waker._wfd
    waker.wake()
    waker.close()
    assert waker.closed
    waker.close()
    with pytest.raises(OSError, match="Bad file descriptor"):
        os.fstat(fd)
    with pytest.raises(ValueError, match="closed"):
        waker.fileno()
    waker.wake()  # silent
    assert waker.drain() is False
    assert writes == [wfd]


def test_wake_after_close_writes_nothing(backend: str, writes: list[int]) -> None:
    w = aiowake.Waker(backend)
    w.close()
    for _ in range(3):
        w.wake()
    assert writes == []
    assert w.drain() is False


def test_context_manager_closes(backend: str) -> None:
    with aiowake.Waker(backend) as w:
        assert not w.closed
    assert w.closed


def test_repr_shows_backend_descriptors_and_state(waker: aiowake.Waker) -> None:
    r = repr(waker)
    assert f"backend={waker.backend!r}" in r
    assert str(waker.fileno()) in r
    assert "idle" in r
    waker.wake()
    assert "pending" in repr(waker)
    waker.drain()
    assert "idle" in repr(waker)
    waker.close()
    assert "closed" in repr(waker)
    assert waker.backend in repr(waker)


def test_unclosed_waker_warns_and_closes_itself(backend: str) -> None:
    w = aiowake.Waker(backend)
    fds = {w._rfd, w._wfd}
    with pytest.warns(ResourceWarning, match="unclosed"):
        del w
    for fd in fds:
        with pytest.raises(OSError, match="Bad file descriptor"):
            os.fstat(fd)


@pytest.mark.parametrize("name", ["", "Eventfd", "kqueue", "selectors", "auto "])
def test_unknown_backend_is_a_value_error_listing_the_valid_ones(name: str) -> None:
    with pytest.raises(ValueError, match="backend") as info:
        aiowake.Waker(name)
    for valid in ("auto", *BACKENDS):
        assert repr(valid) in str(info.value)


@pytest.mark.parametrize("name", [None, 1, b"pipe", ["pipe"]])
def test_backend_of_the_wrong_type_is_a_type_error(name: object) -> None:
    with pytest.raises(TypeError, match="backend must be a str"):
        aiowake.Waker(name)  # type: ignore[arg-type]


@pytest.mark.skipif(sys.platform == "linux", reason="on Linux every backend is available")
def test_unavailable_backend_says_so() -> None:  # pragma: no cover - not Linux
    with pytest.raises(ValueError, match="not available on this platform"):
        aiowake.Waker("eventfd")


def test_create_and_close_ten_thousand_leaks_nothing(backend: str) -> None:
    before = open_fds()
    for _ in range(10_000):
        w = aiowake.Waker(backend)
        w.wake()
        w.close()
    assert open_fds() == before


def test_failing_open_leaks_nothing(monkeypatch: pytest.MonkeyPatch, backend: str) -> None:
    """A backend whose open() fails leaves no descriptor and no half-made waker behind."""
    spec = _backends.BACKENDS[backend]

    def failing_open() -> tuple[int, int]:
        raise OSError(24, "Too many open files")

    monkeypatch.setitem(
        _backends.BACKENDS,
        backend,
        type(spec)(spec.name, failing_open, spec.payload, spec.read_size),
    )
    before = open_fds()
    with pytest.raises(OSError, match="Too many open files"):
        aiowake.Waker(backend)
    assert open_fds() == before


def test_os_error_on_write_propagates_and_keeps_the_waker_usable(
    waker: aiowake.Waker, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_write(fd: int, data: bytes) -> int:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(_waker, "_write", broken_write)
    with pytest.raises(OSError, match="Input/output error"):
        waker.wake()
    monkeypatch.undo()
    # The token came back: the next wake writes, instead of believing a wake is pending.
    waker.wake()
    assert readable(waker)
    assert waker.drain()


def test_full_buffer_counts_as_pending(
    waker: aiowake.Waker, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(fd: int, data: bytes) -> int:
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(_waker, "_write", full)
    waker.wake()  # does not raise
    assert "pending" in repr(waker)


def test_select_select_sees_it(waker: aiowake.Waker) -> None:
    """The plainest API works too: select.select() on the object."""
    waker.wake()
    r, _, _ = select.select([waker], [], [], 0)
    assert r == [waker]
    waker.drain()
