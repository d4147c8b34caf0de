"""The public face: __all__ and the public names agree, and everything is typed."""

from __future__ import annotations
import __future__

import importlib.resources
import inspect

import aiowake


def test_all_and_public_names_agree() -> None:
    public = {
        name
        for name, value in vars(aiowake).items()
        if not name.startswith("_")
        and not inspect.ismodule(value)
        and not isinstance(value, __future__._Feature)  # `from __future__ import annotations`
    }
    assert public | {"__version__"} == set(aiowake.__all__)
    for name in aiowake.__all__:
        assert hasattr(aiowake, name), name


# The queue exceptions are the standard library's own where it has them (janus's names, so that
# switching from janus is a changed import): queue.Empty, asyncio.QueueFull, ...
STANDARD_ALIASES = {
    "SyncQueueEmpty",
    "SyncQueueFull",
    "SyncQueueShutDown",
    "AsyncQueueEmpty",
    "AsyncQueueFull",
    "AsyncQueueShutDown",
}


def test_public_objects_say_they_are_aiowake_s() -> None:
    for name in aiowake.__all__:
        obj = getattr(aiowake, name)
        if name in STANDARD_ALIASES:
            assert issubclass(obj, Exception)
            continue
        if callable(obj) and isinstance(obj, type | type(test_ships_py_typed)):
            assert obj.__module__.startswith("aiowake."), name
            assert obj.__doc__, f"{name} has no docstring"


def test_ships_py_typed() -> None:
    assert importlib.resources.files("aiowake").joinpath("py.typed").is_file()


def test_version_is_a_string() -> None:
    assert isinstance(aiowake.__version__, str)
    assert aiowake.__version__.count(".") >= 2
