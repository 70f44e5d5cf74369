"""MGnify through API v2 (``mgnify: {api: v2}``): studies → paged analyses → downloads.

Facts this module relies on (research/outbox-mgnify2-webin-upload.md section 2; no v2
answer has been recorded from the real service, so they come from emgapi-v2's code):

* ``/studies/{MGYS}``; an ENA study accession through ``/studies/insdc/{acc}``, which
  not every deployment has (404), else ``/studies/?search={acc}`` and the study whose
  ``ena_accessions`` hold it.
* ``/studies/{MGYS}/analyses/?page=N&page_size=M`` answers ``{count, items}``: pages
  from 1, ``page_size`` capped silently (the size of the first page is the size that
  counts), a page past the end is 200 with no items, and there is no ``next``. The
  count says how many pages there are, so no empty page is asked for; without a
  count, pages are read until an empty one.
* Downloads are listed only per analysis (``/analyses/{MGYA}``: ``downloads[]``), so
  a study costs 1 + pages + analyses requests. A download has an ``alias`` (the
  file's name here; not always the URL's), a nullable ``url``, ``index_files[]``
  (``{index_type, url}``, the data URL plus ``.<type>``: saved as
  ``{alias}.{index_type}``), ``file_size_bytes`` (null in practice) and no checksum:
  files are verified by the response's ``Content-Length``.
* Legacy analyses (pipelines V1–V5) kept their MGYA and files from v1, whose
  ``analyses/{MGYA}/downloads`` lists a SHA1 per alias: where it has one, the file is
  verified by it. v1 failing for that cross-check is a warning.
* Private data: a Webin login (``POST /auth/sliding``) gives a sliding JWT, sent as
  ``Authorization: Bearer`` and refreshed (``/auth/sliding/refresh``) before it
  expires; a bad or expired token is 401 even on public endpoints, a private object
  of another account is 404. Private files are signed links (``?expires=&token=``,
  an hour) used exactly as given; a 403 or 410 from one means a fresh link from
  ``/analyses/{MGYA}``, and the ``.part`` resumes with it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from .._exceptions import (
    HTTPStatusError,
    MirrorError,
    SourceError,
    TransferError,
    UnsafePathError,
    collapsed,
)
from .._models import FileTask
from .._paths import safe_name
from .._streams import fan_out, produced
from .._urls import redact_url
from . import Received, SourceContext
from ._filters import report_filters
from ._paging import iter_jsonapi
from .mgnify_webin import WebinLogin, WebinSession

if TYPE_CHECKING:
    from .mgnify import MgnifySpec

__all__ = ["DEFAULT_BASE_V2", "MgnifyV2Source", "normal_pipeline"]

logger = logging.getLogger(__name__)

#: The public API v2; overridable under ``endpoints: mgnify_v2``.
DEFAULT_BASE_V2 = "https://www.ebi.ac.uk/metagenomics/api/v2"
#: Analyses asked for per page (the server caps it silently; 100 today).
PAGE_SIZE = 100


def normal_pipeline(version: str) -> str:
    """A pipeline version as both APIs can be compared: ``V5``, ``5.0``, ``5`` → ``5``."""
    text = version.strip().lstrip("vV")
    return text.removesuffix(".0") if text.count(".") == 1 else text


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _signed(url: str) -> bool:
    query = urlsplit(url).query
    return "expires=" in query and "token=" in query


def _private(url: str) -> bool:
    """Whether ``url`` is one of v2's private files (served only through signed links)."""
    return "/private-data/" in urlsplit(url).path


