"""A cancellation of the caller is never swallowed, whatever else happens at that moment.

Each interleaving is stepped by hand (``sleep(0)`` yields once), so the race that hung
``mirror run`` after SIGINT in 3.11's ``wait_for`` is reproduced every time, not by luck.
"""

from __future__ import annotations

import asyncio
import gc

import pytest

from mirror._clock import REAL_CLOCK
from mirror._tasks import stopped


async def _steps(n: int) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


@pytest.mark.parametrize("steps", range(4))
async def test_a_cancel_as_the_event_is_set_cancels_the_waiter(steps: int) -> None:
    event = asyncio.Event()

    async def dispatcher() -> None:
        while True:  # the engine's loop: wait a little for news, look again
            event.clear()
            await REAL_CLOCK.wait(event, 60)

    task = asyncio.create_task(dispatcher())
    await _steps(2)
    event.set()
    await _steps(steps)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()


async def test_the_timed_wait_says_whether_the_event_came() -> None:
    event = asyncio.Event()
    assert await REAL_CLOCK.wait(event, 0.001) is False
    event.set()
    assert await REAL_CLOCK.wait(event, 60) is True


@pytest.mark.parametrize("steps", range(4))
async def test_a_cancel_while_stopping_a_child_still_cancels_the_caller(steps: int) -> None:
    release = asyncio.Event()

    async def stubborn() -> None:
        # A child that needs a moment to end after it is cancelled (a file it closes).
        try:
            await asyncio.Event().wait()
        finally:
            await release.wait()

    async def owner() -> str:
        child = asyncio.create_task(stubborn())
        await asyncio.sleep(0)
        await stopped(child)
        return "carried on"

    task = asyncio.create_task(owner())
    await _steps(2 + steps)
    task.cancel()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_stopped_consumes_what_the_children_raised() -> None:
    reported: list[dict[str, object]] = []
    asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: reported.append(ctx))

    async def fails() -> None:
        raise ValueError("boom")

    failing = asyncio.create_task(fails())
    running = asyncio.create_task(asyncio.Event().wait())
    await asyncio.sleep(0)
    await stopped(failing, running)
    assert running.cancelled()
    del failing, running
    gc.collect()
    assert reported == []  # no "Task exception was never retrieved"
