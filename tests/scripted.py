"""A tiny HTTP server on 127.0.0.1 that answers each request from a script.

The file table tests need answers no archive gives on purpose (a 206 for the wrong
range, a body cut short, an ``If-Range`` that no longer matches): each request to the
server gets the next :data:`Answer` of its script (the last one again once the script is
used up), and every request's headers are kept for the test to assert.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType

from aiohttp import web

__all__ = [
    "Answer",
    "Scripted",
    "Seen",
    "cut",
    "ranges",
    "stall",
    "status",
    "unsatisfiable",
    "whole",
    "wrong_range",
]


@dataclass(frozen=True)
class Seen:
    """One request the server received."""

    method: str
    path: str
    range: str | None
    if_range: str | None


#: Builds the response to one request.
Answer = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Scripted:
    script: Sequence[Answer]
    seen: list[Seen] = field(default_factory=list)
    base: str = ""
    #: Set while a request is being answered (a test cancels a download mid-stream).
    answering: asyncio.Event = field(default_factory=asyncio.Event)
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"{self.base}/data/file.bin"

    async def __aenter__(self) -> Scripted:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._answer)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.base = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        n = len(self.seen)
        self.seen.append(
            Seen(
                request.method,
                request.path,
                request.headers.get("Range"),
                request.headers.get("If-Range"),
            )
        )
        self.answering.set()
        return await self.script[min(n, len(self.script) - 1)](request)


# --------------------------------------------------------------------------- answers


def _etag(headers: dict[str, str], etag: str | None) -> dict[str, str]:
    return {**headers, "ETag": etag} if etag else headers


def whole(data: bytes, *, etag: str | None = '"v1"') -> Answer:
    """200 with the whole body, whatever the request asked for (a server without ranges)."""

    async def answer(request: web.Request) -> web.StreamResponse:
        return web.Response(body=data, headers=_etag({}, etag))

    return answer


def ranges(data: bytes, *, etag: str = '"v1"') -> Answer:
    """What a static file server does (RFC 9110 §14): a 206 from the offset asked for when
    ``If-Range`` is absent or names the current ``etag``, else the whole file."""

    async def answer(request: web.Request) -> web.StreamResponse:
        asked = request.headers.get("Range", "")
        validator = request.headers.get("If-Range")
        if not asked.startswith("bytes=") or (validator is not None and validator != etag):
            return web.Response(body=data, headers={"ETag": etag})
        first = int(asked.removeprefix("bytes=").split("-")[0])
        if first >= len(data):
            return web.Response(status=416, headers={"Content-Range": f"bytes */{len(data)}"})
        return web.Response(
            status=206,
            body=data[first:],
            headers={
                "ETag": etag,
                "Content-Range": f"bytes {first}-{len(data) - 1}/{len(data)}",
            },
        )

    return answer


def wrong_range(data: bytes) -> Answer:
    """206 for the whole file, whatever range was asked for."""

    async def answer(request: web.Request) -> web.StreamResponse:
        headers = {"Content-Range": f"bytes 0-{len(data) - 1}/{len(data)}", "ETag": '"v1"'}
        return web.Response(status=206, body=data, headers=headers)

    return answer


def unsatisfiable(size: int) -> Answer:
    """416: the range asked for starts past the end of a file of ``size`` bytes."""

    async def answer(request: web.Request) -> web.StreamResponse:
        return web.Response(status=416, headers={"Content-Range": f"bytes */{size}"})

    return answer


def cut(
    data: bytes, after: int, *, etag: str = '"v1"', read: asyncio.Event | None = None
) -> Answer:
    """200 announcing the whole body, then the connection closes after ``after`` bytes:
    once the client has ``read`` them, when it says so (an HTTP client drops bytes it
    has received but not yet read when it sees the connection end)."""

    async def answer(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"ETag": etag})
        response.content_length = len(data)
        await response.prepare(request)
        await response.write(data[:after])
        if read is not None:
            await read.wait()
        else:
            await asyncio.sleep(0.01)  # let the bytes leave before the connection drops
        assert request.transport is not None
        request.transport.close()
        return response

    return answer


def stall(data: bytes, after: int, until: asyncio.Event, *, etag: str = '"v1"') -> Answer:
    """200 announcing the whole body: ``after`` bytes, then nothing until ``until`` is set."""

    async def answer(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"ETag": etag})
        response.content_length = len(data)
        await response.prepare(request)
        await response.write(data[:after])
        await until.wait()
        await response.write(data[after:])
        return response

    return answer


def status(code: int, **headers: str) -> Answer:
    """An error answer with a short body and ``headers`` (``Retry_After`` → ``Retry-After``)."""

    async def answer(request: web.Request) -> web.StreamResponse:
        sent = {k.replace("_", "-"): v for k, v in headers.items()}
        return web.Response(status=code, text=f"status {code}", headers=sent)

    return answer
