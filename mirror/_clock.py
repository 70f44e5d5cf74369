"""Time as the engine reads and waits on it, passed in so that it can be replaced.

The host gate's windows, the breaker's probes and outage timing, and the retry
backoff all ask a :class:`Clock` what time it is and how to wait. The product uses
:data:`REAL_CLOCK` (the event loop's clock and the wall clock); a test passes a clock
of its own whose time moves only when every task is waiting for it, so minutes of
rate windows and backoff take milliseconds, and always run the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Protocol

__all__ = ["REAL_CLOCK", "Clock", "RealClock"]


class Clock(Protocol):
    """What the engine needs of time."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (the event loop's clock)."""
        ...

    def time(self) -> float:
        """The wall clock, seconds since the epoch (the same on every machine, by NTP)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds``."""
        ...

    async def wait(self, event: asyncio.Event, within: float | None) -> bool:
        """Wait until ``event`` is set, or at most ``within`` seconds (``None``: no limit);
        whether it was set."""
        ...


class RealClock:
    """The event loop's clock (which ``asyncio`` timeouts also use) and the wall clock."""

    def monotonic(self) -> float:
        try:
            return asyncio.get_running_loop().time()
        except RuntimeError:
            return time.monotonic()

    def time(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def wait(self, event: asyncio.Event, within: float | None) -> bool:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                await event.wait()
        return event.is_set()


REAL_CLOCK: Clock = RealClock()
