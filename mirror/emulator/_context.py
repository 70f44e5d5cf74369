"""State shared by every emulated host: catalog, faults, log, file options, the calendar day,
and the app keys; each service keeps its own state under its own key."""

from __future__ import annotations

import base64
import binascii
import collections
import datetime
import time
from http import HTTPStatus
from typing import TYPE_CHECKING

from aiohttp import web

from ._faults import Fault, FaultSet
from ._log import Exchange, RequestLog
from ._options import FilesOptions

if TYPE_CHECKING:
    from ._catalog import Catalog

__all__ = [
    "CONTEXT",
    "EXCHANGE",
    "Clock",
    "Context",
    "SlidingWindow",
    "basic_credentials",
    "fault_response",
    "status_response",
]


class Clock:
    """The emulator's calendar day: what EnteroBase's ``reldate`` counts back from, and
    the date Webin's receipts carry."""

    def __init__(self, today: datetime.date | None = None) -> None:
        self._today = today

    @property
    def today(self) -> datetime.date:
        # Unset: the real UTC date, read each time, so a long run crosses midnight.
        return self._today or datetime.datetime.now(datetime.UTC).date()

    def set(self, today: datetime.date | None) -> None:
        self._today = today


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

    def refusal(
        self, request: web.Request, status: int, *, retry_after: int | None = None
    ) -> web.Response | None:
        """The answer to a request past the limit (logged as a 'rate_limit' fault), or
        None when the request may go on."""
        if self.admit(request.remote or ""):
            return None
        request[EXCHANGE].fault = "rate_limit"
        return status_response(status, retry_after=retry_after)


class Context:
    """Everything a handler needs, stored once per emulated host app under CONTEXT."""

    def __init__(
        self,
        *,
        catalog: Catalog,
        faults: FaultSet,
        log: RequestLog,
        files: FilesOptions | None = None,
        clock: Clock | None = None,
        local_links: bool = False,
    ) -> None:
        self.catalog = catalog
        self.faults = faults
        self.log = log
        self.files = files if files is not None else FilesOptions()
        self.clock = clock or Clock()
        # ENA's absolute links (``*_ftp`` values, Browser XML links) name the emulator's
        # own hosts instead of ftp.sra.ebi.ac.uk and www.ebi.ac.uk.
        self.local_links = local_links
        # Host name -> "scheme://address:port", filled once the sites are bound.
        self.bases: dict[str, str] = {}

    def public_base(self, host: str) -> str:
        """Scheme and authority an absolute link to ``host`` names (``www``, ``ftp``)."""
        if self.local_links and host in self.bases:
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
