"""aiowake: wake an event loop from another thread, a signal handler or a custom loop."""

from __future__ import annotations

from ._backends import BackendName as BackendName
from ._channel import MAX_BACKLOG as MAX_BACKLOG
from ._dispatcher import Dispatcher as Dispatcher
from ._event import Event as Event
from ._handle import DispatcherHandle as DispatcherHandle
from ._queue import AsyncQueue as AsyncQueue
from ._queue import AsyncQueueEmpty as AsyncQueueEmpty
from ._queue import AsyncQueueFull as AsyncQueueFull
from ._queue import AsyncQueueShutDown as AsyncQueueShutDown
from ._queue import LifoQueue as LifoQueue
from ._queue import PriorityQueue as PriorityQueue
from ._queue import Queue as Queue
from ._queue import SyncQueue as SyncQueue
from ._queue import SyncQueueEmpty as SyncQueueEmpty
from ._queue import SyncQueueFull as SyncQueueFull
from ._queue import SyncQueueShutDown as SyncQueueShutDown
from ._socketpair import fallback_socketpair as fallback_socketpair
from ._socketpair import socketpair as socketpair
from ._version import __version__ as __version__
from ._waker import Waker as Waker

__all__ = [
    "MAX_BACKLOG",
    "AsyncQueue",
    "AsyncQueueEmpty",
    "AsyncQueueFull",
    "AsyncQueueShutDown",
    "BackendName",
    "Dispatcher",
    "DispatcherHandle",
    "Event",
    "LifoQueue",
    "PriorityQueue",
    "Queue",
    "SyncQueue",
    "SyncQueueEmpty",
    "SyncQueueFull",
    "SyncQueueShutDown",
    "Waker",
    "__version__",
    "fallback_socketpair",
    "socketpair",
]
