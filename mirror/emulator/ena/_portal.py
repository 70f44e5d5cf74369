"""The ENA Portal API (``/ena/portal/api``): search, filereport, returnFields, count."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from .._content import md5_of
from .._context import CONTEXT, EXCHANGE, Context, fault_response
from .._faults import Fault
from .._send import Sender
from ._fields import RESULTS, ResultType
from ._layout import FTP_HOST
from ._options import ENA
from ._query import Node, QueryError, accession_terms, matches, parse
from ._records import accession_kind

__all__ = ["PORTAL_PREFIX", "build_portal_app"]

PORTAL_PREFIX = "/ena/portal/api"
MAX_INCLUDE_ACCESSIONS = 1000
_DEFAULT_LIMIT = 100_000
_FLUSH_AT = 64 * 1024
# md5 of a big generated file takes ~1.5 s/GiB: compute it off the loop.
_THREAD_MD5_ABOVE = 8 * 1024 * 1024
_KIND_OF_PATTERN = {
    "run": "run",
    "experiment": "experiment",
    "biosample": "sample",
    "sample": "sample",
    "project": "study",
    "study": "study",
    "analysis": "analysis",
}
_BODY_FAULTS = frozenset({"reset", "truncate", "slow"})
_MAINTENANCE = (
    "<!DOCTYPE html>\n<html><head><title>Service maintenance</title></head>\n"
    "<body><h1>We'll be back soon</h1>\n"
    "<p>This service is undergoing maintenance.</p></body></html>\n"
)

Params = dict[str, str]


class BadRequest(Exception):
    """A 400 answer. Errors are plain-text bodies carrying ENA's message, e.g.
    ``Invalid fieldName(s) supplied: parent_study`` (nf-core/fetchngs#372), so a client
    that shows the body shows what ENA would have said."""


@dataclass(frozen=True, kw_only=True)
class Report:
    """A validated request: what to stream, or ``empty_status`` when there is nothing."""

    result: ResultType
    columns: list[str]
    records: Iterator[Any]
    json: bool
    empty_status: int = 200


async def _params(request: web.Request) -> Params:
    params: Params = dict(request.query)
    if request.method == "POST":
        # ENA's File Downloader puts result/fields in the URL and includeAccessions
        # in the form body; the body wins where both name a parameter.
        form = await request.post()
        params.update({key: value for key, value in form.items() if isinstance(value, str)})
    return params


def _result(params: Params) -> ResultType:
    name = params.get("result")
    if not name:
        raise BadRequest("The result parameter is required")
    result = RESULTS.get(name)
    if result is None:
        raise BadRequest(f"Invalid result: {name} (the emulator serves read_run and analysis)")
    return result


def _is_json(params: Params) -> bool:
    fmt = params.get("format", "tsv").lower()
    if fmt not in ("tsv", "json"):
        raise BadRequest(f"Invalid format: {fmt}")
    return fmt == "json"


def _count(params: Params, name: str, default: int) -> int:
    raw = params.get(name, "")
    if not raw:
        return default
    if not raw.isdigit():
        raise BadRequest(f"Invalid {name}: {raw}")
    return int(raw)


def _columns(result: ResultType, params: Params, *, accession_last: bool) -> list[str]:
    raw = params.get("fields", "")
    if raw.strip().lower() == "all":
        names = list(result.fields)
    elif raw.strip():
        names = list(dict.fromkeys(name.strip() for name in raw.split(",") if name.strip()))
    else:
        names = list(result.report_fields if not accession_last else ())
    unknown = [name for name in names if name not in result.fields]
    if unknown:
        raise BadRequest(f"Invalid fieldName(s) supplied: {','.join(unknown)}")
    key = result.accession_field
    if accession_last:
        # Feb 2024: /search TSV moved the accession from first to last column
        # (enaBrowserTools RT728517). Clients must parse by header.
        return [name for name in names if name != key] + [key]
    return names if key in names else [key, *names]


def _includes(result: ResultType, params: Params) -> list[tuple[str, str | None]] | None:
    raw = params.get("includeAccessions")
    if raw is None:
        return None
    given = [a.strip().upper() for a in raw.split(",") if a.strip()]
    # ENA's File Downloader sends chunks of 1000 (Constants.CHUNK_SIZE); more is refused.
    if len(given) > MAX_INCLUDE_ACCESSIONS:
        raise BadRequest(
            f"includeAccessions: at most {MAX_INCLUDE_ACCESSIONS} accessions, got {len(given)}"
        )
    accessions = list(dict.fromkeys(given))
    kind = params.get("includeAccessionType", "").strip().lower() or None
    if kind is not None and kind not in result.accession_types:
        raise BadRequest(f"Invalid includeAccessionType: {kind} for result {result.name}")
    return [(a, kind or _KIND_OF_PATTERN.get(accession_kind(a) or "")) for a in accessions]


def _select(ctx: Context, result: ResultType, params: Params) -> Iterator[Any]:
    """The records a search names, lazily; errors are raised now, before any streaming."""
    query = params.get("query", "").strip()
    node = parse(query, result.fields.__contains__) if query else None
    keys = _includes(result, params)
    if keys is None and node is not None:
        terms = accession_terms(node)
        keys = None if terms is None else [(a.upper(), kind) for a, kind in terms]
    if keys is None:
        records: Iterator[Any] = result.every(ctx.catalog)
    else:
        keys = list(dict.fromkeys(keys))
        chained = itertools.chain.from_iterable(
            result.lookup(ctx.catalog, accession, kind) for accession, kind in keys
        )
        records = chained if len(keys) < 2 else _unique(chained)
    if node is not None:
        records = _matching(records, node, result)
    return records


def _matching(records: Iterable[Any], node: Node, result: ResultType) -> Iterator[Any]:
    fields = result.fields
    for record in records:
        if matches(node, lambda name: fields[name].get(record)):  # noqa: B023 (used at once)
            yield record


def _unique(records: Iterable[Any]) -> Iterator[Any]:
    seen: set[str] = set()
    for record in records:
        if record.accession not in seen:
            seen.add(record.accession)
            yield record


def _page(records: Iterator[Any], params: Params) -> Iterator[Any]:
    offset = _count(params, "offset", 0)
    limit = _count(params, "limit", _DEFAULT_LIMIT)
    return itertools.islice(records, offset, offset + limit if limit else None)


def _search(ctx: Context, params: Params) -> Report:
    result = _result(params)
    is_json = _is_json(params)
    columns = _columns(result, params, accession_last=True)
    records = _page(_select(ctx, result, params), params)
    return Report(result=result, columns=columns, records=records, json=is_json)


def _filereport(ctx: Context, params: Params) -> Report:
    result = _result(params)
    is_json = _is_json(params)
    columns = _columns(result, params, accession_last=False)
    accession = params.get("accession", "").strip()
    if not accession:
        raise BadRequest("The accession parameter is required")
    records = _page(result.lookup(ctx.catalog, accession, None), params)
    # An unknown accession or one with no rows: 204 No Content (sradownloader#9).
    return Report(result=result, columns=columns, records=records, json=is_json, empty_status=204)


async def _warm_md5(result: ResultType, record: Any) -> None:
    for item in result.files(record):
        if item.size > _THREAD_MD5_ABOVE:
            await asyncio.to_thread(md5_of, item.path, item.size)


def _peek(report: Report) -> Report | web.Response:
    """Compute the first row now, so an empty /filereport becomes 204 before any fault."""
    if report.empty_status == 200:
        return report
    first = next(report.records, None)
    if first is None:
        return web.Response(status=report.empty_status)
    records = itertools.chain((first,), report.records)
    return dataclasses.replace(report, records=records)


async def _stream(request: web.Request, report: Report, fault: Fault | None) -> web.StreamResponse:
    fields = [report.result.fields[name] for name in report.columns]
    ctx = request.config_dict[CONTEXT]
    host = ctx.ftp_host()
    # *_ftp values name ftp.sra.ebi.ac.uk; with local links, the emulator's file host.
    relink = [name.endswith("_ftp") for name in report.columns]
    wants_md5 = any(name.endswith("_md5") for name in report.columns)
    response = web.StreamResponse(status=200)
    response.content_type = "application/json" if report.json else "text/plain"
    if fault is not None and fault.kind == "gzip_header":
        response.headers["Content-Encoding"] = "gzip"
    exchange = request[EXCHANGE]
    exchange.status = 200
    await response.prepare(request)
    slow = fault.bytes_per_second if fault is not None and fault.kind == "slow" else None
    cut = fault if fault is not None and fault.kind in ("reset", "truncate") else None
    sender = Sender(request, response, exchange, rate=slow, cut=cut)
    parts = ["[" if report.json else "\t".join(report.columns) + "\n"]
    size = len(parts[0])
    for n, record in enumerate(report.records):
        if wants_md5:
            await _warm_md5(report.result, record)
        values = [field.get(record) for field in fields]
        if host != FTP_HOST:
            values = [
                v.replace(FTP_HOST + "/", host + "/") if swap else v
                for v, swap in zip(values, relink, strict=True)
            ]
        if report.json:
            # ENA's JSON has every value as a string, multi-file values ';'-joined.
            line = ("," if n else "") + json.dumps(dict(zip(report.columns, values, strict=True)))
        else:
            line = "\t".join(values) + "\n"
        parts.append(line)
        size += len(line)
        if size >= _FLUSH_AT:
            if not await sender.send("".join(parts).encode()):
                return response
            parts, size = [], 0
    if report.json:
        parts.append("]")
    await sender.send("".join(parts).encode())
    return response


def _return_fields(ctx: Context, params: Params) -> web.Response:
    result = _result(params)
    rows = [(field.name, field.description, field.type) for field in result.fields.values()]
    if _is_json(params):
        return web.json_response([{"columnId": n, "description": d, "type": t} for n, d, t in rows])
    text = "columnId\tdescription\ttype\n" + "".join(f"{n}\t{d}\t{t}\n" for n, d, t in rows)
    return web.Response(text=text, content_type="text/plain")


def _count_records(ctx: Context, params: Params) -> web.Response:
    result = _result(params)
    is_json = _is_json(params)
    total = sum(1 for _ in _select(ctx, result, params))
    if is_json:
        return web.json_response({"count": str(total)})
    return web.Response(text=f"count\n{total}\n", content_type="text/plain")


def _results(ctx: Context, params: Params) -> web.Response:
    text = "resultId\tdescription\n" + "".join(
        f"{name}\t{name.replace('_', ' ')}\n" for name in RESULTS
    )
    return web.Response(text=text, content_type="text/plain")


Builder = Callable[[Context, Params], Report | web.Response]


def _endpoint(build: Builder) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handler(request: web.Request) -> web.StreamResponse:
        ctx = request.config_dict[CONTEXT]
        answer: Report | web.Response
        try:
            answer = build(ctx, await _params(request))
            if isinstance(answer, Report):
                answer = _peek(answer)
        except (BadRequest, QueryError) as exc:
            answer = web.Response(status=400, text=str(exc), content_type="text/plain")
        streams = isinstance(answer, Report)

        def applicable(fault: Fault) -> bool:
            if fault.kind in ("status", "gzip_header", "maintenance"):
                return True
            return streams and fault.kind in _BODY_FAULTS

        fault = ctx.faults.pick(host="www", path=request.path, applicable=applicable)
        if fault is not None:
            request[EXCHANGE].fault = fault.kind
            if fault.kind == "status":
                return fault_response(fault)
            if fault.kind == "maintenance":
                return web.Response(text=_MAINTENANCE, content_type="text/html")
        if isinstance(answer, Report):
            return await _stream(request, answer, fault)
        if fault is not None and fault.kind == "gzip_header":
            answer.headers["Content-Encoding"] = "gzip"
        return answer

    return handler


@web.middleware
async def _rate_limit(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    ena = request.config_dict[ENA]
    if ena.portal_window is not None:
        # ENA documents no Retry-After; EnaOptions.portal_retry_after adds one.
        retry_after = ena.options.portal_retry_after
        refused = ena.portal_window.refusal(request, 429, retry_after=retry_after)
        if refused is not None:
            return refused
    return await handler(request)


def build_portal_app() -> web.Application:
    """The Portal API, mounted at PORTAL_PREFIX on the ``www`` host, rate-limited as ENA."""
    app = web.Application(middlewares=[_rate_limit])
    search = _endpoint(_search)
    app.router.add_get("/search", search)
    app.router.add_post("/search", search)
    app.router.add_get("/filereport", _endpoint(_filereport))
    app.router.add_get("/returnFields", _endpoint(_return_fields))
    app.router.add_get("/count", _endpoint(_count_records))
    app.router.add_get("/results", _endpoint(_results))
    return app
