"""Writing a response body: pacing, mid-body cuts (reset/truncate), and byte accounting."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct

from aiohttp import web

from ._content import BLOCK_SIZE
from ._faults import Fault
from ._log import Exchange

__all__ = ["Sender"]

Buffer = bytes | bytearray | memoryview
# Paced bodies go out in pieces of ~1/8 s, so a rate cap is smooth at any speed.
_PACE_SLICES = 8


class Sender:
    """Writes one response body piece by piece.

    ``send`` returns False once the body has ended early (a cut fault fired, or the
    client went away); the producer stops then and the handler returns normally, so
    aiohttp's own write_eof meets a closed transport and gives up quietly.
    """

    def __init__(
        self,
        request: web.BaseRequest,
        response: web.StreamResponse,
        exchange: Exchange,
        *,
        rate: int | None = None,
        cut: Fault | None = None,
    ) -> None:
        self._request = request
        self._response = response
        self._exchange = exchange
        self._rate = rate
        self._cut = cut
        self._sent = 0
        self._done = False
        self._started = asyncio.get_running_loop().time()
        self.piece_size = (
            BLOCK_SIZE if rate is None else max(1, min(BLOCK_SIZE, rate // _PACE_SLICES))
        )

    @property
    def sent(self) -> int:
        return self._sent

    async def send(self, data: Buffer) -> bool:
        if self._done:
            return False
        view = memoryview(data)
        if self._cut is not None:
            room = self._cut.after_bytes - self._sent
            if room <= len(view):
                if room > 0 and not await self._write_all(view[:room]):
                    return False
                await self._cut_connection(self._cut.kind)
                return False
        return await self._write_all(view)

    async def _write_all(self, view: memoryview) -> bool:
        step = self.piece_size
        for begin in range(0, len(view), step):
            piece = view[begin : begin + step]
            if self._rate is not None:
                await self._pace()
            try:
                await self._response.write(piece)
            except ConnectionError:
                # The client hung up (aiohttp's ClientConnectionResetError is one).
                self._done = True
                return False
            self._sent += len(piece)
            self._exchange.bytes += len(piece)
        return True

    async def _pace(self) -> None:
        assert self._rate is not None
        loop = asyncio.get_running_loop()
        delay = self._started + self._sent / self._rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)

    async def _cut_connection(self, kind: str) -> None:
        self._done = True
        try:
            # An empty write sends the buffered headers, even when after_bytes is 0.
            await self._response.write(b"")
        except ConnectionError:
            return
        transport = self._request.transport
        if transport is None or transport.is_closing():
            return
        if kind == "truncate":
            # close() flushes what is buffered, then FIN: the client reads a clean EOF
            # short of Content-Length (the "ends early with no error" reports).
            transport.close()
            return
        # A reset, not a FIN: with SO_LINGER 0 the socket's close sends RST, and the
        # client sees ECONNRESET (enaBrowserTools#75). close() rather than abort()
        # first hands asyncio's buffer to the kernel, so the promised after_bytes get
        # out before the reset instead of being dropped.
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.close()
