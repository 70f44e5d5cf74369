"""A :class:`mirror._clock.Clock` for tests: time moves only when every task waits on it.

Pass it to ``HostGate``, ``Breaker`` or ``Http`` (``clock=``). Whenever the event loop
has nothing left to run, the clock jumps to the earliest pending deadline and wakes
its sleepers, so a 30-second backoff or a minute of rate windows takes as long as the
code between the waits, and the same run gives the same times every time.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools

__all__ = ["VirtualClock"]

#: Loop iterations the clock lets pass, when the loop's queue cannot be seen, before
#: deciding that every task is waiting.
_SETTLE = 20


class VirtualClock:
    """Virtual monotonic time (from ``start``) and a wall clock ``wall`` at that instant."""

    def __init__(self, start: float = 1000.0, *, wall: float = 1.8e9) -> None:
        self._now = start
        self._wall_offset = wall - start
        self._timers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._driver: asyncio.Task[None] | None = None
        #: Every ``sleep`` asked for, in order (the backoff a test can assert).
        self.slept: list[float] = []

    # -- the Clock protocol

    def monotonic(self) -> float:
        return self._now

    def time(self) -> float:
        return self._now + self._wall_offset

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        await self._timer(self._now + seconds)

    async def wait(self, event: asyncio.Event, within: float | None) -> bool:
        if event.is_set():
            return True
        waiter = asyncio.ensure_future(event.wait())
        timer = self._timer(self._now + within) if within is not None else None
        try:
            await asyncio.wait(
                [f for f in (waiter, timer) if f is not None], return_when="FIRST_COMPLETED"
            )
        finally:
            waiter.cancel()
            if timer is not None:
                timer.cancel()
        return event.is_set()

    # -- for tests

    def advance(self, seconds: float) -> None:
        """Move time on by ``seconds`` at once, waking whoever's deadline it passes."""
        self._now += seconds
        self._fire()

    @property
    def pending(self) -> int:
        """Sleepers not yet woken."""
        return sum(1 for *_, f in self._timers if not f.done())

    # -- the works

    def _timer(self, deadline: float) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        heapq.heappush(self._timers, (deadline, next(self._order), future))
        if self._driver is None or self._driver.done():
            self._driver = loop.create_task(self._drive(), name="virtual-clock")
        return future

    def _fire(self) -> None:
        while self._timers and (self._timers[0][0] <= self._now or self._timers[0][2].done()):
            _, _, future = heapq.heappop(self._timers)
            if not future.done():
                future.set_result(None)

    async def _drive(self) -> None:
        """While anyone sleeps: let every runnable task run, then jump to the next deadline."""
        loop = asyncio.get_running_loop()
        while True:
            await _settle(loop)
            self._fire()  # drops cancelled sleepers
            if not self._timers:
                return
            self._now = max(self._now, self._timers[0][0])
            self._fire()


async def _settle(loop: asyncio.AbstractEventLoop) -> None:
    """Return once no other callback is ready to run (every task waits on something)."""
    ready = getattr(loop, "_ready", None)  # asyncio's own loop; uvloop does not show it
    for _ in range(10_000 if ready is not None else _SETTLE):
        await asyncio.sleep(0)
        if ready is not None and not ready:
            return
