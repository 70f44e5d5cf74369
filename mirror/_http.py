"""HTTP for the whole engine: one session, per-host gates, errors mapped to our tree.

This is the only module that imports aiohttp. Sources and the fetcher get an
:class:`Http` and see :class:`Response` objects and :mod:`mirror._exceptions` errors.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import json
import logging
import math
import ssl
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from ._clock import REAL_CLOCK, Clock
from ._config import HostLimit, Timeouts
from ._exceptions import (
    ConnectionFailed,
    HostDown,
    HTTPStatusError,
    MirrorError,
    NotConnected,
    RateLimited,
    RedirectLoop,
    Retryable,
    SourceError,
    TransferError,
    UntrustedCertificate,
)
from ._retry import RetryPolicy, parse_retry_after, retry_call
from ._tuning import HttpTuning

__all__ = [
    "MAX_REDIRECTS",
    "Breaker",
    "HostGate",
    "Http",
    "Response",
    "Slots",
    "basic_auth",
    "host_key",
    "redact_url",
]

logger = logging.getLogger(__name__)
T = TypeVar("T")
#: Query parameters: a mapping, or pairs when a name repeats (EnteroBase only_fields).
Params = Mapping[str, str] | Sequence[tuple[str, str]]

USER_AGENT = "ebi-mirror/0.1"
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
#: Redirects followed for one request; more is a loop (or a chain no archive uses).
MAX_REDIRECTS = 10
_SECRET_PARAMS = frozenset({"session", "token", "access_token", "password", "pass", "key"})


def basic_auth(user: str, password: str) -> str:
    """An ``Authorization`` value for HTTP Basic (RFC 7617, UTF-8)."""
    raw = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return f"Basic {raw}"


def host_key(url: str) -> str:
    """``host`` or ``host:port`` of ``url``, the key of host limits and gates.

    Spelt as in a URL and in the manifest's ``hosts:``: lower-cased, and an IPv6
    literal in brackets (``[::1]:8080``), which ``urlsplit().hostname`` drops.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{parts.port}" if parts.port else host


