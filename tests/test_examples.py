"""Every example runs as written and prints what it promises."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name: str, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-X", "dev", "-W", "error", str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(EXAMPLES.parent)},
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    return proc.stdout


# Each of these has a test below; a new example must be added here and tested.
TESTED = {
    "add_reader.py",
    "dispatcher_burst.py",
    "event_from_thread.py",
    "queue_thread_to_loop.py",
    "selectors_loop.py",
    "signal_wake.py",
}
LOOPS = pytest.mark.parametrize("args", [(), ("--uvloop",)], ids=["asyncio", "uvloop"])


def test_every_example_has_a_test() -> None:
    assert {p.name for p in EXAMPLES.glob("*.py")} == TESTED


@LOOPS
def test_add_reader(args: tuple[str, ...]) -> None:
    out = run_example("add_reader.py", *args)
    assert out.count("worker ") == 12
    assert "12 results via " in out


def test_selectors_loop() -> None:
    out = run_example("selectors_loop.py")
    assert "sent ['request 0', 'request 1', 'request 2']" in out


def test_signal_wake() -> None:
    assert run_example("signal_wake.py") == "woken by SIGUSR1\n"


@LOOPS
def test_event_from_thread(args: tuple[str, ...]) -> None:
    out = run_example("event_from_thread.py", *args)
    assert out.startswith("digest ")
    assert len(out.split()[1]) == 16


@LOOPS
def test_dispatcher_burst(args: tuple[str, ...]) -> None:
    n = 100_000
    assert run_example("dispatcher_burst.py", *args) == f"{n} events, sum {n * (n - 1) // 2}\n"


@LOOPS
def test_queue_thread_to_loop(args: tuple[str, ...]) -> None:
    out = run_example("queue_thread_to_loop.py", *args)
    assert out == "50 readings, checksum total 100920855598\n"
