"""A TCP proxy on loopback that counts what the server sends and can cut a connection at an
exact byte: a dropped connection in the middle of a transfer, for protocols (SFTP) the
emulator does not serve itself."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from types import TracebackType

__all__ = ["CuttingProxy"]

_CHUNK = 256 * 1024


@dataclass
class _Connection:
    limit: int | None
    sent: int = 0
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


class CuttingProxy:
    """Forwards ``host:port`` (where it listens) to ``target``, both ways.

    ``cut_after(n, times)`` makes each of the next ``times`` connections close (both
    sides) once ``n`` bytes went server → client: the client reads exactly ``n`` bytes,
    then end of stream. Counted bytes are everything on the wire (an SSH connection's
    handshake too). ``bytes_sent()`` lists those counts per connection, in order of
    arrival, including connections still open.
    """

    def __init__(self, target: tuple[str, int], host: str = "127.0.0.1") -> None:
        self._target = target
        self._host = host
        self._server: asyncio.Server | None = None
        self._cuts: list[int] = []
        self._connections: list[_Connection] = []
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self._host, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for conn in self._connections:
                for task in conn.tasks:
                    task.cancel()
            await asyncio.gather(
                *(t for c in self._connections for t in c.tasks), return_exceptions=True
            )
            await self._server.wait_closed()
            self._server = None

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
        if nbytes < 0 or times < 1:
            raise ValueError("cut_after needs nbytes >= 0 and times >= 1")
        self._cuts.extend([nbytes] * times)

    def bytes_sent(self) -> list[int]:
        """Server → client bytes of each connection so far, in order of arrival."""
        return [conn.sent for conn in self._connections]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = _Connection(limit=self._cuts.pop(0) if self._cuts else None)
        self._connections.append(conn)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.close()
            return
        downstream = asyncio.create_task(self._pump(up_reader, writer, conn))
        upstream = asyncio.create_task(self._pump(reader, up_writer, None))
        conn.tasks += [downstream, upstream]
        # Either side ending (or the cut) ends the connection: close both.
        await asyncio.wait((downstream, upstream), return_when=asyncio.FIRST_COMPLETED)
        for task in (downstream, upstream):
            task.cancel()
        await asyncio.gather(downstream, upstream, return_exceptions=True)
        for each in (writer, up_writer):
            each.close()
            with contextlib.suppress(OSError, ConnectionError):
                await each.wait_closed()

    @staticmethod
    async def _pump(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: _Connection | None
    ) -> None:
        try:
            while True:
                want = _CHUNK
                if conn is not None and conn.limit is not None:
                    want = min(want, conn.limit - conn.sent)
                    if want <= 0:
                        return
                data = await reader.read(want)
                if not data:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                writer.write(data)
                if conn is not None:
                    conn.sent += len(data)
                await writer.drain()
        except (OSError, ConnectionError):
            return
