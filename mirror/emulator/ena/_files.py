"""ENA's file host: ``/vol1/...`` as on ftp.sra.ebi.ac.uk, served from the catalog."""

from __future__ import annotations

from aiohttp import web

from .._blob import missing, send_blob
from .._context import CONTEXT

__all__ = ["add_file_routes"]


async def _serve(request: web.Request) -> web.StreamResponse:
    file = request.config_dict[CONTEXT].catalog.file(request.path)
    if file is None:
        return missing(request, "ftp", web.Response(status=404, text="Not Found"))
    return await send_blob(request, host="ftp", key=file.path, size=file.size)


def add_file_routes(app: web.Application) -> None:
    """ENA's FTP tree on the ``ftp`` host: ``/vol1/...`` as on ftp.sra.ebi.ac.uk."""
    # HEAD is answered by the GET route (aiohttp adds it), with the same headers.
    app.router.add_get("/vol1/{tail:.+}", _serve)
