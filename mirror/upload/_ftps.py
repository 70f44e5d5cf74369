"""A thin asyncio client for explicit FTPS: what uploading to ENA's Webin area needs.

Why not aioftp: its data connections are new TLS sessions (``open_connection`` with the
same ``SSLContext``), and asyncio's ``create_connection``/``start_tls`` take no TLS
session to resume. ENA's upload host is vsftpd (research notes, 3.1), whose
``require_ssl_reuse`` refuses a data connection that does not resume the control
connection's session (``522 SSL connection failed: session reuse required``), which is
why ena-upload-cli subclasses ``ftplib.FTP_TLS`` to pass ``session=``. asyncio does call
``SSLContext.wrap_bio`` for every TLS connection (the stdlib loop and uvloop alike), so
a context whose ``wrap_bio`` hands the control connection's session to the data
connection gets the reuse with plain asyncio streams: no thread per transfer, and
cancellation and timeouts work as for every other connection of the engine.

The subset spoken: AUTH TLS, USER/PASS, PBSZ 0, PROT P, TYPE I, SIZE, MKD, REST, STOR,
RETR, EPSV (PASV when refused), QUIT. Passive addresses are ignored in favour of the
control connection's host, as webin-cli does (``setRemoteVerificationEnabled(false)``):
a server behind NAT announces an address the client cannot reach.

Errors are the engine's: a dropped or timed-out connection is ``ConnectionFailed``
(retryable), a 4xx reply ``FtpTransient`` (retryable), a 5xx ``FtpRefused``, a refused
login ``CredentialsError``. The password is sent once, in ``PASS``, and appears in no
message: replies are quoted, commands never.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from .._credentials import Secret
from .._exceptions import (
    ConnectionFailed,
    CredentialsError,
    FtpRefused,
    FtpTransient,
    NotConnected,
    UntrustedCertificate,
)

__all__ = ["Endpoint", "FtpsClient", "Reply", "SessionContext", "parse_endpoint"]

log = logging.getLogger(__name__)

#: Bytes per write on a data connection: large enough that the TLS layer and the loop
#: are not the cost, small enough that progress moves smoothly.
BLOCK = 1 << 20


@dataclass(frozen=True, kw_only=True, slots=True)
class Endpoint:
    """Where the upload area is: ``ftps://host[:port]``."""

    host: str
    port: int = 21

    @property
    def url(self) -> str:
        return f"ftps://{self.host}:{self.port}"


