"""Reaching the PostgreSQL state store: its URL taken apart, its connections, and its
errors put in words.

A password never travels in the URL (it would show in process lists and logs): it comes
from PGPASSWORD or ~/.pgpass, and no message here repeats the URL's secrets.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Final

import asyncpg

from .._exceptions import StateUrlError

__all__ = [
    "DB_ERRORS",
    "NAMED_BY",
    "Connections",
    "PostgresUrl",
    "connect",
    "one_line",
    "parse_url",
]

NAMED_BY: Final = "--state (or MIRROR_STATE)"
#: Connections per member: statements of its workers run side by side, up to this many.
_CONNECTIONS: Final = 4
_SESSION: Final = {
    "application_name": "ebi-mirror",
    # JIT compiling pays off for long analytic queries, never for these.
    "jit": "off",
    # A commit returns before its WAL reaches the disk (the server still writes it within
    # a fraction of a second, and never corrupts). Only a crash of the database server
    # itself can lose the last commits, and that costs what SQLite's synchronous=NORMAL
    # costs: a claim handed out again or a verified mark lost, so a file downloaded
    # twice, never a wrong file. Waiting for the flush would cap a pull at a few hundred
    # claims per second on an ordinary disk.
    "synchronous_commit": "off",
    # Every statement is written to run well whatever its parameters (the claim finds
    # its rows by primary key from an array, whatever n is): plan each once per
    # connection. Re-planning each call (a "custom" plan, which PostgreSQL keeps
    # choosing when the generic plan's cost looks higher) costs more than running it.
    "plan_cache_mode": "force_generic_plan",
}


@dataclass(frozen=True, slots=True)
class PostgresUrl:
    """A ``postgresql://`` URL taken apart; ``str()`` is safe to show (it holds no password)."""

    dsn: str
    host: str
    port: int | None
    database: str
    user: str | None

    def __str__(self) -> str:
        user = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port is not None else ""
        if self.host.startswith("/"):  # a Unix socket's directory
            return f"postgresql://{user}{port}/{self.database}?host={self.host}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"postgresql://{user}{host}{port}/{self.database}"


def parse_url(url: str) -> PostgresUrl:
    """Take ``postgresql://[user@]host[:port]/db`` apart; refuse a password inside it.

    A password in a URL ends up in shell history, process lists and job scripts: it is
    refused, and the message never repeats it.
    """
    try:
        parts = urllib.parse.urlsplit(url)
        query = urllib.parse.parse_qs(parts.query)
        if parts.password is not None or "password" in query:
            raise StateUrlError(
                "a password inside the PostgreSQL URL is refused (it would show in process "
                "lists and logs): give it in PGPASSWORD or ~/.pgpass",
                file=NAMED_BY,
            )
        port = parts.port
    except ValueError:
        # Without echoing the URL: its port field may hold a password ("user:secret@").
        raise StateUrlError(
            "the PostgreSQL URL is malformed: expected postgresql://[user@]host[:port]/db",
            file=NAMED_BY,
        ) from None
    database = urllib.parse.unquote(parts.path.lstrip("/"))
    if not database or "/" in database:
        raise StateUrlError(
            "the PostgreSQL URL names no database: expected postgresql://[user@]host[:port]/db",
            file=NAMED_BY,
        )
    # A socket directory may come %-encoded in the host part, or as ?host=.
    named = urllib.parse.unquote(parts.hostname) if parts.hostname else None
    host = named or (query.get("host") or [os.environ.get("PGHOST", "localhost")])[0]
    user = urllib.parse.unquote(parts.username) if parts.username else None
    return PostgresUrl(dsn=url, host=host, port=port, database=database, user=user)


def one_line(exc: BaseException) -> str:
    """An asyncpg or socket error as one line, in words where the error has none."""
    if isinstance(exc, socket.gaierror):
        return f"unknown host ({exc.strerror})"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is PostgreSQL running, and listening on that address?)"
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    return " ".join(str(exc).split()) or type(exc).__name__


#: What a failed statement or connection raises: the server's errors, the driver's,
#: and the network's.
DB_ERRORS: Final = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
    OSError,
    TimeoutError,
)


class Connections:
    """A few connections to the server, each used by one statement (or transaction) at a
    time.

    asyncpg's own pool resets a connection on every release (``RESET ALL``, ``UNLISTEN``
    ...: a round trip) and releases through a task of its own; the store keeps no
    session state, so handing connections out of a LIFO queue is all it needs, and a
    claim or complete is then exactly one round trip. A connection whose statement
    failed or was cancelled is closed, not reused: its state is not known.
    """

    def __init__(self, connect: Callable[[], Awaitable[asyncpg.Connection]], size: int) -> None:
        self._connect = connect
        # A slot is an idle connection, or None: room for one more connection.
        self._slots: asyncio.LifoQueue[asyncpg.Connection | None] = asyncio.LifoQueue()
        for _ in range(size):
            self._slots.put_nowait(None)
        self._closed = False

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[asyncpg.Connection]:
        if self._closed:
            raise asyncpg.InterfaceError("the store is closed")
        slot = await self._slots.get()
        try:
            db = slot if slot is not None and not slot.is_closed() else await self._connect()
        except BaseException:
            self._slots.put_nowait(None)
            raise
        try:
            yield db
        except BaseException:
            db.terminate()
            self._slots.put_nowait(None)
            raise
        self._slots.put_nowait(db)

    async def close(self) -> None:
        self._closed = True
        while not self._slots.empty():
            db = self._slots.get_nowait()
            if db is not None:
                try:
                    await db.close(timeout=5)
                except DB_ERRORS:
                    db.terminate()


async def connect(url: str) -> tuple[Connections, PostgresUrl]:
    """Connections to the server at ``url``, its first one made: the URL, the server and
    the password work."""
    where = parse_url(url)

    async def one() -> asyncpg.Connection:
        return await asyncpg.connect(
            where.dsn,
            timeout=15,
            # A statement that has not answered in two minutes is not going to.
            command_timeout=120,
            server_settings=_SESSION,
        )

    connections = Connections(one, _CONNECTIONS)
    try:
        async with connections.acquire():
            pass  # the first connection: the URL, the server and the password work
    except DB_ERRORS as exc:
        await connections.close()
        hint = ""
        if isinstance(exc, asyncpg.InvalidPasswordError):
            hint = " (the password comes from PGPASSWORD or ~/.pgpass)"
        raise StateUrlError(
            f"cannot connect to the PostgreSQL state store {where} (host {where.host}, port "
            f"{where.port or 5432}, database {where.database}): {one_line(exc)}{hint}",
            file=NAMED_BY,
        ) from None
    return connections, where
