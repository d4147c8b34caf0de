"""Resident memory of this process: how much a run grew it at its peak.

The kernel keeps the process's peak resident size (``VmHWM`` in ``/proc/self/status``), and
writing ``5`` to ``/proc/self/clear_refs`` (Linux 4.0+) resets it to the current size. So a run
resets it, notes the current size, and reads the peak at its end: the peak growth, with nothing
sampled while the run goes (a sampling thread would take the GIL from the threads measured).

Before that, the garbage of earlier runs is collected and the C allocator is asked to give its free
memory back (glibc's ``malloc_trim``): else a case that follows one that freed 300 MB would grow
into that freed memory and seem to cost nothing. CPython's own allocator returns an arena once it
is empty, so what a finished run leaves behind is mostly returned.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
from collections.abc import Callable
from dataclasses import dataclass

_STATUS = "/proc/self/status"
_CLEAR_REFS = "/proc/self/clear_refs"


def _malloc_trim() -> Callable[[], object]:
    try:
        trim = ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim  # glibc only
    except (OSError, AttributeError, TypeError):
        return lambda: None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return functools.partial(trim, 0)


_trim = _malloc_trim()


def _status_kib(field: str) -> int | None:
    try:
        with open(_STATUS, encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _reset_peak() -> bool:
    try:
        with open(_CLEAR_REFS, "w", encoding="ascii") as f:
            f.write("5")
    except OSError:
        return False
    return True


@dataclass
class PeakRss:
    """``start()`` before a run, ``growth()`` after it: bytes, or None where the kernel does not
    say (not Linux, or no ``clear_refs``)."""

    base_kib: int | None = None

    def start(self) -> None:
        gc.collect()
        _trim()
        self.base_kib = _status_kib("VmRSS:") if _reset_peak() else None

    def growth(self) -> int | None:
        peak = _status_kib("VmHWM:")
        if self.base_kib is None or peak is None:
            return None
        return max(0, peak - self.base_kib) * 1024
