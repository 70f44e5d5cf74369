"""Replay recorded answers of the real services on loopback.

The bodies under ``tests/fixtures/real-responses/`` are what the services answered (or what
their own server code rendered; that directory's README says which). A :class:`Replay`
serves them byte for byte at the paths a client asks, so a test can drive ``mirror plan``
(or any client) against the real bytes instead of the emulator's own idea of them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from aiohttp import web

#: The recordings, copied into the repository so a clean clone has them.
RECORDINGS = Path(__file__).parent / "fixtures" / "real-responses"


@dataclass(frozen=True, kw_only=True)
class Answer:
    """One recorded answer: the body, and what the service said about it."""

    body: bytes
    status: int = 200
    content_type: str = "application/json"

    @classmethod
    def recorded(cls, relative: str, *, status: int = 200, content_type: str = "") -> Answer:
        """The recording at ``RECORDINGS / relative``; its type guessed from the suffix."""
        path = RECORDINGS / relative
        guessed = "text/plain" if path.suffix == ".tsv" else "application/json"
        return cls(body=path.read_bytes(), status=status, content_type=content_type or guessed)


#: Picks the answer for a request; ``None`` means "not recorded" (answered 404).
Chooser = Callable[[web.Request, bytes], "Answer | None"]


@dataclass
class Replay:
    """An aiohttp server on 127.0.0.1 answering from ``routes`` (path → chooser or answer).

    Every request is logged (method, path, query string, body) so tests can count them.
    """

    routes: Mapping[str, Answer | Chooser]
    log: list[tuple[str, str, str, bytes]] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    base: str = ""

    async def __aenter__(self) -> Replay:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._answer)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _answer(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.log.append((request.method, request.path, request.query_string, body))
        route = self.routes.get(request.path)
        # A chooser reads its recording from disk (some read the state store too): off
        # the event loop, which also serves the client under test.
        answer = await asyncio.to_thread(route, request, body) if callable(route) else route
        if answer is None:
            return web.Response(status=404, text="not recorded")
        return web.Response(
            status=answer.status, body=answer.body, content_type=answer.content_type
        )
