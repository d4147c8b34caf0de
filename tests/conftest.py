from __future__ import annotations

import asyncio
import contextlib
import os
import selectors
import signal
import sys
import threading
import types
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
import pytest_asyncio

import aiowake
from aiowake import BackendName

if TYPE_CHECKING:
    from _typeshed import TraceFunction

uvloop: types.ModuleType | None
try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is in the test dependencies on POSIX
    uvloop = None

BACKENDS = aiowake.Waker.backends()


def open_fds() -> set[int]:
    """This process's open descriptors (Linux: /proc/self/fd; elsewhere /dev/fd)."""
    path = "/proc/self/fd" if os.path.isdir("/proc/self/fd") else "/dev/fd"
    fds = set()
    for name in os.listdir(path):
        fd = int(name)
        try:
            os.fstat(fd)
        except OSError:
            continue  # the directory's own descriptor, closed by now
        fds.add(fd)
    return fds


@pytest.fixture
def fd_guard() -> Iterator[None]:
    """Fails the test if it leaves a descriptor open that it did not find."""
    before = open_fds()
    yield
    leaked = open_fds() - before
    assert not leaked, f"descriptors leaked: {sorted(leaked)}"


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> BackendName:
    name: BackendName = request.param
    return name


@pytest.fixture
def waker(backend: BackendName) -> Iterator[aiowake.Waker]:
    with aiowake.Waker(backend) as w:
        yield w


LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def _stock_debug_loop() -> asyncio.AbstractEventLoop:
    loop = asyncio.new_event_loop()
    loop.set_debug(True)
    return loop


LOOP_FACTORIES: dict[str, LoopFactory] = {"asyncio": _stock_debug_loop}
if uvloop is not None:
    LOOP_FACTORIES["uvloop"] = uvloop.new_event_loop
    # libuv opens a process-wide pipe the first time a uvloop loop runs and keeps it for the
    # process's life. Let that happen now, so that no test counting descriptors mistakes it for
    # a leak of ours depending on which test happens to run first.
    _warm_up = uvloop.new_event_loop()
    _warm_up.run_until_complete(asyncio.sleep(0))
    _warm_up.close()


@pytest.fixture(params=list(LOOP_FACTORIES))
def loop_factory(request: pytest.FixtureRequest) -> LoopFactory:
    """A factory for stock asyncio loops (debug mode on) and uvloop loops."""
    return LOOP_FACTORIES[request.param]


class ExceptionHandlerGuard:
    """Records calls of a loop's exception handler; the test fails if any is left unclaimed."""

    def __init__(self) -> None:
        self.contexts: list[dict[str, Any]] = []

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        self.contexts.append(context)

    def take(self) -> list[dict[str, Any]]:
        taken, self.contexts = self.contexts, []
        return taken


@pytest.fixture
def run_in_loop(
    loop_factory: LoopFactory,
) -> Iterator[Callable[..., Any]]:
    """``run_in_loop(coro_fn, *args)`` runs a coroutine on a fresh loop of the parametrized kind.

    The loop's exception handler is recorded; anything it received fails the test unless the
    test claimed it with ``run_in_loop.handler.take()``.
    """
    handler = ExceptionHandlerGuard()
    loops: list[asyncio.AbstractEventLoop] = []

    def run(coro_fn: Callable[..., Any], *args: Any) -> Any:
        loop = loop_factory()
        loops.append(loop)
        loop.set_exception_handler(handler)
        try:
            return loop.run_until_complete(coro_fn(*args))
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    run.handler = handler  # type: ignore[attr-defined]
    yield run
    assert not handler.contexts, (
        f"unexpected calls of the loop's exception handler: {handler.contexts}"
    )


def readable(fd: int | aiowake.Waker) -> bool:
    """Whether *fd* polls readable right now."""
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        return bool(sel.select(0))


def interrupted_after(
    real: Callable[..., object], exc: type[BaseException] = KeyboardInterrupt
) -> Callable[..., object]:
    """*real*, then the exception a signal handler raises at the bytecode after it returned."""

    def call(*args: object) -> object:
        real(*args)
        raise exc

    return call