def redact_url(url: str) -> str:
    """``url`` with user info and secret query parameters replaced by ``***``."""
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    query = "&".join(
        f"{k}=***" if k.lower() in _SECRET_PARAMS else (f"{k}={v}" if sep else k)
        for k, sep, v in (item.partition("=") for item in parts.query.split("&") if item)
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


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


class Breaker:
    """Stop sending a host requests it cannot answer; fail its files together when it is down.

    Closed (normal): requests flow. After ``breaker_failures`` connection failures
    in a row (refused, reset or no answer before the response, connect timeout) the
    host is *paused*: requests wait, and one at a time goes out as a probe, with a
    growing pause between probes. Any answer (whatever its status) closes it again.
    When the failures have lasted ``down_after`` seconds the host is *down* for the
    rest of the run: every request to it fails at once with :class:`HostDown`, so
    10,000 queued files cost no time instead of a retry budget each.
    """

    def __init__(
        self,
        key: str,
        *,
        down_after: float,
        tuning: HttpTuning | None = None,
        clock: Clock = REAL_CLOCK,
    ) -> None:
        self.key = key
        self.clock = clock
        self.down_after = down_after
        self.tuning = tuning or HttpTuning()
        self.threshold = self.tuning.breaker_failures
        self._failures = 0
        #: When the first request of the current run of failures was sent.
        self._since: float | None = None
        self._why = ""
        self._paused = False
        self._probing = False
        self._next_probe = 0.0
        self._delay = self.tuning.probe_first
        self._down: HostDown | None = None
        self._changed = asyncio.Event()
        #: Bodies that stalled with none arriving whole since, and when the first began.
        self._stalls = 0
        self._stalled_since: float | None = None

    @property
    def paused(self) -> bool:
        """Whether requests to the host now wait for a probe (or fail: host down)."""
        return self._paused or self._down is not None

    @property
    def down(self) -> HostDown | None:
        return self._down

    async def enter(self) -> bool:
        """Wait until a request may go out; ``True`` when it goes as the probe.

        Raises :class:`HostDown` once the host has been given up on.
        """
        while True:
            if self._down is not None:
                raise HostDown(str(self._down), host=self.key, outage=self._down.outage)
            if not self._paused:
                return False
            now = self.clock.monotonic()
            if not self._probing and now >= self._next_probe:
                self._probing = True
                return True
            wait = None if self._probing else self._next_probe - now
            await self.clock.wait(self._changed, wait)

    def answered(self, probe: bool) -> None:
        """The host answered (any status): it is up."""
        was_paused = self._paused
        self._failures = 0
        self._since = None
        self._paused = self._probing = False
        self._delay = self.tuning.probe_first
        if was_paused:
            logger.info("%s answers again: resuming", self.key)
            self._notify()

    def failed(self, exc: ConnectionFailed, started: float, probe: bool) -> None:
        """A request sent at ``started`` got no answer because of ``exc``."""
        if self._down is not None:
            return
        now = self.clock.monotonic()
        self._failures += 1
        if self._since is None:
            self._since = started
        self._why = _why(exc)
        if probe:
            self._probing = False
            self._delay = min(self.tuning.probe_cap, self._delay * 2)
            self._next_probe = now + self._delay
        elif not self._paused and self._failures >= self.threshold:
            self._paused = True
            self._next_probe = now + self._delay
            logger.warning(
                "%s: %s (%d times in a row): pausing the host, probing it one request at a time",
                self.key,
                self._why,
                self._failures,
            )
        if self._paused and now - self._since >= self.down_after:
            self._give_up(f"{self.key}: {self._why} for {now - self._since:.0f} s")
        self._notify()

    def stalled(self, started: float) -> None:
        """A body the host began to send (request sent at ``started``) stopped arriving.

        The host answers, so there is nothing to probe; but when no body has arrived
        whole for ``down_after`` seconds, every file's retries would only wait out the
        read timeout again: give up on the host as for failed connections.
        """
        if self._down is not None:
            return
        now = self.clock.monotonic()
        self._stalls += 1
        if self._stalled_since is None:
            self._stalled_since = started
        if self._stalls >= self.threshold and now - self._stalled_since >= self.down_after:
            self._give_up(
                f"{self.key}: every answer stalled mid-body for {now - self._stalled_since:.0f} s"
            )
            self._notify()

    def finished(self) -> None:
        """A body arrived whole."""
        self._stalls = 0
        self._stalled_since = None

    def condemn(self, exc: UntrustedCertificate) -> HostDown:
        """The host cannot be trusted: every request to it fails as ``exc`` did.

        Its certificate will not verify on the next request either; one line for all
        of its files, and no more handshakes with it this run.
        """
        if self._down is None:
            self._down = HostDown(str(exc), host=self.key, outage=str(exc))
            self._notify()
        # A new error each time: one exception object raised in several tasks would
        # collect all of their tracebacks.
        return HostDown(str(self._down), host=self.key, outage=self._down.outage, url=exc.url)

    def _give_up(self, outage: str) -> None:
        self._down = HostDown(f"{outage}; not tried again this run", host=self.key, outage=outage)
        logger.warning("%s: giving up on the host for this run", outage)

    def release(self, probe: bool) -> None:
        """A request ended without telling whether the host is up (cancelled, say)."""
        if probe:
            self._probing = False
            self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()


def _why(exc: ConnectionFailed) -> str:
    return exc.why or "connection failed"


@dataclass(slots=True)
class Response:
    """The parts of an HTTP response the engine reads, over aiohttp's."""

    _raw: aiohttp.ClientResponse
    _timeouts: Timeouts | None = None
    _breaker: Breaker | None = None
    #: When the request was sent (loop time), for the breaker.
    _started: float = 0.0

    @property
    def status(self) -> int:
        return self._raw.status

    @property
    def headers(self) -> Mapping[str, str]:
        return self._raw.headers

    @property
    def url(self) -> str:
        return str(self._raw.url)

    async def read(self) -> bytes:
        with self._body():
            body = await self._raw.read()
        self._finished()
        return body

    async def text(self) -> str:
        return (await self.read()).decode("utf-8", errors="replace")

    async def json(self) -> Any:
        """The body as JSON (``None`` when empty).

        A body that starts as JSON but does not parse was most likely cut short on the
        way: :class:`TransferError`, worth another try. Anything else (an HTML page, a
        proxy's notice) is what the server chose to send, and sending the same request
        again a second later gets the same: :class:`SourceError`, at once, naming the
        URL and the content type.
        """
        body = await self.read()
        try:
            return json.loads(body) if body.strip() else None
        except ValueError as exc:
            shown = redact_url(self.url)
            kind = self.headers.get("Content-Type") or "no Content-Type"
            if body.lstrip()[:1] in (b"{", b"[") and "html" not in kind.lower():
                raise _DamagedJson(
                    f"{shown}: JSON cut short or damaged ({len(body)} bytes, {exc})", url=self.url
                ) from exc
            start = _short(body[:200].decode("utf-8", errors="replace"))
            raise SourceError(f"{shown}: expected JSON, got {kind}: {start!r}") from exc

    async def chunks(self) -> AsyncIterator[bytes]:
        """Body bytes as they arrive, in whatever sizes the socket gives.

        ``readchunk`` hands over aiohttp's buffered pieces one by one, where
        ``readany`` would first join them (one more copy of every byte).
        """
        reader = self._raw.content
        with self._body():
            while True:
                chunk, _ = await reader.readchunk()
                if not chunk:
                    break
                yield chunk
        self._finished()

    async def lines(self) -> AsyncIterator[str]:
        with self._body():
            async for raw in self._raw.content:
                yield raw.decode("utf-8", errors="replace").rstrip("\r\n")
        self._finished()

    @contextlib.contextmanager
    def _body(self) -> Iterator[None]:
        """Errors mapped as for a body; a stalled or dropped one is told to the breaker."""
        try:
            with _mapped(self.url, self._timeouts, body=True):
                yield
        except ConnectionFailed as exc:
            if self._breaker is not None and exc.why in _BODY_FAILURES:
                self._breaker.stalled(self._started)
            raise

    def _finished(self) -> None:
        if self._breaker is not None:
            self._breaker.finished()


class _DamagedJson(TransferError, Retryable):
    """A body that starts as JSON and does not parse: likely cut short, worth a retry."""


#: Why-texts of a body that stopped arriving (see ``_mapped``).
_BODY_FAILURES = frozenset({"stalled", "connection dropped mid-body"})


@contextlib.contextmanager
def _mapped(url: str, timeouts: Timeouts | None = None, *, body: bool = False) -> Iterator[None]:
    """Translate aiohttp and socket errors into our tree, each as one line.

    ``body``: the answer has begun, so a timeout is a stalled body, not a server that
    never answered.
    """
    shown = redact_url(url)
    try:
        yield
    except MirrorError:
        raise
    except aiohttp.TooManyRedirects as exc:
        where = ""
        if exc.history:
            last = exc.history[-1]
            target = last.headers.get("Location", "")
            where = f" (the last from {redact_url(str(last.url))} to {redact_url(target)})"
        raise RedirectLoop(
            f"{shown}: redirect loop: still redirected after {len(exc.history)} hops{where}",
            url=url,
        ) from exc
    except aiohttp.ClientConnectorCertificateError as exc:
        cert = exc.certificate_error
        detail = str(cert)
        if isinstance(cert, ssl.SSLCertVerificationError) and cert.verify_message:
            detail = cert.verify_message
        host = host_key(url)
        raise UntrustedCertificate(
            f"{host}: TLS certificate did not verify ({detail}); if {host} uses a private CA, "
            "set SSL_CERT_FILE to a PEM file holding that CA",
            url=url,
        ) from exc
    except aiohttp.ConnectionTimeoutError as exc:
        waited = f" within {timeouts.connect:g} s" if timeouts else ""
        raise NotConnected(
            f"{shown}: no connection{waited} (connect timeout)", url=url, why="connect timed out"
        ) from exc
    except aiohttp.ClientConnectorError as exc:
        if exc.os_error.errno == errno.ECONNREFUSED:
            why = "connection refused"
        else:
            why = exc.os_error.strerror or str(exc) or type(exc).__name__
        raise NotConnected(f"{shown}: {why}", url=url, why=why) from exc
    except (aiohttp.ServerTimeoutError, TimeoutError) as exc:
        waited = f"{timeouts.read:g} s" if timeouts else "too long"
        if body:
            message, why = f"{shown}: body stalled: no bytes for {waited} (read timeout)", "stalled"
        else:
            message, why = f"{shown}: no answer for {waited} (read timeout)", "no answer"
        raise ConnectionFailed(message, url=url, why=why) from exc
    except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError) as exc:
        if body:
            message = f"connection dropped mid-body from {shown}: {exc}"
            why = "connection dropped mid-body"
        else:
            message = f"{shown}: connection closed before an answer"
            why = "connection closed before an answer"
        raise ConnectionFailed(message, url=url, why=why) from exc
    except (aiohttp.ClientError, OSError) as exc:
        if isinstance(exc, ConnectionResetError):
            why = "connection reset"
        else:
            why = str(exc) or type(exc).__name__
        raise ConnectionFailed(f"{shown}: {why}", url=url, why=why) from exc


