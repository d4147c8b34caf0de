"""Waker: the single-threaded contract, on every backend."""

from __future__ import annotations

import asyncio
import copy
import os
import pickle
import select
import selectors
import sys
import textwrap
import typing
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

import aiowake
from aiowake import _backends, _waker

from .conftest import BACKENDS, open_fds, readable

if TYPE_CHECKING:
    from aiowake._backends import BackendName


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


def test_backend_name(backend: BackendName) -> None:
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


def test_wake_after_close_writes_nothing(backend: BackendName, writes: list[int]) -> None:
    w = aiowake.Waker(backend)
    w.close()
    for _ in range(3):
        w.wake()
    assert writes == []
    assert w.drain() is False


def test_context_manager_closes(backend: BackendName) -> None:
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


def test_unclosed_waker_warns_and_closes_itself(backend: BackendName) -> None:
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
        aiowake.Waker(name)  # type: ignore[arg-type]
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


def test_create_and_close_ten_thousand_leaks_nothing(backend: BackendName) -> None:
    before = open_fds()
    for _ in range(10_000):
        w = aiowake.Waker(backend)
        w.wake()
        w.close()
    assert open_fds() == before


def test_failing_open_leaks_nothing(monkeypatch: pytest.MonkeyPatch, backend: BackendName) -> None:
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


@pytest.mark.parametrize(
    "duplicate",
    [copy.copy, copy.deepcopy, *(lambda w, p=p: pickle.dumps(w, p) for p in range(6))],
    ids=["copy", "deepcopy", *(f"pickle{p}" for p in range(6))],
)
def test_copy_and_pickle_are_refused(waker: aiowake.Waker, duplicate: Callable[[Any], Any]) -> None:
    """A copy would share the descriptors, and close them under the original: refused, as
    sockets refuse it."""
    with pytest.raises(TypeError, match="cannot pickle 'Waker' object"):
        duplicate(waker)
    waker.wake()
    assert waker.drain()


def test_backend_name_type_lists_every_name() -> None:
    """The Literal that type checkers see and the names that run-time checks accept agree."""
    from aiowake._backends import BackendName

    assert typing.get_args(BackendName) == ("auto", *_backends.AUTO_ORDER)
    hints = typing.get_type_hints(aiowake.Waker.__init__)
    assert hints["backend"] == BackendName
    assert typing.get_type_hints(aiowake.Waker.backends)["return"] == tuple[BackendName, ...]


def test_type_checker_refuses_an_unknown_backend(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = pytest.importorskip("mypy.api")
    code = tmp_path / "use.py"
    code.write_text(
        textwrap.dedent(
            """
            import aiowake
            aiowake.Waker("pipe").close()
            aiowake.Waker(backend="auto").close()
            aiowake.Waker(backend="kqueue").close()
            """
        )
    )
    monkeypatch.setenv("MYPYPATH", str(Path(__file__).resolve().parent.parent))
    out, err, status = api.run(
        ["--strict", "--no-incremental", "--cache-dir", os.devnull, "--config-file", "", str(code)]
    )
    assert status == 1, out + err
    [error] = [line for line in out.splitlines() if ": error:" in line]
    assert error.startswith(f'{code}:5: error: Argument "backend" to "Waker"'), out


class RecordingLoop:
    """A loop as ``Waker.attached()`` sees it: records its calls; ``is_closed()`` optional."""

    def __init__(self) -> None:
        self.calls: list[tuple[object, ...]] = []

    def add_reader(self, fd: int, callback: Callable[..., object], *args: Any) -> None:
        self.calls.append(("add_reader", fd, callback, *args))

    def remove_reader(self, fd: int) -> bool:
        self.calls.append(("remove_reader", fd))
        return True


class ClosableLoop(RecordingLoop):
    def __init__(self) -> None:
        super().__init__()
        self.closed = False

    def is_closed(self) -> bool:
        return self.closed


def test_attached_pairs_add_reader_with_remove_reader(waker: aiowake.Waker) -> None:
    loop = RecordingLoop()
    fd = waker.fileno()
    with waker.attached(loop, print, "a", 1) as entered:
        assert entered is None
        assert loop.calls == [("add_reader", fd, print, "a", 1)]
    assert loop.calls[1:] == [("remove_reader", fd)]


def test_attached_removes_the_reader_when_the_block_raises(waker: aiowake.Waker) -> None:
    loop = ClosableLoop()
    with pytest.raises(KeyboardInterrupt), waker.attached(loop, print):
        raise KeyboardInterrupt
    assert loop.calls[1:] == [("remove_reader", waker.fileno())]


def test_attached_removes_the_registered_number_after_close(waker: aiowake.Waker) -> None:
    """Closing the waker inside the block is the caller's bug, but the exit still removes the
    reader it added, under the number it was added with."""
    loop = ClosableLoop()
    fd = waker.fileno()
    with waker.attached(loop, print):
        waker.close()
    assert loop.calls[1:] == [("remove_reader", fd)]


def test_attached_leaves_a_closed_loop_alone(waker: aiowake.Waker) -> None:
    loop = ClosableLoop()
    with waker.attached(loop, print):
        loop.closed = True
    assert [call[0] for call in loop.calls] == ["add_reader"]


def test_attached_refuses_a_closed_waker(waker: aiowake.Waker) -> None:
    loop = RecordingLoop()
    waker.close()
    with pytest.raises(ValueError, match="closed"), waker.attached(loop, print):
        pass
    assert loop.calls == []


async def still_watched(waker: aiowake.Waker) -> None:
    """Wake *waker* and let the running loop poll once while it is readable: a probe waker,
    woken too, says when it has. A reader the loop still has for *waker* has then been called."""
    loop = asyncio.get_running_loop()
    waker.wake()
    with aiowake.Waker() as probe:
        polled: asyncio.Future[None] = loop.create_future()

        def on_probe() -> None:
            probe.drain()
            if not polled.done():
                polled.set_result(None)

        with probe.attached(loop, on_probe):
            probe.wake()
            await polled


def test_attached_on_a_running_loop(run_in_loop: Callable[..., Any], waker: aiowake.Waker) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        calls: list[str] = []
        woken: asyncio.Future[None] = loop.create_future()

        def on_wake(tag: str) -> None:
            waker.drain()
            calls.append(tag)
            if not woken.done():
                woken.set_result(None)

        with waker.attached(loop, on_wake, "woken"):
            waker.wake()
            await woken
        assert calls == ["woken"]
        await still_watched(waker)
        assert calls == ["woken"], "the reader was left in place"

    run_in_loop(main)


def test_attached_removes_the_reader_when_the_task_is_cancelled(
    run_in_loop: Callable[..., Any], waker: aiowake.Waker
) -> None:
    """Cancelled while it waits inside the block, the task removes the reader on its way out
    (so a ``with`` that closes the waker next never closes a descriptor the loop watches)."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        calls: list[None] = []
        watching: asyncio.Future[None] = loop.create_future()

        async def watch() -> None:
            with waker.attached(loop, calls.append, None):
                watching.set_result(None)
                await loop.create_future()  # until cancelled

        task = loop.create_task(watch())
        await asyncio.wait([task, watching], return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()  # raises what kept it from getting inside the block
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await still_watched(waker)
        assert calls == [], "the cancelled task left its reader in place"

    run_in_loop(main)