class Strike(Exception):
    """What a ``strike_storm`` handler and ``call_struck_at`` raise."""


class StrikeStorm:
    """A virtual-time timer whose signal handler raises ``Strike`` in the code of given modules,
    at whatever bytecode the timer lands on, at most once per ``arm()``: the one exception a
    signal handler may raise inside an operation (a second, striking inside the rescue from the
    first, is beyond any Python code's guard)."""

    def __init__(self, *modules: types.ModuleType) -> None:
        self._files = {m.__file__ for m in modules}
        self.armed = False
        self.struck = 0

    def arm(self) -> None:
        self.armed = True

    def disarm(self) -> None:
        self.armed = False

    def handler(self, signum: int, frame: types.FrameType | None) -> None:
        if self.armed and frame is not None and frame.f_code.co_filename in self._files:
            self.armed = False
            self.struck += 1
            raise Strike


@contextlib.contextmanager
def strike_storm(*modules: types.ModuleType, every_s: float = 0.00005) -> Iterator[StrikeStorm]:
    """Run the block under a ``StrikeStorm`` (SIGVTALRM: SIGALRM is pytest-timeout's). The
    handler runs in the main thread, where the tests run."""
    storm = StrikeStorm(*modules)
    old = signal.signal(signal.SIGVTALRM, storm.handler)
    signal.setitimer(signal.ITIMER_VIRTUAL, every_s, every_s)
    try:
        yield storm
    finally:
        signal.setitimer(signal.ITIMER_VIRTUAL, 0, 0)
        signal.signal(signal.SIGVTALRM, old)
        storm.disarm()


def call_struck_at(n: int, fn: Callable[[], object], *modules: types.ModuleType) -> str | None:
    """Call *fn* in this thread, raising ``Strike`` before the *n*-th line (from 0) that runs in
    the code of *modules*; return where it struck (``"function:line"``), or None if *fn*
    returned first.

    An exception raised by a trace function lands in the traced frame there, as a signal
    handler's does where Python runs handlers. Lines, not instructions: opcode tracing missed
    the first calls of a code object on Python 3.12.1 and 3.13.0. And an instruction-level strike
    would also find windows that Python leaves to no handler and no code can close: between a
    `with` block's last instruction and its call of ``__exit__`` (a lock stays held for good).
    So strike only code that must not depend on where handlers run, and leave ``with`` blocks
    to ``strike_storm``. Python unsets the trace function when it raises, so whatever runs
    after the strike (the rescue) runs untraced and unstruck.
    """
    files = {m.__file__ for m in modules}
    seen = 0

    def local(frame: types.FrameType, event: str, arg: object) -> TraceFunction:
        nonlocal seen
        if event == "line":
            seen += 1
            if seen == n + 1:
                raise Strike(f"{frame.f_code.co_name}:{frame.f_lineno}")
        return local

    def on_call(frame: types.FrameType, event: str, arg: object) -> TraceFunction | None:
        return local if frame.f_code.co_filename in files else None

    sys.settrace(on_call)
    try:
        fn()
    except Strike as strike:
        return str(strike)
    finally:
        sys.settrace(None)
    return None


def start_thread(target: Callable[[], object], name: str = "aiowake-test") -> threading.Thread:
    t = threading.Thread(target=target, name=name, daemon=True)
    t.start()
    return t


requires_linux = pytest.mark.skipif(sys.platform != "linux", reason="needs Linux (/proc, eventfd)")


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, LoopFactory]:
    """Every ``@pytest.mark.asyncio`` test runs on stock asyncio (debug mode) and on uvloop."""
    return LOOP_FACTORIES


@pytest_asyncio.fixture
async def loop_errors() -> AsyncIterator[ExceptionHandlerGuard]:
    """The running loop's exception handler calls; unclaimed ones (``.take()``) fail the test."""
    guard = ExceptionHandlerGuard()
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(guard)
    yield guard
    loop.set_exception_handler(None)
    assert not guard.contexts, f"unexpected calls of the loop's exception handler: {guard.contexts}"
