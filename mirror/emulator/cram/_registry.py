"""ENA's CRAM reference registry (``/ena/cram``): sequences by MD5 or SHA1, refget metadata."""

from __future__ import annotations

import json
from collections.abc import Iterator

from aiohttp import web

from .._blob import missing, send_blob
from .._context import CONTEXT
from .._send import send_document
from ._records import CramReference

__all__ = ["CRAM_PREFIX", "build_cram_app"]

CRAM_PREFIX = "/ena/cram"
# refget ids may name their algorithm ("md5:…", as refget v2 writes them).
_MD5_PREFIX = "md5:"


def _not_found(request: web.Request) -> web.Response:
    # The registry answers an unknown checksum with a plain-text 404; htsjdk's
    # EnaRefService and htslib both treat any 404 as "not in the registry".
    return missing(request, "www", web.Response(status=404, text="Not Found"))


def _slices(data: bytes, start: int, end: int, chunk: int) -> Iterator[memoryview]:
    view = memoryview(data)
    for begin in range(start, end, chunk):
        yield view[begin : min(begin + chunk, end)]


async def _send_sequence(request: web.Request, ref: CramReference | None) -> web.StreamResponse:
    if ref is None:
        return _not_found(request)
    data = ref.bases()
    return await send_blob(
        request,
        host="www",
        key=f"cram/{ref.md5}",
        size=len(data),
        pieces=lambda start, end, chunk: _slices(data, start, end, chunk),
        # The raw sequence, no FASTA header, no newlines: what REF_CACHE files hold.
        headers={"Content-Type": "text/plain"},
    )


async def _by_md5(request: web.Request) -> web.StreamResponse:
    catalog = request.config_dict[CONTEXT].catalog
    return await _send_sequence(request, catalog.cram_by_md5(request.match_info["md5"]))


async def _by_sha1(request: web.Request) -> web.StreamResponse:
    catalog = request.config_dict[CONTEXT].catalog
    return await _send_sequence(request, catalog.cram_by_sha1(request.match_info["sha1"]))


async def _metadata(request: web.Request) -> web.StreamResponse:
    ident = request.match_info["id"]
    if ident.lower().startswith(_MD5_PREFIX):
        ident = ident[len(_MD5_PREFIX) :]
    ref = request.config_dict[CONTEXT].catalog.cram_by_md5(ident)
    if ref is None:
        return _not_found(request)
    # refget v1's metadata document. TRUNC512 is null: ENA computes it, the emulator
    # does not (clients key on md5). The name is the one alias the catalog knows.
    doc = {
        "metadata": {
            "id": ref.md5,
            "length": ref.length,
            "md5": ref.md5,
            "trunc512": None,
            "aliases": [{"alias": ref.name, "naming_authority": "unknown"}],
        }
    }
    return await send_document(request, json.dumps(doc).encode(), host="www")


def build_cram_app() -> web.Application:
    """The registry, mounted at CRAM_PREFIX on the ``www`` host (HEAD comes with GET)."""
    app = web.Application()
    app.router.add_get("/md5/{md5}", _by_md5)
    app.router.add_get("/sha1/{sha1}", _by_sha1)
    app.router.add_get("/sequence/{id}/metadata", _metadata)
    return app
