"""EnteroBase API v2.0 on its own host: token auth, 3 requests/s, query methods, FASTA files."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from multidict import MultiMapping

from .._blob import missing, send_blob
from .._context import CONTEXT, basic_credentials
from .._send import send_document
from ._options import ENTEROBASE
from ._records import DATABASES, EnterobaseAssembly, fasta_bytes, iter_fasta

__all__ = ["ENTEROBASE_PREFIX", "add_enterobase_routes"]

ENTEROBASE_PREFIX = "/api/v2.0"
# Real next links and download links name this origin, over plain http.
PUBLIC_ORIGIN = "http://enterobase.warwick.ac.uk"
DEFAULT_LIMIT = 50
_RESERVED = frozenset({"limit", "offset", "orderby", "sortorder", "reldate", "only_fields"})
# Resource → (key of the result, the field its barcode filter and orderby=barcode use).
_RESOURCES = {
    "assemblies": ("Assemblies", "assembly_barcode"),
    "strains": ("Strains", "strain_barcode"),
    "straindata": ("straindata", "strain_barcode"),
}
_ASSEMBLY_FIELDS = (
    "assembly_barcode",
    "assembly_status",
    "download_fasta_link",
    "download_fastq_link",
    "lastmodified",
    "n50",
    "top_species",
    "uberstrain",
    "version",
)
_STRAIN_FIELDS = (
    "antigenic_formulas",
    "assembly_barcode",
    "city",
    "collection_year",
    "country",
    "created",
    "lab_contact",
    "lastmodified",
    "release_date",
    "secondary_sample_accession",
    "serotype",
    "source_niche",
    "strain_barcode",
    "strain_name",
    "uberstrain",
    "version",
)
_FIELDS = {
    "assemblies": _ASSEMBLY_FIELDS,
    "strains": _STRAIN_FIELDS,
    "straindata": tuple(sorted({*_ASSEMBLY_FIELDS, *_STRAIN_FIELDS})),
}
_NOT_FOUND = (
    "The requested URL was not found on the server. If you entered the URL manually "
    "please check your spelling and try again."
)
_UNAUTHORIZED = "Unauthorized access: send your API token as the Basic user name"


class _Refused(Exception):
    def __init__(self, status: int, doc: dict[str, Any]) -> None:
        super().__init__(status)
        self.status = status
        self.doc = doc


def _bad(name: str, raw: str) -> _Refused:
    # Flask-RESTX's answer to a parameter that fails its type.
    errors = {name: f"invalid literal for int() with base 10: {raw!r}"}
    return _Refused(400, {"errors": errors, "message": "Input payload validation failed"})


def _int(query: MultiMapping[str], name: str, default: int) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _bad(name, raw) from None
    if value < 0:
        raise _bad(name, raw)
    return value


def _origin(request: web.Request) -> str:
    if request.config_dict[ENTEROBASE].options.public_links:
        return PUBLIC_ORIGIN
    return f"{request.scheme}://{request.host}"


def _everything(record: EnterobaseAssembly, origin: str) -> dict[str, Any]:
    """Every field of the strain and its assembly, as the API names them."""
    link = f"{origin}/upload/download?assembly_barcode={record.assembly_barcode}"
    link += f"&database={record.database}"
    return {
        "antigenic_formulas": None,
        "assembly_barcode": record.assembly_barcode,
        "assembly_status": record.assembly_status,
        "city": None,
        "collection_year": record.collection_year,
        "country": record.country or None,
        "created": record.lastmodified,
        "download_fasta_link": link,
        "download_fastq_link": link + "&file_format=fastq",
        "lab_contact": None,
        "lastmodified": record.lastmodified,
        "n50": record.n50,
        "release_date": f"{record.release_date.isoformat()}T00:00:00+00:00",
        "secondary_sample_accession": record.secondary_sample_accession or None,
        "serotype": record.serotype or None,
        "source_niche": record.source_niche or None,
        "strain_barcode": record.strain_barcode,
        "strain_name": record.strain_name,
        "top_species": record.top_species,
        "uberstrain": record.strain_barcode,
        "version": record.version,
    }


@dataclass(frozen=True, kw_only=True, slots=True)
class _Query:
    limit: int
    offset: int
    orderby: str
    descending: bool
    reldate: int | None
    only_fields: tuple[str, ...]
    filters: dict[str, frozenset[str]]

    @classmethod
    def parse(cls, query: MultiMapping[str], resource: str) -> _Query:
        barcode_field = _RESOURCES[resource][1]
        known = set(_FIELDS["straindata"])
        filters: dict[str, frozenset[str]] = {}
        for name in dict.fromkeys(query):
            if name in _RESERVED:
                continue
            field = barcode_field if name == "barcode" else name
            # Unknown names are ignored, as the real service appears to do.
            if field in known:
                values = [v for raw in query.getall(name) for v in raw.split(",")]
                filters[field] = frozenset(v.strip() for v in values if v.strip())
        # The docs say to repeat only_fields; the official scripts send a comma list.
        only = [f.strip() for raw in query.getall("only_fields", []) for f in raw.split(",")]
        orderby = query.get("orderby", "barcode")
        orderby = barcode_field if orderby == "barcode" or orderby not in known else orderby
        reldate = _int(query, "reldate", -1)
        return cls(
            limit=_int(query, "limit", DEFAULT_LIMIT) or DEFAULT_LIMIT,
            offset=_int(query, "offset", 0),
            orderby=orderby,
            descending=query.get("sortorder", "asc").lower() == "desc",
            reldate=reldate if reldate >= 0 else None,
            only_fields=tuple(f for f in only if f),
            filters=filters,
        )


def _next_links(request: web.Request, query: _Query, total: int) -> dict[str, str]:
    # The real links are rebuilt from a flat dict of the request's parameters, so a
    # repeated parameter keeps only its first value: only_fields=a&only_fields=b
    # comes back as only_fields=a (see the wiki's own examples). Follow them with care.
    params = {name: request.query[name] for name in request.query}
    params["limit"] = str(query.limit)
    base = f"{_origin(request)}{request.path}?"
    paging: dict[str, str] = {}
    if query.offset + query.limit < total:
        paging["next"] = base + urlencode({**params, "offset": str(query.offset + query.limit)})
    if query.offset > 0:
        # The wiki shows "previous" carrying the current offset, not the one before.
        paging["previous"] = base + urlencode({**params, "offset": str(query.offset)})
    return paging


def _answer(request: web.Request, resource: str, barcode: str | None) -> dict[str, Any]:
    ctx = request.config_dict[CONTEXT]
    enterobase = request.config_dict[ENTEROBASE]
    database = request.match_info["database"]
    if database not in DATABASES or resource not in _RESOURCES:
        raise _Refused(404, {"message": _NOT_FOUND})
    query = _Query.parse(request.query, resource)
    key, barcode_field = _RESOURCES[resource]
    filters = dict(query.filters)
    if barcode is not None:
        filters[barcode_field] = frozenset({barcode})
    origin = _origin(request)
    records = enterobase.store.records(database)
    if query.reldate is not None:
        since = ctx.clock.today - timedelta(days=query.reldate)
        records = [r for r in records if r.release_date > since]
    rows = [_everything(r, origin) for r in records]
    rows = [
        row for row in rows if all(str(row[field]) in wanted for field, wanted in filters.items())
    ]
    order = query.orderby

    def sort_key(row: dict[str, Any]) -> tuple[bool, Any, str]:
        # Nulls last; the barcode breaks ties, so paging never repeats or skips a row.
        value = row[order]
        return (value is None, value if value is not None else 0, row[barcode_field])

    rows.sort(key=sort_key)
    if query.descending:
        rows.reverse()
    page = rows[query.offset : query.offset + query.limit]
    fields = query.only_fields or _FIELDS[resource]
    views = [{name: row[name] for name in fields if name in row} for row in page]
    result: Any = views
    if resource == "straindata":
        result = {row["strain_barcode"]: view for row, view in zip(page, views, strict=True)}
    links = {
        "paging": _next_links(request, query, len(rows)),
        # Unreliable on the real service too: here it ignores the offset.
        "records": min(query.limit, len(rows)),
        "total_records": len(rows),
    }
    return {key: result, "links": links}


async def _query(request: web.Request) -> web.StreamResponse:
    status = 200
    try:
        doc = _answer(request, request.match_info["resource"], request.match_info.get("barcode"))
    except _Refused as exc:
        status, doc = exc.status, exc.doc
    # Flask's jsonify sorts keys: records come back in alphabetical field order.
    body = json.dumps(doc, sort_keys=True).encode()
    return await send_document(request, body, host="enterobase", status=status)


async def _download(request: web.Request) -> web.StreamResponse:
    store = request.config_dict[ENTEROBASE].store
    barcode = request.query.get("assembly_barcode", "")
    record = store.assembly(request.query.get("database", ""), barcode)
    if record is None or request.query.get("file_format", "fasta") != "fasta":
        # EnteroBase serves no short reads: fetch those from ENA/SRA.
        body = json.dumps({"error": "No such file"}).encode()
        return missing(
            request,
            "enterobase",
            web.Response(status=404, body=body, content_type="application/json"),
        )
    size = record.fasta_size
    if size > 8 * 1024 * 1024:
        await asyncio.to_thread(fasta_bytes, barcode, size)

    def pieces(start: int, end: int, chunk: int) -> Iterator[memoryview]:
        return iter_fasta(barcode, size, start, end, chunk)

    headers = {
        "Content-Type": "text/plain; charset=utf-8",
        "Content-Disposition": f"attachment; filename={barcode}.fasta",
    }
    key = f"enterobase/{record.database}/{barcode}"
    return await send_blob(
        request, host="enterobase", key=key, size=size, pieces=pieces, headers=headers
    )


def _token(header: str | None) -> str | None:
    """The user name of a Basic Authorization header: EnteroBase's API token."""
    credentials = basic_credentials(header)
    return credentials[0] if credentials is not None else None


@web.middleware
async def _gate(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    enterobase = request.config_dict[ENTEROBASE]
    # The old wiki: 3 requests/s, "you will get a 503"; no Retry-After.
    refused = enterobase.window.refusal(request, 503) if enterobase.window else None
    if refused is not None:
        return refused
    token = _token(request.headers.get("Authorization"))
    options = enterobase.options
    if token is None or token not in options.tokens or token in options.expired_tokens:
        # An expired token gets the same answer as a wrong one: the service just refuses.
        return web.Response(
            status=401,
            body=json.dumps({"error": _UNAUTHORIZED}).encode(),
            content_type="application/json",
            headers={"WWW-Authenticate": 'Basic realm="Authentication Required"'},
        )
    return await handler(request)


def add_enterobase_routes(app: web.Application) -> None:
    """The API under /api/v2.0 and the downloads under /upload, both behind the gate."""
    api = web.Application(middlewares=[_gate])
    api.router.add_get("/{database}/{resource}", _query)
    api.router.add_get("/{database}/{resource}/{barcode}", _query)
    upload = web.Application(middlewares=[_gate])
    upload.router.add_get("/download", _download)
    app.add_subapp(ENTEROBASE_PREFIX, api)
    app.add_subapp("/upload", upload)
