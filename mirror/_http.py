"""HTTP for the whole engine: one session, per-host gates, errors mapped to our tree.

This is the only module that imports aiohttp. Sources and the fetcher get an
:class:`Http` and see :class:`Response` objects and :mod:`mirror._exceptions` errors.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from ._config import HostLimit
from ._exceptions import (
    ConnectionFailed,
    HTTPStatusError,
    MirrorError,
    NotConnected,
    RateLimited,
    SourceError,
    TransferError,
)
from ._retry import RetryPolicy, next_delay, parse_retry_after

__all__ = ["HostGate", "Http", "Response", "basic_auth", "host_key", "redact_url"]

logger = logging.getLogger(__name__)
T = TypeVar("T")
#: Query parameters: a mapping, or pairs when a name repeats (EnteroBase only_fields).
Params = Mapping[str, str] | Sequence[tuple[str, str]]

USER_AGENT = "ebi-mirror/0.1"
#: Safety margin on the one-second window: the server counts arrivals, we count
#: departures, and the two clocks see the same requests a few milliseconds apart.
WINDOW = 1.05
#: Answers of JSON cut short before a GET gives up on them (see ``Response.json``).
BAD_JSON_ATTEMPTS = 3
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


class HostGate:
    """Pace and cap the requests to one host.

    Two limits, both for every request to the host whoever sends it: at most
    ``connections`` requests open at once, and never more than ``rate`` request
    starts in any one-second window. aiolimiter's leaky bucket admits a burst of
    ``rate`` on top of the steady flow, which can put twice ``rate`` into one
    sliding second; a window of the last ``rate`` start times cannot. Starts are
    also spaced at least ``1/rate`` apart (with the window's margin).

    A 429 or 503 halves the effective rate (at most once a second) and, when the
    server sends ``Retry-After``, pauses the host that long; each quiet second
    afterwards gives back a quarter, up to the configured rate. A cut never goes
    below :meth:`floor`, and never raises the pace either (a host configured below
    one request a second is halved, not lifted to one).
    """

    def __init__(self, limit: HostLimit, key: str = "") -> None:
        self.limit = limit
        self.key = key
        self._rate: float | None = limit.rate
        self._connections = asyncio.Semaphore(limit.connections)
        self._starts: deque[float] = deque()
        self._pace_lock = asyncio.Lock()
        self._paused_until = 0.0
        self._last_change = 0.0
        self._last_cut = float("-inf")
        #: Pace of an unlimited host when it first asked us to slow down.
        self._before = 0.0

    @property
    def rate(self) -> float | None:
        """The rate in force now (lower than configured after throttling)."""
        return self._rate

    @property
    def floor(self) -> float:
        """The lowest rate cuts may reach: 1/s, or half the configured rate below 2/s."""
        return min(1.0, (self.limit.rate or 2.0) / 2)

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one connection to the host, counted as one request start."""
        async with self._connections:
            await self._pace()
            yield

    async def _pace(self) -> None:
        loop = asyncio.get_running_loop()
        async with self._pace_lock:
            while True:
                now = loop.time()
                while self._starts and self._starts[0] <= now - WINDOW:
                    self._starts.popleft()
                wait = self._paused_until - now
                if self._rate is not None:
                    # Evenly spaced, not in bursts: a burst queues at the server, and
                    # the arrivals it spreads out can crowd into the next second.
                    if self._starts:
                        wait = max(wait, self._starts[-1] + WINDOW / self._rate - now)
                    if len(self._starts) >= max(1, int(self._rate)):
                        wait = max(wait, self._starts[-int(max(1, self._rate))] + WINDOW - now)
                if wait <= 0:
                    break
                await asyncio.sleep(wait)
            self._starts.append(now)
            self._recover(now)

    def throttled(self, retry_after: float | None) -> None:
        """The host answered 429/503: slow down, and pause if it said for how long.

        Many requests in flight at once hear the same "slow down"; halving once per
        answer would take the rate to the floor on a single burst. So the rate is cut
        at most once per window (the AIMD rule TCP uses per round trip).
        """
        now = asyncio.get_running_loop().time()
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

        A host with a configured rate climbs back to it; a host without one is let
        go again once it is back at the pace it had when it first complained.
        """
        if self._rate is None or self._rate == self.limit.rate:
            return
        if now - self._last_change < 1.0:
            return
        self._last_change = now
        self._rate += max(1.0, self._rate / 4)
        if self.limit.rate is not None:
            self._rate = min(self._rate, self.limit.rate)
        elif self._rate >= self._before:
            self._rate = None


@dataclass(slots=True)
class Response:
    """The parts of an HTTP response the engine reads, over aiohttp's."""

    _raw: aiohttp.ClientResponse

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
        with _mapped(self.url):
            return await self._raw.read()

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
        with _mapped(self.url):
            while True:
                chunk, _ = await reader.readchunk()
                if not chunk:
                    return
                yield chunk

    async def lines(self) -> AsyncIterator[str]:
        with _mapped(self.url):
            async for raw in self._raw.content:
                yield raw.decode("utf-8", errors="replace").rstrip("\r\n")


class _DamagedJson(TransferError):
    """A body that starts as JSON and does not parse: likely cut short, worth a retry."""


@contextlib.contextmanager
def _mapped(url: str) -> Any:
    """Translate aiohttp and socket errors into :class:`ConnectionFailed`."""
    try:
        yield
    except MirrorError:
        raise
    except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError) as exc:
        raise ConnectionFailed(
            f"connection dropped mid-body from {redact_url(url)}: {exc}", url=url
        ) from exc
    except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
        reason = type(exc).__name__ if isinstance(exc, TimeoutError) else str(exc)
        raise NotConnected(f"{redact_url(url)}: {reason or type(exc).__name__}", url=url) from exc
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        reason = type(exc).__name__ if isinstance(exc, TimeoutError) else str(exc)
        raise ConnectionFailed(
            f"{redact_url(url)}: {reason or type(exc).__name__}", url=url
        ) from exc