def parse_endpoint(url: str) -> Endpoint:
    """``ftps://host[:port]`` (or ``ftp://``: the client speaks TLS all the same)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url if "://" in url else f"ftps://{url}")
    if parts.scheme not in ("ftps", "ftp") or not parts.hostname:
        raise ValueError(f"{url!r} is not an ftps://host[:port] URL")
    if parts.username or parts.password:
        raise ValueError("put no user name or password in the URL: set WEBIN_USERNAME/PASSWORD")
    if parts.path not in ("", "/"):
        raise ValueError(f"{url!r}: give the server only; the directory is --to DIR")
    return Endpoint(host=parts.hostname, port=parts.port or 21)


class SessionContext(ssl.SSLContext):
    """An ``SSLContext`` whose next TLS connections resume ``session``.

    One per FTPS client: a session can only be resumed by the context that made it, and
    the data connections of one client follow one another, never overlap.
    """

    session: ssl.SSLSession | None = None

    def wrap_bio(self, *args: Any, **kwargs: Any) -> ssl.SSLObject:
        if kwargs.get("session") is None and self.session is not None:
            kwargs["session"] = self.session
        return super().wrap_bio(*args, **kwargs)


def _context() -> SessionContext:
    # As ssl.create_default_context(): the system store, or SSL_CERT_FILE / SSL_CERT_DIR
    # (OpenSSL reads them), as the HTTP side trusts; verification stays on.
    ctx = SessionContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
    return ctx


@dataclass(frozen=True, slots=True)
class Reply:
    code: int
    text: str

    def __str__(self) -> str:
        return f"{self.code} {self.text}"


def _why(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__


_EPSV = re.compile(r"\(\|\|\|(\d+)\|\)")
_PASV = re.compile(r"(\d+),(\d+),(\d+),(\d+),(\d+),(\d+)")


@dataclass(kw_only=True)
class FtpsClient:
    """One logged-in control connection. Use :meth:`open` as an async context manager."""

    endpoint: Endpoint
    user: str
    password: Secret = field(repr=False)
    connect_timeout: float = 15.0
    read_timeout: float = 60.0
    _reader: asyncio.StreamReader | None = field(default=None, init=False, repr=False)
    _writer: asyncio.StreamWriter | None = field(default=None, init=False, repr=False)
    _ctx: SessionContext = field(default_factory=_context, init=False, repr=False)

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls,
        endpoint: Endpoint,
        user: str,
        password: Secret,
        *,
        connect_timeout: float = 15.0,
        read_timeout: float = 60.0,
    ) -> AsyncIterator[FtpsClient]:
        client = cls(
            endpoint=endpoint,
            user=user,
            password=password,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
        )
        try:
            await client._login()
            yield client
        finally:
            await client._close()

    # -- control connection --------------------------------------------------------------

    async def _login(self) -> None:
        host, port = self.endpoint.host, self.endpoint.port
        try:
            async with asyncio.timeout(self.connect_timeout):
                self._reader, self._writer = await asyncio.open_connection(host, port)
        except (OSError, TimeoutError) as exc:
            raise NotConnected(
                f"cannot connect to {self.endpoint.url}: {_why(exc)}",
                url=self.endpoint.url,
                why=_why(exc),
            ) from exc
        await self._expect(await self._reply(), 220)
        await self._expect(await self.command("AUTH TLS"), 234)
        try:
            async with asyncio.timeout(self.connect_timeout):
                await self._writer.start_tls(self._ctx, server_hostname=host)
        except ssl.SSLCertVerificationError as exc:
            raise UntrustedCertificate(
                f"{self.endpoint.url}: TLS certificate not trusted: {exc.verify_message}",
                url=self.endpoint.url,
            ) from exc
        except (OSError, TimeoutError) as exc:
            raise ConnectionFailed(
                f"{self.endpoint.url}: TLS handshake failed: {_why(exc)}",
                url=self.endpoint.url,
            ) from exc
        reply = await self.command(f"USER {self.user}")
        if reply.code == 331:
            reply = await self._send(f"PASS {self.password.value}", shown="PASS ***")
        if reply.code == 530:  # "Login incorrect"; a 421 (too many connections) is retried
            raise CredentialsError(
                f"{self.endpoint.url} refused the login of {self.user!r}: {reply}",
                hint="check WEBIN_USERNAME (Webin-N) and WEBIN_PASSWORD",
            )
        await self._expect(reply, 230)
        await self._expect(await self.command("PBSZ 0"), 200)
        await self._expect(await self.command("PROT P"), 200)
        await self._expect(await self.command("TYPE I"), 200)
        self._remember_session()

    def _remember_session(self) -> None:
        # TLS 1.3 hands out its session ticket after the handshake, with the first reply
        # that follows it: read the session once the login exchange is over.
        assert self._writer is not None
        obj = self._writer.get_extra_info("ssl_object")
        if isinstance(obj, ssl.SSLObject) and obj.session is not None:
            self._ctx.session = obj.session

    async def _close(self) -> None:
        writer, self._writer = self._writer, None
        if writer is None:
            return
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2):
                writer.write(b"QUIT\r\n")
                await writer.drain()
                await self._reply()
        writer.close()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2):
                await writer.wait_closed()

    async def command(self, line: str) -> Reply:
        """Send ``line`` and read the reply (never used for the password)."""
        return await self._send(line, shown=line)

    async def _send(self, line: str, *, shown: str) -> Reply:
        if self._writer is None:
            raise ConnectionFailed(f"{self.endpoint.url}: not connected", url=self.endpoint.url)
        log.debug("ftps %s: %s", self.endpoint.url, shown)
        try:
            self._writer.write(line.encode("utf-8") + b"\r\n")
            async with asyncio.timeout(self.read_timeout):
                await self._writer.drain()
        except (OSError, TimeoutError) as exc:
            raise self._dropped(shown, exc) from exc
        return await self._reply(shown)

    async def _reply(self, after: str = "the greeting") -> Reply:
        assert self._reader is not None
        try:
            async with asyncio.timeout(self.read_timeout):
                first = await self._reader.readline()
                if not first:
                    raise ConnectionResetError("the server closed the control connection")
                line = first.decode("utf-8", "replace").rstrip("\r\n")
                lines = [line]
                if len(line) > 3 and line[3] == "-":  # multi-line: until "NNN " again
                    end = line[:3] + " "
                    while not line.startswith(end):
                        raw = await self._reader.readline()
                        if not raw:
                            raise ConnectionResetError("the server closed the control connection")
                        line = raw.decode("utf-8", "replace").rstrip("\r\n")
                        lines.append(line)
        except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
            raise self._dropped(after, exc) from exc
        code = int(lines[0][:3]) if lines[0][:3].isdigit() else 0
        text = " ".join(x[4:] for x in lines).strip()
        log.debug("ftps %s: %s %s", self.endpoint.url, code, text)
        return Reply(code, text)

    def _dropped(self, after: str, exc: BaseException) -> ConnectionFailed:
        why = _why(exc)
        return ConnectionFailed(
            f"{self.endpoint.url}: connection lost after {after.split(' ')[0]}: {why}",
            url=self.endpoint.url,
            why=why,
        )

    async def _expect(self, reply: Reply, *codes: int, path: str = "") -> Reply:
        if reply.code in codes:
            return reply
        where = f"{self.endpoint.url}{'/' + path if path else ''}"
        if 400 <= reply.code < 500:
            raise FtpTransient(reply.code, f"{where}: {reply}", url=where)
        raise FtpRefused(reply.code, f"{where}: {reply}", url=where)

    # -- what an upload asks -------------------------------------------------------------

    async def size(self, path: str) -> int | None:
        """The remote file's size; ``None`` when there is none."""
        reply = await self.command(f"SIZE {path}")
        if reply.code == 213:
            return int(reply.text.split()[-1])
        if reply.code == 550:
            return None
        await self._expect(reply, 213, path=path)
        return None

    async def makedirs(self, directory: str) -> None:
        """Create ``directory`` and each missing level above it (MKD, as webin-cli)."""
        parts = [p for p in directory.split("/") if p]
        for i in range(1, len(parts) + 1):
            reply = await self.command(f"MKD {'/'.join(parts[:i])}")
            # 550 when it exists already: vsftpd says "Create directory operation failed".
            if reply.code not in (257, 550):
                await self._expect(reply, 257, path="/".join(parts[:i]))

    async def store(
        self,
        path: str,
        blocks: Callable[[], Awaitable[bytes]],
        *,
        offset: int = 0,
        sent: Callable[[int], None] = lambda n: None,
    ) -> None:
        """Upload ``path`` from ``offset`` (REST+STOR), its bytes from ``blocks()`` until it
        returns ``b""``; ``sent(n)`` after each block is handed to the connection."""
        host, port = await self._passive()
        if offset:
            await self._expect(await self.command(f"REST {offset}"), 350, path=path)
        async with self._data(host, port, f"STOR {path}", path) as (_, writer):
            while block := await blocks():
                writer.write(block)
                await writer.drain()
                sent(len(block))

    async def retrieve(self, path: str, limit: int = 1 << 16) -> bytes:
        """A small remote file's bytes (a ``.md5`` sidecar), at most ``limit``."""
        host, port = await self._passive()
        chunks: list[bytes] = []
        async with self._data(host, port, f"RETR {path}", path) as (reader, _):
            while len(got := b"".join(chunks)) <= limit:
                chunk = await reader.read(1 << 16)
                if not chunk:
                    break
                chunks.append(chunk)
        return got[:limit]

    async def _passive(self) -> tuple[str, int]:
        reply = await self.command("EPSV")
        if reply.code == 229 and (m := _EPSV.search(reply.text)):
            return self.endpoint.host, int(m.group(1))
        reply = await self._expect(await self.command("PASV"), 227)
        if not (m := _PASV.search(reply.text)):
            raise FtpRefused(227, f"{self.endpoint.url}: cannot read the PASV reply {reply}")
        # The announced address is ignored: see the module docstring.
        return self.endpoint.host, int(m.group(5)) * 256 + int(m.group(6))

    @contextlib.asynccontextmanager
    async def _data(
        self, host: str, port: int, line: str, path: str
    ) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
        """The data connection for ``line``: connected, the command sent, the server's
        150 read, TLS resumed; on a clean exit the final 226 is read."""
        try:
            async with asyncio.timeout(self.connect_timeout):
                sock_reader, sock_writer = await asyncio.open_connection(host, port)
        except (OSError, TimeoutError) as exc:
            raise self._dropped("PASV", exc) from exc
        try:
            # vsftpd accepts the TLS handshake once it has the command (RFC 4217 7).
            await self._expect(await self.command(line), 150, 125, path=path)
            try:
                async with asyncio.timeout(self.connect_timeout):
                    await sock_writer.start_tls(self._ctx, server_hostname=self.endpoint.host)
            except (OSError, TimeoutError) as exc:
                raise self._dropped(line, exc) from exc
            try:
                yield sock_reader, sock_writer
                async with asyncio.timeout(self.read_timeout):
                    await sock_writer.drain()
            except (OSError, TimeoutError) as exc:
                raise self._dropped(line, exc) from exc
            # Closing sends TLS close_notify: the server reads the end of the file.
            sock_writer.close()
            try:
                async with asyncio.timeout(self.read_timeout):
                    await sock_writer.wait_closed()
            except (OSError, TimeoutError) as exc:
                raise self._dropped(line, exc) from exc
            await self._expect(await self._reply(line), 226, 250, path=path)
        finally:
            if not sock_writer.is_closing():
                sock_writer.transport.abort()
