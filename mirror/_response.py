"""HTTP responses and the mapping of aiohttp and socket errors into our tree.

A :class:`Response` wraps aiohttp's, maps errors while its body is read and tells
the host's breaker when a body stalls. ``_mapped`` turns every aiohttp or socket
error into one :mod:`mirror._exceptions` error of one line. With :mod:`mirror._http`
this is the only client code that imports aiohttp.
"""

from __future__ import annotations

import contextlib
import errno
import json
import ssl
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from ._breaker import Breaker
from ._config import Timeouts
from ._exceptions import (
    ConnectionFailed,
    MirrorError,
    NotConnected,
    RedirectLoop,
    Retryable,
    SourceError,
    TransferError,
    UntrustedCertificate,
)
from ._urls import host_key, redact_url

__all__ = ["Response"]


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

    async def chunks(self) -> AsyncGenerator[bytes, None]:
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