class Http:
    """One aiohttp session plus a :class:`HostGate` and a :class:`Breaker` per host.

    Use ``async with``.
    """

    def __init__(
        self,
        limits: Callable[[str], HostLimit],
        *,
        retry: RetryPolicy | None = None,
        timeouts: Timeouts | None = None,
        tuning: HttpTuning | None = None,
        clock: Clock = REAL_CLOCK,
    ) -> None:
        self._limits = limits
        self.tuning = tuning or HttpTuning()
        #: What the gates, breakers and retry waits read the time from and sleep on.
        self.clock = clock
        self._gates: dict[str, HostGate] = {}
        self._members = 1
        self._rank: int | None = None
        self._breakers: dict[str, Breaker] = {}
        self.retry = retry or RetryPolicy()
        self.timeouts = timeouts or Timeouts()
        # No total: a large file takes hours. sock_read bounds every wait for bytes, the
        # status line included, so a hung server or a stalled body is noticed.
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=self.timeouts.connect, sock_read=self.timeouts.read
        )
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Http:
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, ttl_dns_cache=300)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=self._timeout,
            # Never decode in transit: a .gz served with Content-Encoding: gzip would be
            # unzipped by the client and then fail its MD5 (pip network/utils.py).
            auto_decompress=False,
            headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"},
            read_bufsize=1 << 20,
            raise_for_status=False,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def members(self) -> int:
        """How many processes share the pull's host limits (see :meth:`share`)."""
        return self._members

    def share(self, members: int, rank: int | None = None) -> None:
        """Split every host limit of scope ``pull`` between ``members`` processes.

        Each then allows ``rate / members`` requests a second and ``connections //
        members`` connections, at least one (see :meth:`HostGate.share`, also for
        ``rank``, this member's place among them); hosts of scope ``member`` keep
        their full limits. Called again whenever the live members change, up or
        down; the same numbers again change nothing. Gates made later start shared.
        """
        if members < 1:
            raise ValueError("members must be at least 1")
        if rank is not None and not 0 <= rank < members:
            raise ValueError(f"rank must be from 0 to {members - 1}, got {rank}")
        if (members, rank) == (self._members, self._rank):
            return
        logger.debug("host limits shared by %d members (was %d)", members, self._members)
        self._members, self._rank = members, rank
        for gate in self._gates.values():
            gate.share(members, rank)

    def gate(self, url: str) -> HostGate:
        key = host_key(url)
        gate = self._gates.get(key)
        if gate is None:
            gate = self._gates[key] = HostGate(self._limits(key), key, clock=self.clock)
            gate.share(self._members, self._rank)
        return gate

    def breaker(self, url: str) -> Breaker:
        key = host_key(url)
        breaker = self._breakers.get(key)
        if breaker is None:
            breaker = self._breakers[key] = Breaker(
                key, down_after=self.timeouts.host_down, tuning=self.tuning, clock=self.clock
            )
        return breaker

    def waits_for_host(self, exc: MirrorError) -> bool:
        """Whether ``exc`` was a connection failure to a host that is now paused.

        Its request need not count against a retry budget: the next one waits for the
        host's probe, and fails with :class:`HostDown` if the host stays down.
        """
        return isinstance(exc, ConnectionFailed) and bool(exc.url) and self.breaker(exc.url).paused

    @contextlib.asynccontextmanager
    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        params: Params | None = None,
        data: Mapping[str, str] | bytes | None = None,
        auth: tuple[str, str] | None = None,
        expect: tuple[int, ...] = (200,),
    ) -> AsyncIterator[Response]:
        """One request through the host's gate; statuses outside ``expect`` raise.

        The connection slot is held until the body has been read, so a host's
        ``connections`` limit counts streams, not just request starts.
        """
        if self._session is None:
            raise RuntimeError("Http used outside 'async with'")
        gate = self.gate(url)
        breaker = self.breaker(url)
        if auth is not None:
            headers = {**(headers or {}), "Authorization": basic_auth(*auth)}
        probe = await breaker.enter()
        told = False
        try:
            async with gate.slot():
                started = self.clock.monotonic()
                cm = self._session.request(
                    method,
                    url,
                    headers=headers,
                    params=params,
                    data=data,
                    max_redirects=MAX_REDIRECTS,
                )
                try:
                    with _mapped(url, self.timeouts):
                        raw = await cm.__aenter__()
                except ConnectionFailed as exc:
                    breaker.failed(exc, started, probe)
                    told = True
                    raise
                except UntrustedCertificate as exc:
                    raise breaker.condemn(exc) from exc
                breaker.answered(probe)
                told = True
                try:
                    if raw.status not in expect:
                        await _raise_for(raw, url, gate)
                    yield Response(raw, self.timeouts, breaker, started)
                finally:
                    with contextlib.suppress(aiohttp.ClientError, OSError):
                        await cm.__aexit__(None, None, None)
        finally:
            if not told:
                breaker.release(probe)

    async def retrying(
        self, what: str, call: Callable[[], Awaitable[T]], *, policy: RetryPolicy | None = None
    ) -> T:
        """Run ``call`` until it succeeds, retrying :class:`Retryable` errors with backoff.

        A connection failure to a host its breaker has paused does not count: the next
        request waits for the host's probe (and fails with :class:`HostDown` if it stays
        down).
        """

        async def once(_previous: MirrorError | None) -> T:
            return await call()

        return await retry_call(
            what, once, policy or self.retry, sleep=self.clock.sleep, uncounted=self.waits_for_host
        )

    async def get_json(
        self,
        url: str,
        *,
        params: Params | None = None,
        headers: Mapping[str, str] | None = None,
        auth: tuple[str, str] | None = None,
    ) -> Any:
        """GET ``url`` and decode its JSON body, with retries.

        A JSON body cut short is fetched again, but only ``bad_json_attempts`` times:
        a server that keeps sending broken JSON is not going to stop within the
        minutes the full retry budget lasts.
        """
        damaged = 0

        async def once() -> Any:
            nonlocal damaged
            async with self.request("GET", url, params=params, headers=headers, auth=auth) as r:
                try:
                    return await r.json()
                except _DamagedJson as exc:
                    damaged += 1
                    if damaged >= self.tuning.bad_json_attempts:
                        raise SourceError(f"{exc}; {damaged} times, giving up") from exc
                    raise

        return await self.retrying(redact_url(url), once)


