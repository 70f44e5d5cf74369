"""produced(): concurrent producers behind one iterator, errors and early exits kept."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from mirror._streams import produced


async def test_items_from_concurrent_producers_all_arrive() -> None:
    async def run(emit: Callable[[int], Awaitable[None]]) -> None:
        async def one(base: int) -> None:
            for i in range(50):
                await emit(base + i)

        async with asyncio.TaskGroup() as tg:
            for base in (0, 100, 200):
                tg.create_task(one(base))

    got = [x async for x in produced(run, buffer=2)]
    assert sorted(got) == [*range(50), *range(100, 150), *range(200, 250)]


async def test_producer_error_reaches_the_consumer_not_a_bystander() -> None:
    async def run(emit: Callable[[int], Awaitable[None]]) -> None:
        await emit(1)
        raise ValueError("archive said no")

    got: list[int] = []

    async def consume() -> None:
        async for x in produced(run):
            got.append(x)
            await asyncio.sleep(0)  # the consumer is busy elsewhere when the error comes

    with pytest.raises(ValueError, match="archive said no"):
        await consume()
    assert got == [1]


async def test_consumer_stopping_early_cancels_the_producers() -> None:
    stopped = asyncio.Event()

    async def run(emit: Callable[[int], Awaitable[None]]) -> None:
        try:
            i = 0
            while True:
                await emit(i)
                i += 1
        finally:
            stopped.set()

    gen = produced(run)
    async for x in gen:
        if x == 3:
            break
    await gen.aclose()
    assert stopped.is_set()
