"""The file host (ftp.sra.ebi.ac.uk over HTTP): GET/HEAD with RFC 7233 ranges and faults."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from aiohttp import web

from ._content import iter_range
from ._context import CONTEXT, EXCHANGE, fault_response
from ._faults import Fault
from ._records import EnaFile
from ._send import Sender

__all__ = ["LAST_MODIFIED", "RangePlan", "add_file_routes", "etag_of", "plan_range"]

# One fixed date for every file: deterministic, and If-Range by date is testable.
LAST_MODIFIED = "Mon, 01 Jan 2024 00:00:00 GMT"


@dataclass(frozen=True, slots=True)
class RangePlan:
    """The answer to a (Range, If-Range) pair: 200, 206 or 416, and bytes [start, end)."""

    status: int
    start: int
    end: int


def etag_of(file: EnaFile) -> str:
    """A strong ETag from (path, size): stable across runs, changes if the file would."""
    digest = hashlib.sha256(f"{file.path}\0{file.size}".encode()).hexdigest()
    return f'"{digest[:32]}"'


def _parse_spec(spec: str, size: int) -> RangePlan | None:
    """One ``first-last`` / ``first-`` / ``-suffix`` spec; None when it is malformed."""
    first, dash, last = spec.strip().partition("-")
    if not dash or not (first or last):
        return None
    if (first and not first.isdigit()) or (last and not last.isdigit()):
        return None
    if not first:
        suffix = int(last)
        if suffix == 0 or size == 0:
            return RangePlan(416, 0, 0)
        return RangePlan(206, max(0, size - suffix), size)
    start = int(first)
    if last and int(last) < start:
        return None
    if start >= size:
        return RangePlan(416, 0, 0)
    end = size if not last else min(int(last) + 1, size)
    return RangePlan(206, start, end)


def plan_range(
    size: int,
    range_header: str | None,
    *,
    if_range: str | None = None,
    etag: str = "",
    last_modified: str = LAST_MODIFIED,
    honour: bool = True,
) -> RangePlan:
    """Decide the status and byte span of a GET (RFC 7233).

    A Range the server cannot use (another unit, several ranges, bad syntax) is
    ignored, giving 200 and the whole file, as the RFC allows. If-Range must match the
    strong ETag or the exact Last-Modified date, else the Range is ignored.
    """
    whole = RangePlan(200, 0, size)
    if range_header is None or not honour:
        return whole
    if if_range is not None and if_range.strip() not in (etag, last_modified):
        return whole
    unit, eq, specs = range_header.partition("=")
    if not eq or unit.strip().lower() != "bytes" or "," in specs:
        return whole
    return _parse_spec(specs, size) or whole


def _headers(file: EnaFile, plan: RangePlan, length: int, *, ranges: bool) -> dict[str, str]:
    headers = {
        "Content-Type": "application/octet-stream",
        # "none" when range support is off globally; the 'no_range' fault keeps
        # advertising "bytes" while ignoring Range, the nastier real-world case.
        "Accept-Ranges": "bytes" if ranges else "none",
        "ETag": etag_of(file),
        "Last-Modified": LAST_MODIFIED,
    }
    if plan.status == 206:
        headers["Content-Range"] = f"bytes {plan.start}-{plan.start + length - 1}/{file.size}"
    elif plan.status == 416:
        headers["Content-Range"] = f"bytes */{file.size}"
    return headers


async def _serve(request: web.Request) -> web.StreamResponse:
    ctx = request.config_dict[CONTEXT]
    exchange = request[EXCHANGE]
    file = ctx.catalog.file(request.path)
    if file is None:
        fault = ctx.faults.pick(
            host="ftp", path=request.path, applicable=lambda f: f.kind == "status"
        )
        if fault is not None:
            exchange.fault = fault.kind
            return fault_response(fault)
        return web.Response(status=404, text="Not Found")

    range_header = request.headers.get("Range")
    etag = etag_of(file)
    honour = ctx.options.range_support
    plan = plan_range(
        file.size, range_header, if_range=request.headers.get("If-Range"), etag=etag, honour=honour
    )
    has_body = request.method == "GET" and plan.status != 416 and plan.end > plan.start

    def applicable(fault: Fault) -> bool:
        kind = fault.kind
        if kind in ("status", "gzip_header"):
            return True
        if kind == "no_range":
            return plan.status in (206, 416)
        if not has_body:
            return False
        if kind in ("reset", "truncate", "short"):
            return fault.after_bytes < plan.end - plan.start
        if kind == "corrupt":
            return plan.start <= fault.corrupt_offset(file.size) < plan.end
        return kind == "slow"

    fault = ctx.faults.pick(host="ftp", path=request.path, applicable=applicable)
    if fault is not None:
        exchange.fault = fault.kind
        if fault.kind == "status":
            return fault_response(fault)
        if fault.kind == "no_range":
            plan = RangePlan(200, 0, file.size)

    end = plan.end
    if fault is not None and fault.kind == "short":
        end -= fault.after_bytes
    headers = _headers(file, plan, end - plan.start, ranges=honour)
    if fault is not None and fault.kind == "gzip_header":
        headers["Content-Encoding"] = "gzip"
    response = web.StreamResponse(status=plan.status, headers=headers)
    response.content_length = end - plan.start if plan.status != 416 else 0
    exchange.status = plan.status
    await response.prepare(request)
    if request.method == "HEAD" or plan.status == 416:
        return response

    rates = [r for r in (ctx.options.bandwidth, _slow(fault)) if r is not None]
    cut = fault if fault is not None and fault.kind in ("reset", "truncate") else None
    sender = Sender(request, response, exchange, rate=min(rates) if rates else None, cut=cut)
    flip = fault.corrupt_offset(file.size) if fault is not None and fault.kind == "corrupt" else -1
    position = plan.start
    for piece in iter_range(file.path, file.size, plan.start, end, chunk=sender.piece_size):
        data: memoryview | bytearray = piece
        if position <= flip < position + len(piece):
            data = bytearray(piece)
            data[flip - position] ^= 0xFF
        position += len(piece)
        if not await sender.send(data):
            break
    return response


def _slow(fault: Fault | None) -> int | None:
    return fault.bytes_per_second if fault is not None and fault.kind == "slow" else None


def add_file_routes(app: web.Application) -> None:
    """ENA's FTP tree on the ``ftp`` host: ``/vol1/...`` as on ftp.sra.ebi.ac.uk."""
    # HEAD is answered by the GET route (aiohttp adds it), with the same headers.
    app.router.add_get("/vol1/{tail:.+}", _serve)