class MgnifyV2Source:
    """Expands an ``mgnify:`` entry with ``api: v2``; renews expired private links."""

    name = "mgnify"
    #: One stream per file: a signed link may expire between slices.
    parallel_ranges = False
    max_range: int | None = None

    def __init__(
        self,
        spec: MgnifySpec,
        ctx: SourceContext,
        login: WebinLogin | None,
        *,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.spec = spec
        self.ctx = ctx
        self.base = ctx.endpoints["mgnify_v2"].rstrip("/")
        self.v1 = ctx.endpoints["mgnify"].rstrip("/")
        self.session = WebinSession(ctx, self.base, login, now=now) if login else None
        self._groups = {g.casefold() for g in spec.groups}
        self._formats = {f.casefold() for f in spec.formats}
        self._pipeline = normal_pipeline(spec.pipeline_version) if spec.pipeline_version else None
        self._seen: dict[str, set[str]] = {"groups": set(), "formats": set()}
        self._listed = self._planned = 0
        #: The newest link of each private file (by path), and a lock per analysis.
        self._links: dict[str, str] = {}
        self._renewing: dict[str, asyncio.Lock] = {}
        self.hooks = self

    # -- the API -----------------------------------------------------------------------

    async def get(self, path: str, params: list[tuple[str, str]] | None = None) -> Any:
        """GET ``{base}{path}`` as JSON, with the JWT when logged in (renewed on a 401)."""
        url = self.base + path
        for attempt in (1, 2):
            token = await self.session.bearer() if self.session is not None else None
            headers = {"Accept": "application/json"}
            if token is not None:
                headers["Authorization"] = f"Bearer {token}"
            try:
                return await self.ctx.http.get_json(url, params=params, headers=headers)
            except HTTPStatusError as exc:
                if exc.status == 401 and token is not None and self.session and attempt == 1:
                    await self.session.refused(token)
                    continue
                raise
        raise AssertionError("unreachable")

    # -- planning ----------------------------------------------------------------------

    async def expand(self) -> AsyncIterator[list[FileTask]]:
        async for batch in produced(self._run):
            yield batch

    async def _run(self, emit: Callable[[list[FileTask]], Awaitable[None]]) -> None:

        async def analyses() -> AsyncIterator[str]:
            for study in self.spec.studies:
                async for accession in self._study_analyses(study):
                    yield accession
            for accession in self.spec.analyses:
                yield accession

        async def expand(accession: str) -> None:
            tasks = await self._downloads(accession)
            if tasks:
                self._planned += len(tasks)
                await emit(tasks)

        with collapsed():
            await fan_out(analyses(), expand, at_once=self.ctx.sizes.mgnify_analyses)
        self._report_filters()

    async def _study(self, accession: str) -> str | None:
        """The MGYS of ``accession`` (an MGYS or an ENA study), None if MGnify has none."""
        if accession.upper().startswith("MGYS"):
            try:
                doc = await self.get(f"/studies/{accession}")
            except HTTPStatusError as exc:
                if exc.status == 404:
                    return None
                raise SourceError(f"MGnify v2: {accession}: {exc}") from exc
            return _text(doc.get("accession") if isinstance(doc, dict) else None) or accession
        try:
            doc = await self.get(f"/studies/insdc/{quote(accession, safe='')}")
            found = _text(doc.get("accession") if isinstance(doc, dict) else None)
            if found:
                return found
        except HTTPStatusError as exc:
            if exc.status != 404:
                raise SourceError(f"MGnify v2: {accession}: {exc}") from exc
        # Not every deployment has the insdc route: search, then match exactly.
        doc = await self.get("/studies/", [("search", accession), ("page_size", str(PAGE_SIZE))])
        items = doc.get("items") if isinstance(doc, dict) else None
        wanted = accession.casefold()
        for item in items if isinstance(items, list) else ():
            ena = item.get("ena_accessions") if isinstance(item, dict) else None
            if isinstance(ena, list) and wanted in (_text(a).casefold() for a in ena):
                return _text(item.get("accession")) or None
        return None

    async def _study_analyses(self, accession: str) -> AsyncIterator[str]:
        study = await self._study(accession)
        if study is None:
            self.ctx.warn(f"MGnify: {accession}: no such study")
            return
        path = f"/studies/{study}/analyses/"
        found = 0
        try:
            async for page in self._pages(path):
                for item in page:
                    acc = _text(item.get("accession")) if isinstance(item, dict) else ""
                    if acc and self._pipeline_ok(_text(item.get("pipeline_version"))):
                        found += 1
                        yield acc
        except HTTPStatusError as exc:
            raise SourceError(f"MGnify v2: {study}: {exc}") from exc
        if not found:
            version = self.spec.pipeline_version
            self.ctx.warn(
                f"MGnify: {accession}: no analyses"
                + (f" with pipeline version {version}" if version else "")
            )

    async def _pages(self, path: str) -> AsyncIterator[list[Any]]:
        """Items of a django-ninja paged list, page 1 first, the rest ``pages_ahead`` at
        a time once the first page shows the (capped) page size and the count."""

        async def page(number: int) -> tuple[list[Any], int | None]:
            doc = await self.get(path, [("page", str(number)), ("page_size", str(PAGE_SIZE))])
            if not isinstance(doc, dict) or not isinstance(doc.get("items"), list):
                raise SourceError(f"MGnify v2 {path}: not a paged list ({{count, items}})")
            count = doc.get("count")
            return doc["items"], count if isinstance(count, int) else None

        items, count = await page(1)
        if not items:
            return
        yield items
        size, seen, number = len(items), len(items), 1
        if count is not None:
            last = math.ceil(count / size)
            ahead = max(1, self.ctx.sizes.pages_ahead)
            for start in range(2, last + 1, ahead):
                numbers = range(start, min(start + ahead, last + 1))
                for got, _ in await asyncio.gather(*(page(n) for n in numbers)):
                    if not got:
                        return
                    seen += len(got)
                    yield got
                number = numbers[-1]
            if seen >= count:
                return
        # No count, or more items than it said: on until an empty page.
        while True:
            number += 1
            got, _ = await page(number)
            if not got:
                return
            yield got

    def _pipeline_ok(self, version: str) -> bool:
        return not self._pipeline or not version or normal_pipeline(version) == self._pipeline

    async def _downloads(self, accession: str) -> list[FileTask]:
        try:
            doc = await self.get(f"/analyses/{accession}")
        except HTTPStatusError as exc:
            if exc.status == 404:
                self.ctx.warn(f"MGnify: {accession}: no such analysis (or a private one)")
                return []
            raise SourceError(f"MGnify v2: {accession}: {exc}") from exc
        if not isinstance(doc, dict):
            raise SourceError(f"MGnify v2: {accession}: not an analysis document")
        version = _text(doc.get("pipeline_version"))
        if not self._pipeline_ok(version):
            return []
        downloads = [d for d in doc.get("downloads") or () if isinstance(d, dict)]
        await self.ctx.metadata.write_json(
            f"mgnify/{safe_name(accession)}.json", _without_links(doc)
        )
        self._listed += len(downloads)
        for item in downloads:
            for key, value in (
                ("groups", item.get("download_group")),
                ("groups", item.get("download_type")),
                ("formats", item.get("file_type")),
            ):
                if _text(value):
                    self._seen[key].add(_text(value))
        wanted = [d for d in downloads if self._wanted(d)]
        if not downloads:
            self.ctx.warn(f"MGnify: {accession}: no downloads")
        sha1s = await self._v1_sha1s(accession, version) if wanted else {}
        tasks: list[FileTask] = []
        for item in wanted:
            tasks.extend(self._tasks(accession, item, sha1s))
        return tasks

    def _wanted(self, item: dict[str, Any]) -> bool:
        if (
            self._groups
            and not {
                _text(item.get("download_group")).casefold(),
                _text(item.get("download_type")).casefold(),
            }
            & self._groups
        ):
            return False
        return not self._formats or _text(item.get("file_type")).casefold() in self._formats

    async def _v1_sha1s(self, accession: str, version: str) -> dict[str, str]:
        """v1's SHA1 by alias for a legacy analysis (V1–V5); empty for others."""
        try:
            legacy = float(normal_pipeline(version)) < 6
        except ValueError:
            legacy = False
        if not legacy:
            return {}
        found: dict[str, str] = {}
        try:
            async for page in iter_jsonapi(
                self.ctx.http,
                f"{self.v1}/analyses/{accession}/downloads",
                page_size=self.ctx.sizes.mgnify_page,
                ahead=self.ctx.sizes.pages_ahead,
            ):
                for item in page:
                    attrs = item.get("attributes") or {}
                    checksum = attrs.get("file-checksum") or {}
                    digest = _text(checksum.get("checksum")).strip().lower()
                    algorithm = _text(checksum.get("checksum-algorithm")).upper()
                    alias = _text(attrs.get("alias"))
                    if alias and digest and algorithm == "SHA1":
                        found[alias] = digest
        except MirrorError as exc:
            self.ctx.warn(
                f"MGnify: {accession}: v1 checksums not available ({exc}); "
                "its files are verified by size only"
            )
            return {}
        return found

    def _tasks(
        self, accession: str, item: dict[str, Any], sha1s: Mapping[str, str]
    ) -> list[FileTask]:
        alias = _text(item.get("alias"))
        url = _text(item.get("url"))
        if not url:
            self.ctx.warn(
                f"MGnify: {accession}: download {alias!r} has no URL (no results directory); "
                "not downloaded"
            )
            return []
        error = None
        try:
            name = safe_name(alias)
        except UnsafePathError as exc:
            name = quote(alias, safe="") or "(empty name)"
            if name in (".", ".."):
                name = f"(unsafe name {alias!r})"
            error = f"MGnify {accession}: {exc}; not downloaded"
        size = item.get("file_size_bytes")
        sha1 = sha1s.get(alias)
        task = FileTask(
            source="mgnify",
            accession=accession,
            url=url,
            path=f"mgnify/{accession}/{name}",
            size=size if isinstance(size, int) and not isinstance(size, bool) else None,
            checksum=sha1,
            verify="sha1" if sha1 else "size",
            error=error,
        )
        tasks = [task]
        for index in item.get("index_files") or ():
            kind = _text(index.get("index_type")) if isinstance(index, dict) else ""
            link = _text(index.get("url")) if isinstance(index, dict) else ""
            if kind and link:
                tasks.append(
                    FileTask(
                        source="mgnify",
                        accession=accession,
                        url=link,
                        path=f"{task.path}.{safe_name(kind)}",
                        verify="size",
                        error=error,
                    )
                )
        # A signed link is kept here, not in the task: the state store and the index
        # get the link without its signature, and prepare() signs it again.
        for i, one in enumerate(tasks):
            if _signed(one.url):
                self._links[one.path] = one.url
                tasks[i] = dataclasses.replace(one, url=one.url.partition("?")[0])
        return tasks

    def _report_filters(self) -> None:
        report_filters(
            (("groups", self.spec.groups), ("formats", self.spec.formats)),
            self._seen,
            listed=self._listed,
            planned=self._planned,
            asked=", ".join((*self.spec.studies, *self.spec.analyses)),
            warn=self.ctx.warn,
        )

    # -- FileHooks ---------------------------------------------------------------------

    def recoverable(self, error: TransferError) -> bool:
        # An expired (410) or refused (403) signed link: the API signs a fresh one.
        return (
            isinstance(error, HTTPStatusError)
            and error.status in (403, 410)
            and bool(error.url)
            and _signed(error.url)
        )

    async def prepare(self, task: FileTask, error: MirrorError | None) -> FileTask:
        expired = isinstance(error, TransferError) and self.recoverable(error)
        link = self._links.get(task.path)
        if not expired and (link is not None or not _private(task.url)):
            return dataclasses.replace(task, url=link or task.url)
        # An expired link, or a private file planned by another process or run (whose
        # task holds no signature): the analysis, asked again, signs a fresh one.
        stale = error.url if expired and isinstance(error, TransferError) else None
        lock = self._renewing.setdefault(task.accession, asyncio.Lock())
        async with lock:
            # Another file of the analysis may have renewed every link already.
            if self._links.get(task.path) == stale:
                await self._renew(task.accession)
        fresh = self._links.get(task.path)
        if fresh is None or fresh == stale:
            raise SourceError(
                f"MGnify: {task.path}: the API gave no fresh link for {redact_url(task.url)}"
            )
        if expired:
            logger.info("MGnify: %s: the signed link expired; resuming with a fresh one", task.path)
        return dataclasses.replace(task, url=fresh)

    async def _renew(self, accession: str) -> None:
        try:
            doc = await self.get(f"/analyses/{accession}")
        except HTTPStatusError as exc:
            raise SourceError(f"MGnify v2: {accession}: renewing its links: {exc}") from exc
        for item in doc.get("downloads") or () if isinstance(doc, dict) else ():
            if not isinstance(item, dict):
                continue
            try:
                path = f"mgnify/{accession}/{safe_name(_text(item.get('alias')))}"
            except UnsafePathError:
                continue
            if _text(item.get("url")):
                self._links[path] = _text(item.get("url"))
            for index in item.get("index_files") or ():
                if isinstance(index, dict) and _text(index.get("url")):
                    kind = safe_name(_text(index.get("index_type")) or "index")
                    self._links[f"{path}.{kind}"] = _text(index.get("url"))

    async def headers(self, task: FileTask) -> Mapping[str, str]:
        # A signed link is its own authorisation; public files need none.
        return {}

    async def verify(self, task: FileTask, got: Received) -> None:
        # Size (Content-Length) and v1's SHA1 are checked by the engine.
        return None

    async def settled(self, task: FileTask, verified: bool) -> None:
        self._links.pop(task.path, None)


def _without_links(doc: dict[str, Any]) -> dict[str, Any]:
    """The analysis as saved in the metadata: signed links' tokens replaced by ``***``."""

    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        if isinstance(value, str) and value.startswith(("http://", "https://")):
            return redact_url(value)
        return value

    cleaned: dict[str, Any] = clean(doc)
    return cleaned
