"""Asyncio helpers that keep the calling task's own cancellation intact.

The usual ``t.cancel(); with suppress(CancelledError): await t`` swallows a
cancellation of the *caller* that arrives meanwhile: the caller then carries on as if
nothing had been asked of it, and a SIGINT never ends the run. (Python 3.11's
``asyncio.wait_for`` has the same flaw; :meth:`mirror._clock.Clock.wait` is the
timed wait to use.)
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["cancelling", "stopped"]


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
