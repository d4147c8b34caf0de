"""Running out of descriptors: a clear OSError (EMFILE), nothing leaked, everything usable after.

Each check runs in a subprocess whose RLIMIT_NOFILE is lowered to "what is open now + k" for
k = 0, 1, 2, ...: so every creation step that opens a descriptor gets its turn to fail.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

resource = pytest.importorskip("resource", reason="RLIMIT_NOFILE is POSIX-only")

pytestmark = pytest.mark.skipif(
    sys.platform != "linux", reason="counts descriptors through /proc/self/fd"
)

PRELUDE = textwrap.dedent(
    """
    import asyncio, errno, os, resource, aiowake

    def fds():
        out = set()
        for name in os.listdir("/proc/self/fd"):
            try:
                os.fstat(int(name))
            except OSError:
                continue  # listdir's own descriptor, closed by now
            out.add(int(name))
        return out

    def limit_for(k, open_now):
        # RLIMIT_NOFILE is one more than the highest number allowed, and a new descriptor
        # takes the lowest free number: this limit lets exactly k more be opened.
        free = (n for n in range(10**6) if n not in open_now)
        for _ in range(k):
            next(free)
        return next(free)

    SOFT, HARD = resource.getrlimit(resource.RLIMIT_NOFILE)

    def attempts(make, close, most=6):
        '''make() with room for only k more descriptors, k = 0..most; return the k that worked.'''
        for k in range(most + 1):
            before = fds()
            resource.setrlimit(resource.RLIMIT_NOFILE, (limit_for(k, before), HARD))
            try:
                thing = make()
            except OSError as exc:
                resource.setrlimit(resource.RLIMIT_NOFILE, (SOFT, HARD))
                assert exc.errno == errno.EMFILE, repr(exc)
                assert fds() == before, f"leaked after {exc!r}: {fds() - before}"
                continue
            resource.setrlimit(resource.RLIMIT_NOFILE, (SOFT, HARD))
            close(thing)
            assert fds() == before, f"leaked after success: {fds() - before}"
            return k
        raise AssertionError("never succeeded")

    async def attempts_async(make, most=6):
        '''attempts() for a coroutine function that makes, uses and closes its thing.'''
        for k in range(most + 1):
            before = fds()
            resource.setrlimit(resource.RLIMIT_NOFILE, (limit_for(k, before), HARD))
            failed = None
            try:
                await make()
            except OSError as exc:
                failed = exc
            finally:
                resource.setrlimit(resource.RLIMIT_NOFILE, (SOFT, HARD))
            assert fds() == before, f"leaked after {failed or 'success'!r}: {fds() - before}"
            if failed is None:
                return k
            assert failed.errno == errno.EMFILE, repr(failed)
        raise AssertionError("never succeeded")
    """
)

WAKERS = """
for name in aiowake.Waker.backends():
    def make(name=name):
        w = aiowake.Waker(name)
        w.wake()
        assert w.drain()
        return w
    k = attempts(make, aiowake.Waker.close)
    print(name, "needs", k)
"""

SOCKETPAIR = """
def close(pair):
    for s in pair:
        s.close()
k = attempts(aiowake.fallback_socketpair, close)
print("fallback_socketpair needs", k)
"""

LOOP_USERS = """
import uvloop

async def main():
    loop = asyncio.get_running_loop()

    async def until_closed():
        # Descriptors come back when the last user is gone, on the next loop iteration.
        for _ in range(3):
            await asyncio.sleep(0)

    async def dispatcher():
        d = aiowake.Dispatcher()
        done = loop.create_future()
        d.call_soon_threadsafe(done.set_result, 1)
        assert await done == 1
        d.close()
        await until_closed()

    async def event_wait():
        ev = aiowake.Event()
        loop.call_soon(ev.set)
        assert await ev.wait()
        await until_closed()

    for name, make in (("Dispatcher", dispatcher), ("Event.wait", event_wait)):
        k = await attempts_async(make)
        print(type(loop).__module__, name, "needs", k)

for factory in (asyncio.new_event_loop, uvloop.new_event_loop):
    loop = factory()
    loop.run_until_complete(main())
    loop.close()
"""


@pytest.mark.parametrize(
    ("script", "expect"),
    [
        pytest.param(WAKERS, "eventfd needs 1\npipe needs 2", id="Waker-every-backend"),
        pytest.param(SOCKETPAIR, "fallback_socketpair needs 3", id="fallback_socketpair"),
        pytest.param(LOOP_USERS, "uvloop Event.wait needs 1", id="Dispatcher-and-Event"),
    ],
)
def test_out_of_descriptors_raises_emfile_and_leaks_nothing(script: str, expect: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert expect in proc.stdout, proc.stdout
    # Every attempt below the need failed with EMFILE and left nothing behind (checked inside);
    # a need of zero would mean the check never made anything fail.
    assert " needs 0" not in proc.stdout, proc.stdout
