"""socketpair() and the hardened TCP-loopback fallback_socketpair()."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import aiowake
from aiowake import _socketpair

from .conftest import open_fds


def has_ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


FAMILIES = [
    pytest.param(socket.AF_INET, id="AF_INET"),
    pytest.param(
        socket.AF_INET6,
        id="AF_INET6",
        marks=pytest.mark.skipif(not has_ipv6_loopback(), reason="this machine has no ::1"),
    ),
]


@pytest.fixture
def pair_guard() -> Iterator[list[socket.socket]]:
    """Sockets a test makes go here and are closed after it; descriptors must balance."""
    socks: list[socket.socket] = []
    before = open_fds()
    yield socks
    for s in socks:
        s.close()
    assert open_fds() == before


def assert_connected_pair(a: socket.socket, b: socket.socket) -> None:
    a.sendall(b"ping")
    assert b.recv(4) == b"ping"
    b.sendall(b"pong")
    assert a.recv(4) == b"pong"
    for s in (a, b):
        assert s.getblocking()
        assert s.gettimeout() is None
        assert not s.get_inheritable()
        assert s.type == socket.SOCK_STREAM


def test_socketpair_is_native_and_connected(pair_guard: list[socket.socket]) -> None:
    a, b = aiowake.socketpair()
    pair_guard += [a, b]
    assert a.family == getattr(socket, "AF_UNIX", socket.AF_INET)
    assert_connected_pair(a, b)


def test_socketpair_without_native_falls_back(
    monkeypatch: pytest.MonkeyPatch, pair_guard: list[socket.socket]
) -> None:
    monkeypatch.setattr(_socketpair, "_native_socketpair", None)
    a, b = aiowake.socketpair()
    pair_guard += [a, b]
    assert a.family == b.family == socket.AF_INET
    assert_connected_pair(a, b)


@pytest.mark.parametrize("family", FAMILIES)
def test_fallback_gives_a_connected_blocking_cloexec_pair(
    family: int, pair_guard: list[socket.socket]
) -> None:
    a, b = aiowake.fallback_socketpair(family)
    pair_guard += [a, b]
    assert a.family == b.family == family
    assert a.getpeername() == b.getsockname()
    assert b.getpeername() == a.getsockname()
    assert a.getsockname()[0] in ("127.0.0.1", "::1")
    assert_connected_pair(a, b)


def test_fallback_default_is_ipv4(pair_guard: list[socket.socket]) -> None:
    a, b = aiowake.fallback_socketpair()
    pair_guard += [a, b]
    assert a.family == socket.AF_INET


def test_fallback_end_of_file_when_one_side_closes(pair_guard: list[socket.socket]) -> None:
    a, b = aiowake.fallback_socketpair()
    pair_guard.append(b)
    a.close()
    assert b.recv(1) == b""


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"family": getattr(socket, "AF_UNIX", 1)}, "family must be socket.AF_INET or"),
        ({"family": 12345}, "family must be socket.AF_INET or"),
        ({"type": socket.SOCK_DGRAM}, "type must be socket.SOCK_STREAM"),
        ({"type": socket.SOCK_RAW}, "type must be socket.SOCK_STREAM"),
        ({"proto": socket.IPPROTO_TCP}, "proto must be 0"),
        ({"proto": -1}, "proto must be 0"),
    ],
)
def test_fallback_rejects_what_it_cannot_do(
    kwargs: dict[str, int], message: str, pair_guard: list[socket.socket]
) -> None:
    with pytest.raises(ValueError, match=message):
        aiowake.fallback_socketpair(**kwargs)


Patch = Callable[..., Any]


def _record_calls(monkeypatch: pytest.MonkeyPatch, name: str) -> list[tuple[Any, ...]]:
    calls: list[tuple[Any, ...]] = []
    real: Patch = getattr(socket.socket, name)

    def recording(self: socket.socket, *args: Any) -> Any:
        calls.append((self, *args))
        return real(self, *args)

    monkeypatch.setattr(socket.socket, name, recording)
    return calls


@pytest.mark.parametrize("family", FAMILIES)
def test_fallback_binds_loopback_only_and_never_reuses_addresses(
    family: int, monkeypatch: pytest.MonkeyPatch, pair_guard: list[socket.socket]
) -> None:
    binds = _record_calls(monkeypatch, "bind")
    opts = _record_calls(monkeypatch, "setsockopt")
    a, b = aiowake.fallback_socketpair(family)
    pair_guard += [a, b]
    loopback = "127.0.0.1" if family == socket.AF_INET else "::1"
    assert [args[1][0] for args in binds] == [loopback]
    assert all(
        args[2] not in (socket.SO_REUSEADDR, getattr(socket, "SO_REUSEPORT", -1)) for args in opts
    )


STEPS = ["bind", "listen", "getsockname", "connect", "setblocking", "settimeout", "accept"]


@pytest.mark.parametrize("step", STEPS)
def test_fallback_failing_at_each_step_leaks_nothing(
    step: str, monkeypatch: pytest.MonkeyPatch, pair_guard: list[socket.socket]
) -> None:
    def fail(self: socket.socket, *args: Any) -> Any:
        raise OSError(99, f"injected failure in {step}")

    monkeypatch.setattr(socket.socket, step, fail)
    with pytest.raises(OSError, match=f"injected failure in {step}"):
        aiowake.fallback_socketpair()


def test_fallback_failing_after_accept_leaks_nothing(
    monkeypatch: pytest.MonkeyPatch, pair_guard: list[socket.socket]
) -> None:
    """A failure after accept() (here in the reverse peer check) closes all three sockets."""
    monkeypatch.setattr(_socketpair, "_peer_or_none", lambda sock: ("10.9.9.9", 1))
    with pytest.raises(ConnectionError, match="not connected to our listener"):
        aiowake.fallback_socketpair()


def test_fallback_interrupted_by_keyboard_interrupt_leaks_nothing(
    monkeypatch: pytest.MonkeyPatch, pair_guard: list[socket.socket]
) -> None:
    def interrupted(self: socket.socket) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(socket.socket, "accept", interrupted)
    with pytest.raises(KeyboardInterrupt):
        aiowake.fallback_socketpair()


def _impostors_connect_first(
    monkeypatch: pytest.MonkeyPatch, count: int, impostors: list[socket.socket]
) -> None:
    """After listen(), *count* strangers connect before our own client does."""
    real_listen = socket.socket.listen

    def listen_then_impostors(self: socket.socket, *args: Any) -> None:
        real_listen(self, *args)
        for _ in range(count):
            imp = socket.socket(self.family, socket.SOCK_STREAM)
            impostors.append(imp)
            imp.connect(self.getsockname())

    monkeypatch.setattr(socket.socket, "listen", listen_then_impostors)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("count", [1, 3, 8])
def test_fallback_never_returns_an_impostor(
    family: int, count: int, monkeypatch: pytest.MonkeyPatch, pair_guard: list[socket.socket]
) -> None:
    impostors: list[socket.socket] = []
    _impostors_connect_first(monkeypatch, count, impostors)
    a, b = aiowake.fallback_socketpair(family)
    monkeypatch.undo()
    pair_guard += [a, b, *impostors]
    assert len(impostors) == count
    imp_addrs = {imp.getsockname() for imp in impostors}
    assert a.getpeername() not in imp_addrs
    assert a.getpeername() == b.getsockname()
    assert_connected_pair(a, b)
    for imp in impostors:
        imp.settimeout(10)
        try:
            assert imp.recv(1) == b"", "the impostor's connection was closed by us"
        except ConnectionResetError:
            pass  # also a close


def test_fallback_gives_up_after_too_many_impostors(
    monkeypatch: pytest.MonkeyPatch, pair_guard: list[socket.socket]
) -> None:
    impostors: list[socket.socket] = []
    _impostors_connect_first(monkeypatch, _socketpair._MAX_IMPOSTORS + 1, impostors)
    with pytest.raises(ConnectionError, match="came from other processes"):
        aiowake.fallback_socketpair()
    pair_guard += impostors


def test_fallback_many_pairs_leak_nothing(pair_guard: list[socket.socket]) -> None:
    for _ in range(500):
        a, b = aiowake.fallback_socketpair()
        a.close()
        b.close()


IMPOSTOR = """
import socket, sys
family, host, port = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
s = socket.socket(family, socket.SOCK_STREAM)
s.connect((host, port))
print(repr(s.getsockname()), flush=True)  # connected: the parent may go on
s.settimeout(30)
try:
    data = s.recv(64)
    print("eof" if data == b"" else f"got {data!r}", flush=True)
