"""State shared by every emulated host: catalog, faults, log, options, and the app keys."""

from __future__ import annotations

import base64
import binascii
import collections
import time
from dataclasses import dataclass
from http import HTTPStatus

from aiohttp import web

from ._catalog import Catalog
from ._faults import Fault, FaultSet
from ._log import Exchange, RequestLog
from .ega._state import EgaState
from .enterobase._records import Clock, EnterobaseStore
from .webin._state import WebinState

__all__ = [
    "CONTEXT",
    "EXCHANGE",
    "Context",
    "Options",
    "SlidingWindow",
    "basic_credentials",
    "fault_response",
    "status_response",
]


@dataclass(frozen=True, kw_only=True, slots=True)
class Options:
    """Emulator-wide behaviour; faults change single requests, these change all of them."""

    bandwidth: int | None = None
    range_support: bool = True
    portal_rate_limit: int | None = 50
    portal_retry_after: int | None = None
    mgnify_public_links: bool = True
    enterobase_public_links: bool = True
    enterobase_tokens: frozenset[str] = frozenset({"test-token"})
    enterobase_expired_tokens: frozenset[str] = frozenset()
    enterobase_rate_limit: int | None = 3
    # ENA's absolute links (``*_ftp`` values, Browser XML links) name the emulator's
    # own hosts instead of ftp.sra.ebi.ac.uk and www.ebi.ac.uk.
    local_links: bool = False

    def __post_init__(self) -> None:
        if self.bandwidth is not None and self.bandwidth <= 0:
            raise ValueError("bandwidth must be > 0 bytes/s, or None")
        for name in ("portal_rate_limit", "enterobase_rate_limit"):
            limit = getattr(self, name)
            if limit is not None and limit <= 0:
                raise ValueError(f"{name} must be > 0 requests/s, or None")
        if any(not token or ":" in token for token in self.enterobase_tokens):
            # Basic auth splits user:password at the first colon.
            raise ValueError("EnteroBase tokens must be non-empty and contain no ':'")
        if self.portal_retry_after is not None and self.portal_retry_after < 0:
            raise ValueError("portal_retry_after must be >= 0")


class SlidingWindow:
    """At most ``limit`` accepted requests per client in any one-second window.

    ENA: "upper limit at 50 requests per second … rejected with error 'Too Many
    Requests' (HTTP status code 429)", per user IP; EnteroBase: 3 per second, 503
    past it. Rejected requests are not counted, so a client that keeps retrying too
    fast is throttled, not locked out.
    """

    def __init__(self, limit: int, period: float = 1.0) -> None:
        self._limit = limit
        self._period = period
        self._accepted: dict[str, collections.deque[float]] = {}

    def admit(self, client: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        times = self._accepted.setdefault(client, collections.deque())
        while times and now - times[0] >= self._period:
            times.popleft()
        if len(times) >= self._limit:
            return False
        times.append(now)
        return True


class Context:
    """Everything a handler needs, stored once per emulated host app under CONTEXT."""

    def __init__(
        self,
        *,
        catalog: Catalog,
        faults: FaultSet,
        log: RequestLog,
        options: Options,
        clock: Clock | None = None,
        ega: EgaState | None = None,
        webin: WebinState | None = None,
    ) -> None:
        self.catalog = catalog
        self.faults = faults
        self.log = log
        self.options = options
        self.clock = clock or Clock()
        self.enterobase = EnterobaseStore(catalog.enterobase_assemblies)
        self.ega = ega if ega is not None else EgaState(catalog.ega_datasets)
        self.webin = webin if webin is not None else WebinState()
        # Host name -> "scheme://address:port", filled once the sites are bound.
        self.bases: dict[str, str] = {}
        limit = options.portal_rate_limit
        self.portal_window = SlidingWindow(limit) if limit is not None else None
        limit = options.enterobase_rate_limit
        self.enterobase_window = SlidingWindow(limit) if limit is not None else None

    def public_base(self, host: str) -> str:
        """Scheme and authority an absolute link to ``host`` names (``www``, ``ftp``)."""
        if self.options.local_links and host in self.bases:
            return self.bases[host]
        return _PUBLIC_BASES[host]

    def ftp_host(self) -> str:
        """The host part of ``*_ftp`` values: ``ftp.sra.ebi.ac.uk``, or the file host."""
        return self.public_base("ftp").partition("://")[2]


_PUBLIC_BASES = {"www": "https://www.ebi.ac.uk", "ftp": "https://ftp.sra.ebi.ac.uk"}

CONTEXT = web.AppKey("mirror_emulator_context", Context)
EXCHANGE = web.RequestKey("mirror_emulator_exchange", Exchange)


def status_response(status: int, *, retry_after: int | None = None) -> web.Response:
    """A bare error answer, like a proxy or an overloaded server would give."""
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return web.Response(status=status, text=_reason(status), headers=headers)


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def fault_response(fault: Fault) -> web.Response:
    return status_response(fault.status, retry_after=fault.retry_after)


def basic_credentials(header: str | None) -> tuple[str, str] | None:
    """(user, password) of a Basic Authorization header, still URL-encoded if it was."""
    scheme, _, value = (header or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, colon, password = decoded.partition(":")
    return (user, password) if colon and user else None
