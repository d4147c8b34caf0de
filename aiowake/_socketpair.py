"""A connected socket pair everywhere: the platform's own, or a hardened TCP-loopback emulation.

The emulation is defined on every platform (as CPython's ``socket._fallback_socketpair`` is) so that
Linux tests exercise it. It is the algorithm of the classic backport (bind to port 0 on loopback,
listen, connect a non-blocking client, accept), with the peer check that the classic one lacked
(CPython gh-122133): between ``listen()`` and ``accept()`` any local process may connect first.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Final

__all__ = ["fallback_socketpair", "socketpair"]

_LOOPBACK: Final[dict[int, str]] = {socket.AF_INET: "127.0.0.1", socket.AF_INET6: "::1"}

# How many strangers' connections we accept, close and skip before giving up. A legitimate
# pair needs one accept; every extra one is a local process racing us. Bounded so that a
# hostile process cannot keep us looping; then we raise ConnectionError rather than hang.
_MAX_IMPOSTORS: Final = 8

# accept() is a guard against a hang only: our own client has already sent its SYN to a
# loopback port, so its connection is queued within microseconds unless something is very wrong.
_ACCEPT_TIMEOUT: Final = 10.0


def fallback_socketpair(
    family: int = socket.AF_INET, type: int = socket.SOCK_STREAM, proto: int = 0
) -> tuple[socket.socket, socket.socket]:
    """Return a connected pair of TCP sockets over loopback, as ``socket.socketpair()`` would.

    Thread-safe (it shares no state). The returned sockets are blocking, connected and
    close-on-exec. The listening socket is always closed, and on every error no descriptor leaks.

    Only the accepted connection whose peer is our own client is used: a connection from any
    other local process is closed and skipped; after a few such impostors ConnectionError is raised.

    Raises ValueError for a family other than AF_INET/AF_INET6, a type other than SOCK_STREAM or a
    protocol other than 0; OSError if the platform refuses (no loopback, out of descriptors).
    """
    if family not in _LOOPBACK:
        raise ValueError(
            f"family must be socket.AF_INET or socket.AF_INET6 for the loopback fallback, "
            f"not {family!r}"
        )
    if type != socket.SOCK_STREAM:
        raise ValueError(f"type must be socket.SOCK_STREAM, not {type!r}")
    if proto != 0:
        raise ValueError(f"proto must be 0, not {proto!r}")

    # No SO_REUSEADDR: a port still in TIME_WAIT must not be handed to us, and nobody can
    # bind beside us on a port we hold.
    lsock = socket.socket(family, type, proto)
    csock: socket.socket | None = None
    try:
        lsock.bind((_LOOPBACK[family], 0))
        lsock.listen()
        addr = lsock.getsockname()
        csock = socket.socket(family, type, proto)
        csock.setblocking(False)
        try:
            csock.connect(addr)
        except (BlockingIOError, InterruptedError):
            pass  # the handshake completes on its own; accept() below waits for it
        csock.setblocking(True)
        ssock = _accept_own(lsock, csock)
    except BaseException:
        if csock is not None:
            csock.close()
        raise
    finally:
        lsock.close()
    return ssock, csock


def _accept_own(lsock: socket.socket, csock: socket.socket) -> socket.socket:
    """Accept from *lsock* until the connection is *csock*'s own; close every impostor."""
    lsock.settimeout(_ACCEPT_TIMEOUT)
    # The client's local address is fixed by connect(), even before the handshake completes, and
    # the kernel never gives two live connections to one listening address the same client address,
    # so a peer equal to it is our client and nobody else.
    own = csock.getsockname()
    for _ in range(_MAX_IMPOSTORS + 1):
        ssock, peer = lsock.accept()
        if peer == own:
            ssock.setblocking(True)
            if _peer_or_none(csock) != ssock.getsockname():
                # The other way round cannot fail if the kernel keeps TCP's rules; if it does,
                # refuse the pair rather than trust it.
                ssock.close()
                raise ConnectionError(
                    "fallback_socketpair: client is not connected to our listener"
                )
            return ssock
        ssock.close()  # an impostor: another process connected between listen() and accept()
    raise ConnectionError(
        f"fallback_socketpair: {_MAX_IMPOSTORS + 1} connections to the private listener came from "
        f"other processes, none from our own client {own!r}"
    )


def _peer_or_none(sock: socket.socket) -> object:
    try:
        return sock.getpeername()
    except OSError:  # ENOTCONN: the client has not connected (to anything)
        return None


def socketpair(
    family: int | None = None, type: int = socket.SOCK_STREAM, proto: int = 0
) -> tuple[socket.socket, socket.socket]:
    """Return a connected pair of sockets: ``socket.socketpair()`` where the platform has one.

    *family* defaults to AF_UNIX where it exists, else AF_INET. Without a native socketpair
    (none of today's CPython builds lacks it on POSIX; Windows has it through the same
    emulation), this is :func:`fallback_socketpair`.
    """
    if _native_socketpair is None:
        return fallback_socketpair(socket.AF_INET if family is None else family, type, proto)
    if family is None:
        family = getattr(socket, "AF_UNIX", socket.AF_INET)
    return _native_socketpair(family, type, proto)


_PairFactory = Callable[[int, int, int], tuple[socket.socket, socket.socket]]
_native_socketpair: _PairFactory | None = getattr(socket, "socketpair", None)
