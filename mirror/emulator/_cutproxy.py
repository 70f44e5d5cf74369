"""A TCP proxy on loopback that counts the bytes it forwards and can cut a connection at an
exact byte: a dropped connection in the middle of a transfer, for protocols (SFTP, FTPS)
the emulator does not serve itself."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType

__all__ = ["CuttingProxy"]

_CHUNK = 256 * 1024


@dataclass
class _Connection:
    limit: int | None  # server → client bytes before the cut (assigned on arrival)
    sent: int = 0  # server → client
    received: int = 0  # client → server


class CuttingProxy:
    """Forwards ``host:port`` (where it listens) to ``target``, both ways.

    ``routes`` instead listens on several ports of ``host`` at once, each to a target of
    its own ({listening port: target}), with one count and one set of cuts for all of
    them (an FTP server's passive data ports). ``source``: the address outgoing
    connections come from (a server that checks data connections come from its control
    connection's address sees the same one).

    Counted bytes are everything on the wire (an SSH connection's handshake, TLS records).

    - ``cut_after(n, times)``: each of the next ``times`` connections to *arrive* closes
      (both sides) once ``n`` bytes went server → client: the client reads exactly ``n``
      bytes, then end of stream.
    - ``cut_upload_after(n, times)``: the next ``times`` connections to *reach* ``n``
      bytes client → server are closed there: the server receives exactly ``n`` bytes,
      then end of stream, and the client's next write fails. A connection that ends
      below ``n`` (an FTP listing, say) leaves the cut for the next one.
    - ``bytes_sent()`` / ``bytes_received()``: server → client / client → server bytes
      of each connection, in order of arrival, including connections still open.
    """

    def __init__(
        self,
        target: tuple[str, int] | None = None,
        host: str = "127.0.0.1",
        *,
        routes: Mapping[int, tuple[str, int]] | None = None,
        source: str | None = None,
    ) -> None:
        if routes is not None and target is None:
            self._routes = dict(routes)
        elif target is not None and routes is None:
            self._routes = {0: target}
        else:
            raise ValueError("CuttingProxy needs either a target or routes")
        self._host = host
        self._source = (source, 0) if source is not None else None
        self._servers: list[asyncio.Server] = []
        self._cuts: list[int] = []
        self._upload_cuts: list[int] = []
        self._connections: list[_Connection] = []
        self._handlers: set[asyncio.Task[None]] = set()
        self.port = 0

    async def start(self) -> None:
        try:
            for port, target in self._routes.items():
                serve = functools.partial(self._serve, target=target)
                server = await asyncio.start_server(serve, self._host, port)
                self._servers.append(server)
        except BaseException:
            await self.stop()
            raise
        self.port = self._servers[0].sockets[0].getsockname()[1]

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
        # Each connection's handler closes both its sockets as it ends.
        handlers = list(self._handlers)
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        for server in self._servers:
            await server.wait_closed()
        self._servers = []

    async def __aenter__(self) -> CuttingProxy:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def cut_after(self, nbytes: int, times: int = 1) -> None:
        """The next ``times`` connections close after ``nbytes`` bytes server → client."""
        self._check(nbytes, times)
        self._cuts.extend([nbytes] * times)

    def cut_upload_after(self, nbytes: int, times: int = 1) -> None:
        """The next ``times`` connections to reach ``nbytes`` bytes client → server close
        there."""
        self._check(nbytes, times)
        self._upload_cuts.extend([nbytes] * times)

    @staticmethod
    def _check(nbytes: int, times: int) -> None:
        if nbytes < 0 or times < 1:
            raise ValueError("a cut needs nbytes >= 0 and times >= 1")

    def bytes_sent(self) -> list[int]:
        """Server → client bytes of each connection so far, in order of arrival."""
        return [conn.sent for conn in self._connections]

    def bytes_received(self) -> list[int]:
        """Client → server bytes of each connection so far, in order of arrival."""
        return [conn.received for conn in self._connections]

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, target: tuple[str, int]
    ) -> None:
        handler = asyncio.current_task()
        if handler is not None:
            self._handlers.add(handler)
        conn = _Connection(limit=self._cuts.pop(0) if self._cuts else None)
        self._connections.append(conn)
        up_writer: asyncio.StreamWriter | None = None
        pumps: list[asyncio.Task[bool]] = []
        try:
            try:
                up_reader, up_writer = await asyncio.open_connection(
                    *target, local_addr=self._source
                )
            except OSError:
                return
            pumps = [
                asyncio.create_task(self._pump(up_reader, writer, conn, down=True)),
                asyncio.create_task(self._pump(reader, up_writer, conn, down=False)),
            ]
            # An end of stream one way is passed on (half-close) while the other way runs
            # on until it ends too: a TLS peer may still send (its close_notify, a session
            # ticket), and closing a socket with unread bytes would reset the connection.
            # A cut or an error ends both ways at once.
            done, _ = await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            if all(task.result() for task in done):
                await asyncio.wait(pumps)
        finally:
            for task in pumps:
                task.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            ends = [each for each in (writer, up_writer) if each is not None]
            for each in ends:
                each.close()
            for each in ends:
                with contextlib.suppress(OSError, ConnectionError):
                    await each.wait_closed()
            if handler is not None:
                self._handlers.discard(handler)

    def _upload_limit(self, conn: _Connection) -> int | None:
        """The nearest upload cut this connection has not passed yet."""
        return min((n for n in self._upload_cuts if n >= conn.received), default=None)

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        conn: _Connection,
        *,
        down: bool,
    ) -> bool:
        """Forward one way until end of stream (True: passed on) or a cut or error (False)."""
        try:
            while True:
                done = conn.sent if down else conn.received
                limit = conn.limit if down else self._upload_limit(conn)
                want = _CHUNK if limit is None else min(_CHUNK, limit - done)
                if limit is not None and want <= 0:
                    if not down:
                        self._upload_cuts.remove(limit)  # taken: later connections go whole
                    return False
                data = await reader.read(want)
                if not data:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return True
                writer.write(data)
                if down:
                    conn.sent += len(data)
                else:
                    conn.received += len(data)
                await writer.drain()
        except (OSError, ConnectionError):
            return False
