"""What the benchmark ran on."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
from typing import Any

import aiowake

from ._mechanisms import rloop, uvloop
from ._queues import queue_kinds


def _cpu() -> tuple[str, bool]:
    model, hypervisor = platform.processor() or platform.machine(), False
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name") and ":" in line:
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and " hypervisor" in line:
                    hypervisor = True
    except OSError:
        pass
    return model, hypervisor


def describe() -> dict[str, Any]:
    model, hypervisor = _cpu()
    return {
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "os": platform.platform(),
        "kernel": platform.release(),
        "cpu": model,
        "cpus": os.cpu_count(),
        "virtual_machine": hypervisor,
        "switch_interval_ms": sys.getswitchinterval() * 1000,
        "aiowake": aiowake.__version__,
        "auto_backend": aiowake.Waker.backends()[0],
        "uvloop": getattr(uvloop, "__version__", None),
        "rloop": _version("rloop") if rloop is not None else None,
        "queues": {k.name: k.version for k in queue_kinds() if k.open is not None},
        "unavailable": {k.name: k.unavailable for k in queue_kinds() if k.open is None},
    }


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None
