"""Writing a response body: pacing, mid-body cuts (reset/truncate), and byte accounting."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Collection

from aiohttp import web

from ._content import BLOCK_SIZE
from ._context import CONTEXT, EXCHANGE, fault_response
from ._faults import Fault
from ._log import Exchange

__all__ = ["Sender", "send_document"]

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


async def send_document(
    request: web.Request,
    body: bytes,
    *,
    host: str,
    status: int = 200,
    content_type: str = "application/json",
    headers: dict[str, str] | None = None,
    kinds: Collection[str] | None = None,
) -> web.StreamResponse:
    """Send a whole JSON answer, with the faults a metadata call can meet.

    ``status`` and ``gzip_header`` apply to any answer; ``reset``, ``truncate`` and
    ``short`` cut the body after ``after_bytes`` (if it is longer), so a client sees
    a half JSON document; ``slow`` paces it. ``kinds`` limits the faults that may
    apply (None: all): Webin decides its status faults before it processes anything.
    """
    ctx = request.config_dict[CONTEXT]
    exchange = request[EXCHANGE]
    has_body = request.method != "HEAD"

    def applicable(fault: Fault) -> bool:
        if kinds is not None and fault.kind not in kinds:
            return False
        if fault.kind in ("status", "gzip_header"):
            return True
        if not has_body:
            return False
        if fault.kind in ("reset", "truncate", "short"):
            return fault.after_bytes < len(body)
        return fault.kind == "slow"

    fault = ctx.faults.pick(host=host, path=request.path, applicable=applicable)
    if fault is not None:
        exchange.fault = fault.kind
        if fault.kind == "status":
            await ctx.faults.gather(fault)
            return fault_response(fault)
    if fault is not None and fault.kind == "short":
        body = body[: len(body) - fault.after_bytes]
    response = web.StreamResponse(status=status, headers=headers)
    response.content_type = content_type
    response.content_length = len(body)
    if fault is not None and fault.kind == "gzip_header":
        response.headers["Content-Encoding"] = "gzip"
    exchange.status = status
    await response.prepare(request)
    if not has_body:
        return response
    slow = fault.bytes_per_second if fault is not None and fault.kind == "slow" else None
    cut = fault if fault is not None and fault.kind in ("reset", "truncate") else None
    await Sender(request, response, exchange, rate=slow, cut=cut).send(body)
    return response
