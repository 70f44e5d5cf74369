"""JSON:API as MGnify's v1 API writes it: links, page-number and cursor pagination, errors.

emgapi is Django REST Framework with ``rest_framework_json_api``; what is copied here
is that stack's behaviour: ``JsonApiPageNumberPagination`` (links keep the request's
query, sorted, with ``page`` replaced), DRF's ``CursorPagination`` tokens, and the
JSON:API exception handler's error documents.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib import parse

from aiohttp import web

from ._options import MGNIFY

__all__ = [
    "JSON",
    "JSONAPI",
    "ApiError",
    "Listing",
    "cursor_page",
    "document",
    "error_document",
    "number_page",
    "origin",
]

T = TypeVar("T")

JSONAPI = "application/vnd.api+json"
#: What emgapi answers with: its default renderer is plain JSON, whatever the document.
JSON = "application/json"
# What the real service writes into every absolute link, whatever host was asked.
PUBLIC_ORIGIN = "https://www.ebi.ac.uk"
PAGE_SIZE = 25
MAX_PAGE_SIZE = 250
_LATEST, _V1 = "/metagenomics/api/latest/", "/metagenomics/api/v1/"
# DRF accepts this word as the number of the last page.
_LAST = "last"


class ApiError(Exception):
    """An error answer: a JSON:API ``errors`` document with this status and detail."""

    def __init__(
        self, status: int, detail: str, *, code: str = "not_found", pointer: str = ""
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.code = code
        self.pointer = pointer


def error_document(error: ApiError) -> dict[str, Any]:
    """The JSON:API exception handler's document: ``source`` only for a field's error."""
    item: dict[str, Any] = {"detail": error.detail, "status": str(error.status)}
    if error.pointer:
        item["source"] = {"pointer": error.pointer}
    item["code"] = error.code
    return {"errors": [item]}


def document(doc: dict[str, Any]) -> bytes:
    # DRF renders compact JSON.
    return json.dumps(doc, separators=(",", ":")).encode()


def origin(request: web.Request) -> str:
    """Scheme and host for absolute links: the public one unless told otherwise.

    The real service names https://www.ebi.ac.uk in every link whatever the client
    asked, so a client configured with another endpoint (a mirror, this emulator)
    must map links onto it; ``MgnifyOptions(public_links=False)`` writes our own address.
    """
    if request.config_dict[MGNIFY].public_links:
        return PUBLIC_ORIGIN
    return f"{request.scheme}://{request.host}"


def _replace_query(request: web.Request, key: str, value: str) -> str:
    """DRF's ``replace_query_param`` on the absolute request URI."""
    query = parse.parse_qs(request.query_string, keep_blank_values=True)
    query[key] = [value]
    encoded = parse.urlencode(sorted(query.items()), doseq=True)
    # ``latest`` is the public host's alias of v1: emgapi itself only knows v1.
    path = request.rel_url.raw_path.replace(_LATEST, _V1, 1)
    return f"{origin(request)}{path}?{encoded}"


def _positive(raw: str | None, default: int, cap: int | None) -> int:
    # DRF's _positive_int(strict=True): anything but a positive integer means default.
    try:
        value = int(raw) if raw is not None else default
    except ValueError:
        return default
    if value <= 0:
        return default
    return min(value, cap) if cap is not None else value


@dataclass(frozen=True, kw_only=True, slots=True)
class Listing:
    """One page of a list: its items, and the top-level ``links`` and ``meta``."""

    items: Sequence[Any]
    links: dict[str, str | None]
    meta: dict[str, Any]

    def document(self, data: list[dict[str, Any]]) -> dict[str, Any]:
        return {"links": self.links, "data": data, "meta": self.meta}


def number_page(request: web.Request, items: Sequence[T]) -> Listing:
    """Page-number pagination: ``page`` (1-based) and ``page_size`` (25, at most 250)."""
    size = _positive(request.query.get("page_size"), PAGE_SIZE, MAX_PAGE_SIZE)
    # Django's Paginator: an empty list still has one (empty) page.
    pages = max(1, math.ceil(len(items) / size))
    raw = request.query.get("page", "1")
    if raw == _LAST:
        number = pages
    elif raw.isdigit() and 1 <= int(raw) <= pages:
        number = int(raw)
    else:
        raise ApiError(404, "Invalid page.")

    def link(index: int) -> str | None:
        return _replace_query(request, "page", str(index)) if index else None

    return Listing(
        items=items[(number - 1) * size : number * size],
        links={
            "first": link(1),
            "last": link(pages),
            "next": link(number + 1 if number < pages else 0),
            "prev": link(number - 1),
        },
        meta={"pagination": {"page": number, "pages": pages, "count": len(items)}},
    )


def _encode_cursor(request: web.Request, position: int, *, reverse: bool) -> str:
    tokens = {"r": "1", "p": str(position)} if reverse else {"p": str(position)}
    token = base64.b64encode(parse.urlencode(tokens).encode("ascii")).decode("ascii")
    return _replace_query(request, "cursor", token)


def _decode_cursor(raw: str) -> tuple[bool, int]:
    try:
        text = base64.b64decode(raw.encode("ascii"), validate=True).decode("ascii")
        tokens = parse.parse_qs(text, keep_blank_values=True)
        reverse = tokens.get("r", ["0"])[0] == "1"
        position = int(tokens["p"][0])
    except (ValueError, KeyError, UnicodeError, binascii.Error):
        raise ApiError(404, "Invalid cursor") from None
    return reverse, position


def cursor_page(request: web.Request, items: Sequence[T]) -> Listing:
    """DRF cursor pagination over positions 0..n-1: only next/prev links, only a count.

    A cursor is base64 of ``p=<position>`` (items after it) or ``r=1&p=<position>``
    (items before it), as DRF encodes them; ``page_size`` has no maximum here.
    """
    size = _positive(request.query.get("page_size"), PAGE_SIZE, None)
    raw = request.query.get("cursor")
    reverse, position = _decode_cursor(raw) if raw else (False, -1)
    indexes = range(len(items))
    if reverse:
        before = indexes[: max(0, min(position, len(items)))]
        page = before[-size:]
        has_prev, has_next = len(before) > len(page), True
    else:
        after = indexes[max(0, position + 1) :]
        page = after[:size]
        has_prev, has_next = raw is not None, len(after) > size
    first = page[0] if page else position + (0 if reverse else 1)
    last = page[-1] if page else position - (1 if reverse else 0)
    return Listing(
        items=[items[i] for i in page],
        links={
            "next": _encode_cursor(request, last, reverse=False) if has_next else None,
            "prev": _encode_cursor(request, first, reverse=True) if has_prev else None,
        },
        meta={"pagination": {"count": len(items)}},
    )