class Http:
    """One aiohttp session plus a :class:`HostGate` per host. Use ``async with``."""

    def __init__(
        self,
        limits: Callable[[str], HostLimit],
        *,
        retry: RetryPolicy | None = None,
        connect_timeout: float = 30.0,
        read_timeout: float = 120.0,
    ) -> None:
        self._limits = limits
        self._gates: dict[str, HostGate] = {}
        self.retry = retry or RetryPolicy()
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=connect_timeout, sock_read=read_timeout
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

    def gate(self, url: str) -> HostGate:
        key = host_key(url)
        gate = self._gates.get(key)
        if gate is None:
            gate = self._gates[key] = HostGate(self._limits(key), key)
        return gate

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
        if auth is not None:
            headers = {**(headers or {}), "Authorization": basic_auth(*auth)}
        async with gate.slot():
            with _mapped(url):
                cm = self._session.request(method, url, headers=headers, params=params, data=data)
                raw = await cm.__aenter__()
            try:
                if raw.status not in expect:
                    await _raise_for(raw, url, gate)
                yield Response(raw)
            finally:
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    await cm.__aexit__(None, None, None)

    async def retrying(
        self, what: str, call: Callable[[], Awaitable[T]], *, policy: RetryPolicy | None = None
    ) -> T:
        """Run ``call`` until it succeeds, retrying retryable errors with backoff."""
        policy = policy or self.retry
        attempt = 0
        while True:
            attempt += 1
            try:
                return await call()
            except TransferError as exc:
                delay = (
                    next_delay(policy, attempt, retry_after=getattr(exc, "retry_after", None))
                    if exc.retryable
                    else None
                )
                if delay is None:
                    raise
                logger.info("%s: %s; retry %d in %.1fs", what, exc, attempt, delay)
                await asyncio.sleep(delay)

    async def get_json(
        self,
        url: str,
        *,
        params: Params | None = None,
        headers: Mapping[str, str] | None = None,
        auth: tuple[str, str] | None = None,
    ) -> Any:
        """GET ``url`` and decode its JSON body, with retries.

        A JSON body cut short is fetched again, but only ``BAD_JSON_ATTEMPTS`` times:
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
                    if damaged >= BAD_JSON_ATTEMPTS:
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
