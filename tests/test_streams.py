"""produced(): concurrent producers behind one iterator, errors and early exits kept;
fan_out(): a listing's items worked on a few at a time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from mirror._streams import fan_out, produced


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


async def test_fan_out_works_every_item_never_more_than_at_once() -> None:
    running, most, done = 0, 0, []

    async def items() -> AsyncIterator[int]:
        for i in range(40):
            yield i

    async def work(i: int) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        for _ in range(i % 3 + 1):  # some take longer than others
            await asyncio.sleep(0)
        done.append(i)
        running -= 1

    await fan_out(items(), work, at_once=4, backlog=2)
    assert sorted(done) == list(range(40))
    assert most == 4


async def test_fan_out_error_stops_the_listing_and_is_raised() -> None:
    closed = asyncio.Event()
    listed = []

    async def items() -> AsyncIterator[int]:
        try:
            for i in range(1000):
                listed.append(i)
                yield i
        finally:
            closed.set()

    async def work(i: int) -> None:
        if i == 5:
            raise ValueError("analysis 5 is broken")
        await asyncio.sleep(0)

    with pytest.raises(ExceptionGroup) as caught:
        await fan_out(items(), work, at_once=2, backlog=3)
    assert caught.group_contains(ValueError, match="analysis 5 is broken")
    assert closed.is_set()
    assert len(listed) < 20