async def _raise_for(raw: aiohttp.ClientResponse, url: str, gate: HostGate) -> None:
    try:
        body = (await raw.content.read(2048)).decode("utf-8", errors="replace")
    except (aiohttp.ClientError, OSError, TimeoutError):
        body = ""
    detail = _short(body) or raw.reason or ""
    shown = redact_url(url)
    said = f"{shown}: HTTP {raw.status}" + (f": {detail}" if detail else "")
    if raw.status in (429, 503):
        retry_after = parse_retry_after(raw.headers.get("Retry-After"))
        gate.throttled(retry_after)
        raise RateLimited(
            raw.status,
            said,
            url=url,
            retry_after=retry_after,
        )
    raise HTTPStatusError(raw.status, said, url=url)


def _short(body: str) -> str:
    """A server's error body as one short line (JSON ``message`` when there is one)."""
    text = body.strip()
    if text.startswith("{"):
        try:
            doc = json.loads(text)
        except ValueError:
            doc = None
        if isinstance(doc, dict):
            for key in ("message", "error_description", "error", "detail"):
                if isinstance(doc.get(key), str):
                    text = doc[key]
                    break
            else:
                # JSON:API (MGnify): {"errors": [{"detail": "Select a valid choice. …"}]}
                details = [
                    str(e["detail"])
                    for e in doc.get("errors") or ()
                    if isinstance(e, dict) and e.get("detail")
                ]
                if details:
                    text = "; ".join(details)
    text = " ".join(text.split())
    return text[:200] + ("…" if len(text) > 200 else "")
