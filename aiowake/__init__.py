"""aiowake: wake an event loop from another thread, a signal handler or a custom loop."""

from __future__ import annotations

from ._dispatcher import Dispatcher as Dispatcher
from ._event import Event as Event
from ._handle import DispatcherHandle as DispatcherHandle
from ._socketpair import fallback_socketpair as fallback_socketpair
from ._socketpair import socketpair as socketpair
from ._version import __version__ as __version__
from ._waker import Waker as Waker

__all__ = [
    "Dispatcher",
    "DispatcherHandle",
    "Event",
    "Waker",
    "__version__",
    "fallback_socketpair",
    "socketpair",
]
