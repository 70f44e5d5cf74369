"""Turning concurrent producers into one async iterator, with errors and cancellation kept."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import TypeVar

from ._tasks import stopped

__all__ = ["produced"]

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
