"""Turning concurrent producers into one async iterator, with errors and cancellation kept."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import TypeVar

from ._tasks import stopped

__all__ = ["fan_out", "produced"]

T = TypeVar("T")


async def produced(
    run: Callable[[Callable[[T], Awaitable[None]]], Awaitable[None]], *, buffer: int = 4
) -> AsyncGenerator[T, None]:
    """Yield what ``run(emit)`` emits, while ``run`` works concurrently in its own task.

    Why not yield from inside a TaskGroup in the generator itself: a child's failure
    cancels the task that owns the group, and in a generator that is whichever task
    is iterating it, wherever it happens to be. Here ``run`` owns its children in its
    own task; its error is re-raised at the consumer's next step, and a consumer
    that stops early cancels ``run``. ``buffer`` bounds what is emitted but not yet
    taken, so a slow consumer slows the producers instead of growing memory.
    """
    queue: asyncio.Queue[T] = asyncio.Queue(buffer)
    worker = asyncio.ensure_future(run(queue.put))
    try:
        while True:
            getter = asyncio.ensure_future(queue.get())
            done, _ = await asyncio.wait({getter, worker}, return_when=asyncio.FIRST_COMPLETED)
            if getter in done:
                yield getter.result()
                continue
            getter.cancel()  # a cancelled Queue.get takes nothing from the queue
            while not queue.empty():
                yield queue.get_nowait()
            worker.result()  # re-raise the producers' error, if any
            return
    finally:
        await stopped(worker)


async def fan_out(
    items: AsyncIterator[T],
    work: Callable[[T], Awaitable[None]],
    *,
    at_once: int,
    backlog: int = 100,
) -> None:
    """Run ``work`` on each of ``items``, ``at_once`` at a time, reading ``items`` ahead by
    up to ``backlog`` (an archive's listing pages on while its items are expanded).

    The first error cancels the rest and is raised (in a group, as TaskGroup raises).
    """
    queue: asyncio.Queue[tuple[T] | None] = asyncio.Queue(backlog)

    async def feed() -> None:
        # aclosing: a listing cut short by an error is closed now, not at shutdown.
        async with contextlib.aclosing(items) as listing:  # type: ignore[type-var]
            async for item in listing:
                await queue.put((item,))
        for _ in range(at_once):
            await queue.put(None)

    async def worker() -> None:
        while (got := await queue.get()) is not None:
            await work(got[0])

    async with asyncio.TaskGroup() as tg:
        tg.create_task(feed())
        for _ in range(at_once):
            tg.create_task(worker())
