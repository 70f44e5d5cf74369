"""Asyncio helpers that keep the calling task's own cancellation intact.

The usual ``t.cancel(); with suppress(CancelledError): await t`` swallows a
cancellation of the *caller* that arrives meanwhile: the caller then carries on as if
nothing had been asked of it, and a SIGINT never ends the run. (Python 3.11's
``asyncio.wait_for`` has the same flaw; :meth:`mirror._clock.Clock.wait` is the
timed wait to use.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = ["acquire_in_thread", "cancelling", "stopped", "to_the_end"]


def cancelling() -> bool:
    """Whether the current task itself is being cancelled (not something it awaited)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def stopped(*tasks: asyncio.Future[Any]) -> None:
    """Cancel ``tasks`` and return once every one has ended.

    Their outcomes are consumed, not raised: whoever stops a task has stopped caring
    how it ends. Only the caller's own cancellation propagates.
    """
    pending = [t for t in tasks if not t.done()]
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending)
    for task in tasks:
        if not task.cancelled():
            task.exception()  # retrieved, so asyncio does not log it as never retrieved


async def acquire_in_thread(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in a thread, for calls that acquire something (open a file).

    If we are cancelled while the thread runs, the thread still completes: wait
    for it before re-raising, so the caller's cleanup sees what was acquired.
    """
    return await to_the_end(asyncio.to_thread(fn, *args))


async def to_the_end(job: Awaitable[T]) -> T:
    """Run ``job`` to its end even if we are cancelled meanwhile, however many times,
    then raise the cancellation (and its own error first, if it failed).

    ``shield`` alone is not enough: a second cancellation while the first is handled
    would cancel whatever the handler awaits next.
    """
    future = asyncio.ensure_future(job)
    cancelled = False
    while True:
        try:
            result = await asyncio.shield(future)
        except asyncio.CancelledError:
            if future.done():
                raise
            cancelled = True
            continue
        if cancelled:
            raise asyncio.CancelledError
        return result
