"""HTTP for the whole engine: one session, per-host gates, errors mapped to our tree.

With :mod:`mirror._response` the only client code that imports aiohttp. Sources and
the fetcher get an :class:`Http` and see :class:`Response` objects and
:mod:`mirror._exceptions` errors. Host gates live in :mod:`mirror._gate`, breakers in
:mod:`mirror._breaker`, URL helpers in :mod:`mirror._urls`; the names other modules
import from here are re-exported.
"""

from __future__ import annotations

import contextlib
import logging
import re
import string
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import aiohttp
import yarl

from ._breaker import Breaker
from ._clock import REAL_CLOCK, Clock
from ._config import HostLimit, Timeouts
from ._exceptions import (
    ConnectionFailed,
    HTTPStatusError,
    MirrorError,
    RateLimited,
    SourceError,
    UntrustedCertificate,
)
from ._gate import TURN as TURN, TURN_START as TURN_START, WINDOW as WINDOW, HostGate, Slots
from ._response import Response, _DamagedJson, _mapped, _short
from ._retry import Retrying, RetryPolicy, parse_retry_after
from ._tuning import HttpTuning
from ._urls import basic_auth, host_key, redact_url

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
#: Redirects followed for one request; more is a loop (or a chain no archive uses).
MAX_REDIRECTS = 10
#: What a URL already in its encoded form is made of (RFC 3986: unreserved, reserved, %).
_URI_CHARS = frozenset(string.ascii_letters + string.digits + "-._~:/?#[]@!$&'()*+,;=%")
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")


def _target(url: str) -> str | yarl.URL:
    """The URL to send: one already encoded goes byte for byte, others are quoted.

    Left to itself, yarl re-quotes every URL, normalising ``%7E``/``%3D`` in paths
    and ``%2F`` in queries; a signed link (MGnify's private data) names the path it
    was signed for, so a normalised one no longer matches its signature.
    """
    if all(c in _URI_CHARS for c in url) and not _BAD_PERCENT.search(url):
        return yarl.URL(url, encoded=True)
    return url


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
                    _target(url),
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

        loop = Retrying(
            what, policy or self.retry, sleep=self.clock.sleep, uncounted=self.waits_for_host
        )
        return await loop.call(once)

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
