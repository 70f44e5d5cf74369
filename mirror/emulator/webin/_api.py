"""ENA's Webin submission services: REST V2 (``/ena/submit/webin-v2``: submit, queue,
poll) and the older drop-box (``/ena/submit/drop-box/submit/``), one XML document per
object type as a multipart form part, which ena-upload-cli still uses."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import PurePosixPath

from aiohttp import BodyPartReader, web

from .._context import CONTEXT, EXCHANGE, basic_credentials, fault_response
from .._send import send_document
from ._doc import Document, DocumentError, Format, parse_document, sniff
from ._state import WEBIN
from ._wire import (
    CONTENT_TYPES,
    document_format,
    error_body,
    negotiate,
    queue_body,
    receipt_body,
)

__all__ = ["DROPBOX_PREFIX", "WEBIN_PREFIX", "build_dropbox_app", "build_webin_app"]

WEBIN_PREFIX = "/ena/submit/webin-v2"
DROPBOX_PREFIX = "/ena/submit/drop-box"
# Faults a Webin answer can meet once the submission is processed: the receipt lost
# or damaged in transit. Status faults are decided before (see _gate).
_BODY_FAULTS = frozenset({"reset", "truncate", "short", "slow", "gzip_header"})
_SUFFIXES: dict[str, Format] = {".json": "json", ".xml": "xml"}


class _BadRequest(Exception):
    pass


def _error(request: web.Request, status: int, reason: str, fmt: Format) -> web.Response:
    headers = {"WWW-Authenticate": 'Basic realm="Realm"'} if status == 401 else None
    return web.Response(
        status=status,
        body=error_body(status, reason, request.path, fmt),
        content_type=CONTENT_TYPES[fmt],
        headers=headers,
    )


def _gate(request: web.Request) -> web.Response | str:
    """The Webin account of a request, or the answer to send instead.

    A status fault comes first and nothing is processed, as when a gateway answers
    for the service; then Basic auth with a Webin account (401 otherwise, as JSON
    or XML by Accept). The Authorization header is never logged.
    """
    ctx = request.config_dict[CONTEXT]
    fault = ctx.faults.pick(host="www", path=request.path, applicable=lambda f: f.kind == "status")
    if fault is not None:
        request[EXCHANGE].fault = fault.kind
        return fault_response(fault)
    webin = request.config_dict[WEBIN]
    credentials = basic_credentials(request.headers.get("Authorization"))
    if credentials is None or not webin.authenticate(*credentials):
        webin.refused()
        return _error(
            request, 401, "Unauthorized", negotiate(request.headers.get("Accept"), "json")
        )
    return credentials[0]


async def _file_part(request: web.Request) -> tuple[bytes, Format | None]:
    """The ``file`` part of a multipart body: webin-cli's way of sending the document."""
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader) or part.name != "file":
                await part.release()
                continue
            # webin-cli: "The remote endpoint responds back with 400 status code if
            # file name is not present in content-disposition header."
            if not part.filename:
                raise _BadRequest
            data = bytes(await part.read())
            suffix = PurePosixPath(part.filename).suffix.lower()
            fmt = document_format(part.headers.get("Content-Type", "")) or _SUFFIXES.get(suffix)
            return data, fmt
    except ValueError as exc:  # aiohttp's word for a malformed multipart body
        raise _BadRequest from exc
    raise _BadRequest  # no part named "file"


async def _read(request: web.Request) -> tuple[Document | DocumentError, Format | None, bool]:
    """(the parsed document or why not, its format, whether it came as a multipart file)."""
    multipart = request.content_type == "multipart/form-data"
    if multipart:
        data, fmt = await _file_part(request)
    else:
        data, fmt = await request.read(), document_format(request.content_type)
    fmt = fmt or sniff(data)
    if fmt is None:
        return DocumentError("The submission must be a JSON or an XML document."), None, multipart
    try:
        return parse_document(data, fmt), fmt, multipart
    except DocumentError as exc:
        return exc, fmt, multipart


def _answer_format(request: web.Request, fmt: Format | None, multipart: bool) -> Format:
    # A multipart file answers in its own format whatever Accept says: webin-cli sends
    # RestTemplate's default Accept (JSON first) with XML and reads an XML receipt.
    if multipart and fmt is not None:
        return fmt
    return negotiate(request.headers.get("Accept"), fmt or "json")


async def _send(request: web.Request, body: bytes, fmt: Format) -> web.StreamResponse:
    # 200 whether or not the submission succeeded: clients branch on "success".
    return await send_document(
        request, body, host="www", content_type=CONTENT_TYPES[fmt], kinds=_BODY_FAULTS
    )


