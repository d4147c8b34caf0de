"""Waker and the cyclic collector: a finalizer runs at whatever bytecode the collector interrupts
(any of them on 3.12+), inside the Waker's own code too."""

from __future__ import annotations

import faulthandler
import gc
import sys
import warnings
from types import FrameType
from typing import Any, Final

import pytest

import aiowake
from aiowake import _waker

from .conftest import open_fds
from .test_waker_fork import fork, wait_ok

#: The forked child below reports where it hangs and exits after this long; within pytest's
#: timeout, so that a hang fails the test rather than the whole session.
HANG_S: Final = 30


def test_collector_finalizing_a_waker_inside_another_wakers_code_does_not_deadlock() -> None:
    """An unclosed Waker in a reference cycle is finalized by the collector, which can strike
    while this thread is inside another Waker's ``__init__`` or ``close()``, where the live set
    of wakers is updated: the finalizer (``__del__`` -> ``close()``) updates it too, and with a
    plain lock around it the thread waited for itself, for good.

    Every collection finds such a waker: at the end of each, a gc callback drops a fresh cycle
    holding one, which the next collection finalizes, wherever it strikes; ``gc.set_threshold(1)``
    makes it strike nearly everywhere. In a forked child, which a hang cannot take the session
    down with.
    """

    def child() -> None:  # pragma: no cover - runs in the child
        faulthandler.dump_traceback_later(HANG_S, exit=True)
        armed: list[aiowake.Waker] = []
        finalizing = False
        struck_in: set[str] = set()  # the Waker methods a finalizer ran inside

        def strike(phase: str, info: dict[str, Any]) -> None:
            nonlocal finalizing
            if phase == "start" and finalizing:
                finalizing = False
                frame: FrameType | None = sys._getframe(1)
                while frame is not None:
                    if frame.f_code.co_filename == _waker.__file__:
                        struck_in.add(frame.f_code.co_name)
                    frame = frame.f_back
            elif phase == "stop" and armed:
                cycle: list[object] = [armed.pop()]
                cycle.append(cycle)
                finalizing = True

        before = open_fds()
        made = 0
        threshold = gc.get_threshold()
        with warnings.catch_warnings(record=True) as warned:
            warnings.simplefilter("always", ResourceWarning)
            gc.callbacks.append(strike)
            gc.set_threshold(1)
            try:
                for _ in range(1000):
                    if len(armed) < 20:
                        gc.disable()  # so that making them feeds no collection
                        armed.extend([aiowake.Waker() for _ in range(50)])
                        gc.enable()
                        made += 50
                    with aiowake.Waker():
                        pass
            finally:
                gc.set_threshold(*threshold)
                gc.callbacks.remove(strike)
            for w in armed:
                w.close()
            gc.collect()  # the last cycle
        faulthandler.cancel_dump_traceback_later()
        assert {"__init__", "close"} <= struck_in, struck_in
        unclosed = [w for w in warned if issubclass(w.category, ResourceWarning)]
        assert len(unclosed) == made - len(armed), "each finalized waker warned once"
        assert all("unclosed <aiowake.Waker" in str(w.message) for w in unclosed)
        assert open_fds() == before

    wait_ok(fork(child))


def test_a_waker_never_initialized_is_collected_quietly(monkeypatch: pytest.MonkeyPatch) -> None:
    """``Waker.__new__(Waker)`` without ``__init__``: its repr works, and its finalizer finds
    nothing to close instead of failing on the missing attributes."""
    reported: list[sys.UnraisableHookArgs] = []
    monkeypatch.setattr(sys, "unraisablehook", reported.append)
    w = aiowake.Waker.__new__(aiowake.Waker)
    assert repr(w) == "<aiowake.Waker uninitialized>"
    del w
    gc.collect()
    assert reported == []
