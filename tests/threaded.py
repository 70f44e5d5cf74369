"""A loopback server (the emulator, a replay) on an event loop in a thread of its own.

For synchronous tests: ``mirror._cli.main`` runs its own event loop on the main thread
(and sets signal handlers there, which only the main thread may), and a test that
waits for a child process blocks. Either way the server must answer from elsewhere;
a thread costs nothing where a server process costs a second of imports.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Future
from contextlib import AbstractAsyncContextManager, contextmanager
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["Served", "serving"]

T = TypeVar("T")
R = TypeVar("R")

#: Seconds a server may take to start or to stop.
_DEADLINE = 30.0


@dataclass
class Served(Generic[T]):
    """What the server's ``async with`` gave, and a way to act on its loop."""

    value: T
    loop: asyncio.AbstractEventLoop

    def call(self, fn: Callable[[], R]) -> R:
        """``fn()`` run on the server's loop, between two of its callbacks."""

        async def run() -> R:
            return fn()

        return self.wait(run)

    def wait(self, fn: Callable[[], Awaitable[R]]) -> R:
        """Await ``fn()`` on the server's loop (``emu.wait_idle``) and return its result."""

        async def run() -> R:
            return await fn()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(_DEADLINE)


@contextmanager
def serving(server: AbstractAsyncContextManager[T]) -> Iterator[Served[T]]:
    """Enter ``server`` on a new event loop in a daemon thread; leave it on exit.

    An error entering or leaving it is raised here, in the caller's thread.
    """
    entered: Future[Served[T]] = Future()
    left: Future[None] = Future()
    stopping: list[asyncio.Event] = []

    async def main() -> None:
        stopping.append(asyncio.Event())
        async with server as value:
            entered.set_result(Served(value, asyncio.get_running_loop()))
            await stopping[0].wait()

    def thread() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:
            if not entered.done():
                entered.set_exception(exc)
            left.set_exception(exc)
        else:
            left.set_result(None)

    runner = threading.Thread(target=thread, name="served", daemon=True)
    runner.start()
    served = entered.result(_DEADLINE)
    try:
        yield served
    finally:
        served.loop.call_soon_threadsafe(stopping[0].set)
        runner.join(_DEADLINE)
        left.result(0)
