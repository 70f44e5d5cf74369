"""Per-host gates: how many requests a host gets, how fast, and shared how.

A :class:`HostGate` holds a host's connection limit (:class:`Slots`, which can
shrink while held) and its request rate, slows down when the host says 429/503,
and splits a pull's limits between the processes that share it (:meth:`HostGate.share`).
The HTTP client (:mod:`mirror._http`) keeps one gate per host.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import deque
from collections.abc import AsyncIterator

from ._clock import REAL_CLOCK, Clock
from ._config import HostLimit

__all__ = ["TURN", "TURN_START", "WINDOW", "HostGate", "Slots"]

#: One logger name for all of the HTTP client's lines (the CLI prints it before each).
logger = logging.getLogger("mirror._http")

#: Safety margin on the one-second window: the server counts arrivals, we count
#: departures, and the two clocks see the same requests a few milliseconds apart.
WINDOW = 1.05
#: Members sharing less than one request a second take turns on the wall clock (the
#: same on every machine, through NTP): a turn lasts this long for a pull of one
#: request a second ...
TURN = 1.5
#: ... and its request starts in this first part of it. Two starts in different turns
#: are then at least 1.125 s apart: a second for the rate, the rest for the machines'
#: clocks and the network to disagree by.
TURN_START = 0.25


class Slots:
    """A counting limiter whose size can change while its slots are held.

    :class:`asyncio.Semaphore` cannot shrink. Here a smaller size takes nothing
    back: the holders keep their slots, and no one else gets in until enough of them
    have given theirs back to bring the count under the new size. A larger size lets
    waiters in at once. Waiters are served first come, first served.
    """

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("size must be at least 1")
        self._size = size
        self._held = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def size(self) -> int:
        return self._size

    @property
    def held(self) -> int:
        return self._held

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def resize(self, size: int) -> None:
        if size < 1:
            raise ValueError("size must be at least 1")
        self._size = size
        self._wake()

    async def acquire(self) -> None:
        if self._held < self._size and not self._waiters:
            self._held += 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                # Granted, then cancelled before it could run: pass the slot on.
                self.release()
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        if self._held <= 0:
            raise RuntimeError("Slots released more often than acquired")
        self._held -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self._held < self._size:
            waiter = self._waiters.popleft()
            if waiter.done():
                continue
            self._held += 1
            waiter.set_result(None)

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(self, *exc: object) -> None:
        self.release()


class HostGate:
    """Pace and cap the requests to one host.

    Two limits, both for every request to the host whoever sends it: at most
    ``connections`` requests open at once, and never more than ``rate`` request
    starts in any one-second window. aiolimiter's leaky bucket admits a burst of
    ``rate`` on top of the steady flow, which can put twice ``rate`` into one
    sliding second; a window of the last starts cannot. A window of
    :data:`WINDOW` seconds admits at most ``rate`` starts rounded down (at least
    one), so a fractional rate (50/3) never rounds up into an extra start; starts
    are also spaced at least ``WINDOW/rate`` apart.

    When several processes share a pull, :meth:`share` gives this one its part of a
    limit of scope ``pull``: each member then stays within ``rate/members`` in every
    one-second window, and so the members together within ``rate``. A share below
    one request a second cannot be kept by counting alone (each member's one request
    could fall into the same second); members that know their rank then take turns
    on the wall clock, one request per turn of :data:`TURN` seconds.

    A 429 or 503 halves the effective rate (at most once a second) and, when the
    server sends ``Retry-After``, pauses the host that long; each quiet second
    afterwards gives back a quarter, up to this process's allowance. A cut never
    goes below :meth:`floor`, and never raises the pace either (a host configured
    below one request a second is halved, not lifted to one).
    """

    def __init__(self, limit: HostLimit, key: str = "", *, clock: Clock = REAL_CLOCK) -> None:
        self.limit = limit
        self.key = key
        self.clock = clock
        self._members = 1
        self._rank: int | None = None
        #: The last turn a request started in (see ``_turn_wait``).
        self._turn_used: int | None = None
        self._rate: float | None = limit.rate
        self._connections = Slots(limit.connections)
        self._starts: deque[float] = deque()
        self._pace_lock = asyncio.Lock()
        #: Set (and replaced) when the limits change, to wake a request waiting its turn.
        self._changed = asyncio.Event()
        self._paused_until = 0.0
        self._last_change = 0.0
        self._last_cut = float("-inf")
        #: Pace of an unlimited host when it first asked us to slow down.
        self._before = 0.0

    @property
    def rate(self) -> float | None:
        """The rate in force now (lower than the allowance after throttling)."""
        return self._rate

    @property
    def allowance(self) -> float | None:
        """This process's rate when not throttled: the configured one, or its share of it."""
        if self.limit.rate is None:
            return None
        return self.limit.rate / self._divisor

    @property
    def connections(self) -> int:
        """Connections this process may hold now: the configured number, or its share."""
        return self._connections.size

    @property
    def idle(self) -> int:
        """Connections this process may open now without waiting for one."""
        slots = self._connections
        return max(0, slots.size - slots.held - slots.waiting)

    @property
    def members(self) -> int:
        """How many processes this gate's limits are split between (1 unless shared)."""
        return self._divisor

    @property
    def floor(self) -> float:
        """The lowest rate cuts may reach: 1/s, or half the configured rate below 2/s.

        For a shared host that is the pull's floor, split like its rate.
        """
        return min(1.0, (self.limit.rate or 2.0) / 2) / self._divisor

    @property
    def takes_turns(self) -> bool:
        """Whether requests wait for this member's turns (a ranked share below 1/s)."""
        rate = self.limit.rate
        members = self._divisor
        return self._rank is not None and members > 1 and rate is not None and rate < members

    @property
    def _divisor(self) -> int:
        return self._members if self.limit.scope == "pull" else 1

    def share(self, members: int, rank: int | None = None) -> None:
        """Take this process's part of the host's limits, ``members`` processes sharing them.

        A host of scope ``pull`` then allows ``rate / members`` requests a second and
        ``connections // members`` open connections, but always at least one: with
        more members than connections each member still keeps one, so the pull may
        then hold one connection per member. Scope ``member``: nothing changes.

        ``rank`` (0 to ``members - 1``, a different one for each member, e.g. its
        place among the live members ordered by id) matters only when the share is
        below one request a second: the members then take turns on the wall clock,
        turn ``k`` belonging to rank ``k % members``, so that their requests never
        meet in one second. Without a rank such a member sends one request every
        ``members / rate`` seconds, and the members' requests may meet.

        It applies at once to requests not yet started. Open requests keep their
        connection (no new one opens until the count is under the new share), and the
        starts of the last second count against the new rate. A rate cut after a
        429/503 keeps its proportion to the allowance; recovery climbs back to the
        share, not to the configured rate.
        """
        if members < 1:
            raise ValueError("members must be at least 1")
        if rank is not None and not 0 <= rank < members:
            raise ValueError(f"rank must be from 0 to {members - 1}, got {rank}")
        if self.limit.scope != "pull" or (members, rank) == (self._members, self._rank):
            return
        self._rank = rank
        if members != self._members:
            before = self.allowance
            self._members = members
            self._connections.resize(max(1, self.limit.connections // members))
            after = self.allowance
            if self._rate is not None and before is not None and after is not None:
                cut = min(after, self._rate * after / before)
                self._rate = after if self._rate >= before else cut
        # Whoever waits for a start computed the wait under the old limits.
        self._changed.set()
        self._changed = asyncio.Event()

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one connection to the host, counted as one request start."""
        async with self._connections:
            await self._pace()
            yield

    async def _pace(self) -> None:
        clock = self.clock
        async with self._pace_lock:
            while True:
                now, wall = clock.monotonic(), clock.time()
                wait = self._wait(now, wall)
                if wait <= 0:
                    break
                await clock.wait(self._changed, wait)
            self._started(now, wall)

    def _wait(self, now: float, wall: float) -> float:
        """Seconds from ``now`` until the next request may start (0 or less: now).

        ``now`` is the loop's clock, ``wall`` the wall clock (for turns).
        """
        starts = self._starts
        while starts and starts[0] <= now - WINDOW:
            starts.popleft()
        wait = self._paused_until - now
        rate = self._rate
        if rate is not None:
            # Evenly spaced, not in bursts: a burst queues at the server, and the
            # arrivals it spreads out can crowd into the next second.
            if starts:
                wait = max(wait, starts[-1] + WINDOW / rate - now)
            # Rounded down: the starts of any window stay within a fractional rate.
            allowed = max(1, math.floor(rate))
            if len(starts) >= allowed:
                wait = max(wait, starts[-allowed] + WINDOW - now)
        if self.takes_turns:
            wait = max(wait, self._turn_wait(wall))
        return wait

    def _turn_length(self) -> float:
        """Turns of the whole pull: any ``floor(rate)`` in a row span over a second."""
        rate = self.limit.rate or 1.0
        return TURN / (math.floor(rate) if rate >= 1 else rate)

    def _turn(self, wall: float) -> int:
        # A hair of tolerance: woken at a turn's very start, the division may fall short.
        return math.floor(wall / self._turn_length() + 1e-9)

    def _turn_wait(self, wall: float) -> float:
        """Seconds until this member's next turn starts, or 0 inside an unused one.

        A request starts only in the first :data:`TURN_START` of a turn, so two
        requests of consecutive turns (two members) are never closer than
        ``(1 - TURN_START) * TURN`` seconds, however late in its turn the first began.
        """
        assert self._rank is not None
        length = self._turn_length()
        turn = self._turn(wall)
        ahead = (self._rank - turn) % self._members
        if ahead == 0:
            if turn != self._turn_used and wall - turn * length < TURN_START * length:
                return 0.0
            ahead = self._members
        return (turn + ahead) * length - wall

    def _started(self, now: float, wall: float) -> None:
        self._starts.append(now)
        if self.takes_turns:
            self._turn_used = self._turn(wall)
        self._recover(now)

    def throttled(self, retry_after: float | None) -> None:
        """The host answered 429/503: slow down, and pause if it said for how long.

        Many requests in flight at once hear the same "slow down"; halving once per
        answer would take the rate to the floor on a single burst. So the rate is cut
        at most once per window (the AIMD rule TCP uses per round trip).
        """
        now = self.clock.monotonic()
        if retry_after:
            # Only a server that names a time gets a host-wide pause; a bare 429/503
            # cuts the rate, and the request that got it backs off on its own.
            self._paused_until = max(self._paused_until, now + retry_after)
        if now - self._last_cut < WINDOW:
            return
        recent = sum(1 for t in self._starts if t > now - WINDOW)
        if self._rate is None:
            self._before = max(2.0, float(recent))
        current = self._rate if self._rate is not None else self._before
        self._rate = min(current, max(self.floor, current / 2))
        self._last_cut = self._last_change = now
        logger.info("throttled: rate now %.1f/s, paused %.1fs", self._rate, retry_after or 0.0)

    def _recover(self, now: float) -> None:
        """After each quiet second, grow the rate by a quarter (at least one request/s).

        A host with a configured rate climbs back to this process's allowance; a host
        without one is let go again once it is back at the pace it had when it first
        complained.
        """
        allowance = self.allowance
        if self._rate is None or self._rate == allowance:
            return
        if now - self._last_change < 1.0:
            return
        self._last_change = now
        self._rate += max(1.0 / self._divisor, self._rate / 4)
        if allowance is not None:
            self._rate = min(self._rate, allowance)
        elif self._rate >= self._before:
            self._rate = None
