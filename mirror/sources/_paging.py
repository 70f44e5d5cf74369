"""Walking paged APIs: JSON:API page numbers (in parallel when the count is known),
JSON:API cursors (in sequence), and EnteroBase's limit/offset ``links.paging.next``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .._exceptions import SourceError
from .._tasks import stopped
from .._urls import redact_url

if TYPE_CHECKING:
    from .._http import Http

__all__ = ["Params", "iter_jsonapi", "iter_paging_next", "page_url"]

Params = Sequence[tuple[str, str]]


def page_url(url: str, page: int) -> str:
    """``url`` with its ``page`` query parameter set to ``page`` (other parameters kept)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "page"]
    query.append(("page", str(page)))
    return urlunsplit(parts._replace(query=urlencode(query)))


def _links(doc: Any, url: str) -> dict[str, Any]:
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        raise SourceError(f"{redact_url(url)}: not a JSON:API list document")
    links = doc.get("links")
    return links if isinstance(links, dict) else {}


async def iter_jsonapi(
    http: Http,
    url: str,
    *,
    params: Params = (),
    follow: Callable[[str], str] = lambda u: u,
    page_size: int,
    ahead: int,
) -> AsyncIterator[list[dict[str, Any]]]:
    """The ``data`` items of a JSON:API list, one page at a time, in page order.

    With page-number pagination (``meta.pagination.pages`` known and ``links.next``
    carrying ``page=``) the remaining pages are fetched ``ahead`` at a time; a
    cursor-paginated list (only ``links.next``) is read in sequence. ``follow``
    turns a link from the document into the URL to request (host rewriting).
    ``page_size`` and ``ahead`` come from ``tuning.sources``.
    """
    first_params = [*params, ("page_size", str(page_size))]
    doc = await http.get_json(url, params=first_params)
    links = _links(doc, url)
    yield doc["data"]
    pagination = (doc.get("meta") or {}).get("pagination") or {}
    pages = pagination.get("pages")
    nxt = links.get("next")
    if not nxt:
        return
    nxt = follow(nxt)
    if isinstance(pages, int) and pages > 1 and "page=" in urlsplit(nxt).query:
        async for data in _numbered(http, nxt, range(2, pages + 1), ahead):
            yield data
        return
    while nxt:
        doc = await http.get_json(nxt)
        links = _links(doc, nxt)
        yield doc["data"]
        nxt = follow(links["next"]) if links.get("next") else None


async def _numbered(
    http: Http, template: str, pages: range, ahead: int
) -> AsyncIterator[list[dict[str, Any]]]:
    async def fetch(page: int) -> list[dict[str, Any]]:
        target = page_url(template, page)
        doc = await http.get_json(target)
        _links(doc, target)
        data: list[dict[str, Any]] = doc["data"]
        return data

    window: list[asyncio.Task[list[dict[str, Any]]]] = []
    todo = iter(pages)
    try:
        for page in todo:
            window.append(asyncio.ensure_future(fetch(page)))
            if len(window) >= ahead:
                break
        while window:
            data = await window.pop(0)
            nxt = next(todo, None)
            if nxt is not None:
                window.append(asyncio.ensure_future(fetch(nxt)))
            yield data
    finally:
        # The consumer stopped early or failed: the pages in flight are ours to end.
        await stopped(*window)


async def iter_paging_next(
    http: Http,
    url: str,
    *,
    params: Params = (),
    auth: tuple[str, str] | None = None,
    follow: Callable[[str], str] = lambda u: u,
) -> AsyncIterator[dict[str, Any]]:
    """Whole documents of an EnteroBase-style list, following ``links.paging.next``.

    The list ends when ``paging`` has no ``next`` (EnteroBase sends ``{}`` on the
    last page) or a page comes back empty. ``records`` is not trusted (its value
    disagrees with the items in EnteroBase's own examples).
    """
    doc = await http.get_json(url, params=params, auth=auth)
    while True:
        if not isinstance(doc, dict):
            raise SourceError(f"{redact_url(url)}: expected a JSON object")
        yield doc
        paging = (doc.get("links") or {}).get("paging") or {}
        nxt = paging.get("next") if isinstance(paging, dict) else None
        if not nxt:
            return
        doc = await http.get_json(follow(nxt), auth=auth)