async def _posted(
    request: web.Request,
) -> tuple[str, Document | DocumentError, Format | None, bool] | web.Response:
    """The account and the document of a submission, or the answer that refuses them."""
    gate = _gate(request)
    if not isinstance(gate, str):
        return gate
    try:
        doc, fmt, multipart = await _read(request)
    except _BadRequest:
        return _error(request, 400, "Bad Request", negotiate(request.headers.get("Accept"), "json"))
    return gate, doc, fmt, multipart


async def _submit(request: web.Request) -> web.StreamResponse:
    posted = await _posted(request)
    if isinstance(posted, web.Response):
        return posted
    gate, doc, fmt, multipart = posted
    ctx = request.config_dict[CONTEXT]
    receipt = request.config_dict[WEBIN].submit(gate, doc, today=ctx.clock.today)
    out = _answer_format(request, fmt, multipart)
    return await _send(request, receipt_body(receipt, out), out)


async def _queue(request: web.Request) -> web.StreamResponse:
    posted = await _posted(request)
    if isinstance(posted, web.Response):
        return posted
    gate, doc, fmt, multipart = posted
    ctx = request.config_dict[CONTEXT]
    out = _answer_format(request, fmt, multipart)
    sid = request.config_dict[WEBIN].enqueue(gate, doc, out, today=ctx.clock.today)
    # The link names this emulator, so a client can follow it as given.
    poll = f"{request.scheme}://{request.host}{WEBIN_PREFIX}/submit/poll/{sid}"
    return await _send(request, queue_body(sid, gate, poll, out), out)


async def _poll(request: web.Request) -> web.StreamResponse:
    gate = _gate(request)
    if not isinstance(gate, str):
        return gate
    accept = request.headers.get("Accept")
    try:
        result = request.config_dict[WEBIN].poll(gate, request.match_info["id"])
    except KeyError:
        # Another account's submission is as unknown as one that never was.
        return _error(request, 404, "Not Found", negotiate(accept, "json"))
    if result is None:
        return web.Response(status=202)  # still queued: no body at all
    receipt, fmt = result
    # Without a preference in Accept, the receipt comes as the queue answer did.
    out = negotiate(accept, fmt)
    return await _send(request, receipt_body(receipt, out), out)


async def _dropbox_parts(request: web.Request) -> Document | DocumentError:
    """The form parts (SUBMISSION, STUDY, SAMPLE, …: one ``*_SET`` document each) read
    as the one ``<WEBIN>`` document holding them all, as REST V2 takes them."""
    if request.content_type != "multipart/form-data":
        raise _BadRequest
    webin = ET.Element("WEBIN")
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                await part.release()
                continue
            data = bytes(await part.read())
            try:
                webin.append(ET.fromstring(data))
            except ET.ParseError as exc:
                return DocumentError(f"Invalid {part.name} XML: {exc}.")
    except ValueError as exc:  # aiohttp's word for a malformed multipart body
        raise _BadRequest from exc
    if not len(webin):
        raise _BadRequest
    try:
        return parse_document(ET.tostring(webin), "xml")
    except DocumentError as exc:
        return exc


async def _dropbox_submit(request: web.Request) -> web.StreamResponse:
    gate = _gate(request)
    if not isinstance(gate, str):
        return gate
    ctx = request.config_dict[CONTEXT]
    try:
        doc = await _dropbox_parts(request)
    except _BadRequest:
        return _error(request, 400, "Bad Request", negotiate(request.headers.get("Accept"), "json"))
    receipt = request.config_dict[WEBIN].submit(gate, doc, today=ctx.clock.today)
    # The drop-box answers an XML receipt only, whatever Accept says.
    return await _send(request, receipt_body(receipt, "xml"), "xml")


def build_dropbox_app() -> web.Application:
    """The drop-box, mounted at DROPBOX_PREFIX on the ``www`` host."""
    app = web.Application()
    app.router.add_post("/submit/", _dropbox_submit)
    app.router.add_post("/submit", _dropbox_submit)
    return app


def build_webin_app() -> web.Application:
    """The service, mounted at WEBIN_PREFIX on the ``www`` host."""
    app = web.Application()
    app.router.add_post("/submit", _submit)
    # webin-cli resolves "submit/" against the base: the trailing slash is its URL.
    app.router.add_post("/submit/", _submit)
    app.router.add_post("/submit/queue", _queue)
    app.router.add_get("/submit/poll/{id}", _poll)
    return app
