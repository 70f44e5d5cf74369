"""The per-host middleware that records every request in the log."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from ._context import CONTEXT, EXCHANGE
from ._log import Exchange, redact_query

__all__ = ["record"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def record(host: str, *, formless: tuple[str, ...] = ()) -> Middleware:
    """Log every request to ``host``; POST bodies only outside the ``formless`` path
    prefixes (where they carry secrets or whole documents)."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        ctx = request.config_dict[CONTEXT]
        exchange = Exchange(
            t=time.time(),
            host=host,
            method=request.method,
            path=request.path,
            # EGA's ?session= and ?pass= values are secrets: logged as ***.
            query=redact_query(request.query_string),
            range=request.headers.get("Range"),
        )
        request[EXCHANGE] = exchange
        slot = ctx.log.reserve()
        status: int | None = None
        try:
            if request.method == "POST" and not request.path.startswith(formless):
                # aiohttp caches the body, so the handler's request.post() still works.
                exchange.form = (await request.read()).decode("utf-8", "replace")
            response = await handler(request)
            status = response.status
            if isinstance(response, web.Response) and request.method != "HEAD":
                # Whole-body answers are sent after we return; their size is known.
                exchange.bytes += response.content_length or 0
            return response
        except web.HTTPException as exc:
            status = exc.status
            exchange.bytes += len(exc.text.encode()) if exc.text else 0
            raise
        finally:
            final = status if status is not None else exchange.status
            ctx.log.fill(slot, exchange.entry(final if final is not None else 500))

    return middleware
