"""HostGate: the rate bound holds in every sliding second, and throttling slows down."""

from __future__ import annotations

import asyncio
import itertools

from mirror._config import HostLimit
from mirror._http import WINDOW, HostGate


async def test_never_more_than_rate_in_any_window() -> None:
    gate = HostGate(HostLimit(rate=40, connections=64))
    loop = asyncio.get_running_loop()
    starts: list[float] = []

    async def one() -> None:
        async with gate.slot():
            starts.append(loop.time())

    await asyncio.gather(*(one() for _ in range(100)))
    starts.sort()
    assert len(starts) == 100
    # Every run of 41 consecutive starts spans more than one second.
    for i in range(len(starts) - 40):
        assert starts[i + 40] - starts[i] >= 1.0
    # Evenly spaced within the window, never in bursts.
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert min(gaps) >= WINDOW / 40 - 0.002


async def test_connection_cap() -> None:
    gate = HostGate(HostLimit(connections=3))
    inside = peak = 0
    release = asyncio.Event()
    three_in = asyncio.Event()

    async def one() -> None:
        nonlocal inside, peak
        async with gate.slot():
            inside += 1
            peak = max(peak, inside)
            if inside == 3:
                three_in.set()
            await release.wait()
            inside -= 1

    tasks = [asyncio.create_task(one()) for _ in range(10)]
    await three_in.wait()
    # Give the other seven every chance to get in (they must not).
    for _ in range(20):
        await asyncio.sleep(0)
    assert peak == 3
    release.set()
    await asyncio.gather(*tasks)


async def test_throttling_halves_the_rate_and_pauses() -> None:
    gate = HostGate(HostLimit(rate=20))
    loop = asyncio.get_running_loop()
    async with gate.slot():
        pass
    gate.throttled(retry_after=0.3)
    assert gate.rate == 10
    before = loop.time()
    async with gate.slot():
        after = loop.time()
    assert after - before >= 0.29


async def test_unlimited_host_gets_a_rate_after_a_429() -> None:
    gate = HostGate(HostLimit())
    for _ in range(10):
        async with gate.slot():
            pass
    assert gate.rate is None
    gate.throttled(retry_after=None)
    assert gate.rate == 5
    gate.throttled(retry_after=None)
    assert gate.rate == 5  # the same burst's answers cut once, not once each
    assert WINDOW > 1.0