except ConnectionResetError:
    print("reset", flush=True)
"""


@pytest.mark.parametrize("family", FAMILIES)
def test_fallback_never_returns_an_impostor_from_another_process(
    family: int, monkeypatch: pytest.MonkeyPatch, pair_guard: list[socket.socket]
) -> None:
    """A real other process connects to the private listener before our client does: it is
    turned away (its connection closed, nothing sent to it) and we get our own pair."""
    procs: list[subprocess.Popen[str]] = []
    real_listen = socket.socket.listen

    def listen_then_stranger(self: socket.socket, *args: Any) -> None:
        real_listen(self, *args)
        host, port = self.getsockname()[:2]
        proc = subprocess.Popen(
            [sys.executable, "-c", IMPOSTOR, str(int(self.family)), host, str(port)],
            stdout=subprocess.PIPE,
            text=True,
        )
        procs.append(proc)
        assert proc.stdout is not None
        procs_addr.append(proc.stdout.readline().strip())  # waits until it is connected

    procs_addr: list[str] = []
    monkeypatch.setattr(socket.socket, "listen", listen_then_stranger)
    a, b = aiowake.fallback_socketpair(family)
    monkeypatch.undo()
    pair_guard += [a, b]
    assert_connected_pair(a, b)
    (proc,) = procs
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert out.strip() in {"eof", "reset"}, out
    assert procs_addr[0].startswith(("('127.0.0.1'", "('::1'")), procs_addr
    assert repr(a.getpeername()) != procs_addr[0]
    assert a.getpeername() == b.getsockname()
