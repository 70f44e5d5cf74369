"""Asyncio helpers that keep the calling task's own cancellation intact.

Python 3.11's ``asyncio.wait_for`` and the usual ``t.cancel(); with
suppress(CancelledError): await t`` both swallow a cancellation of the *caller* that
arrives at the wrong moment: the caller then carries on as if nothing had been
asked of it, and a SIGINT never ends the run. These do the same jobs without that.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

__all__ = ["cancelling", "stopped", "waited"]


def cancelling() -> bool:
    """Whether the current task itself is being cancelled (not something it awaited)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def waited(event: asyncio.Event, seconds: float) -> bool:
    """Wait up to ``seconds`` for ``event``; whether it was set.

    ``asyncio.timeout`` tells its own expiry from a cancellation of the caller, which
    ``wait_for`` does not in 3.11 (it returns the result when both happen at once).
    """
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()
    return event.is_set()


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
