"""MGnify: studies → analyses → downloads, through the v1 JSON:API, into file tasks.

Facts this module relies on (ARCHIVES.md, research/mgnify-enterobase-cram.md):

* Lists page by number (``page``, ``page_size``; ``meta.pagination.pages``) or, on
  some endpoints, by cursor (only ``links.next``); both are walked by
  :mod:`._paging`. Links are absolute and name the public host.
* A download item gives the file name (``alias``), its group (``group-type``, whose
  casing is inconsistent across pipeline configs), ``file-format.name``,
  ``description.label``, ``relationships.pipeline.data.id`` and a SHA1 in
  ``file-checksum`` that is an empty string for analyses never back-filled.
* Large outputs are chunked into ``_1 … _N`` items: each is its own task.
* Analyses that failed QC have no downloads: reported, not fatal.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final, Literal
from urllib.parse import quote

from .. import _validate as v
from .._accessions import ena_kind, is_mgnify_analysis, is_mgnify_study
from .._exceptions import (
    CredentialsError,
    HTTPStatusError,
    SourceError,
    UnsafePathError,
    collapsed,
)
from .._models import FileTask
from .._paths import safe_name
from .._registry import Accessions, CredentialLookup, GetOptions, SourceKind
from .._streams import fan_out, produced
from . import Source, SourceContext
from ._filters import report_filters
from ._links import rewrite
from ._paging import iter_jsonapi
from .mgnify_v2 import DEFAULT_BASE_V2, MgnifyV2Source
from .mgnify_webin import WebinLogin

__all__ = ["KIND", "MgnifySource", "MgnifySpec", "download_task"]

logger = logging.getLogger(__name__)

#: The public API; overridable under ``endpoints: mgnify``.
DEFAULT_BASE: Final = "https://www.ebi.ac.uk/metagenomics/api/v1"


@dataclass(frozen=True, kw_only=True, slots=True)
class MgnifySpec:
    studies: tuple[str, ...] = ()
    analyses: tuple[str, ...] = ()
    pipeline_version: str | None = None
    groups: tuple[str, ...] = ()
    formats: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    #: ``v1`` (JSON:API, SHA1s) or ``v2`` (private data through a Webin login).
    api: Literal["v1", "v2"] = "v1"


def _lower(values: Iterable[str]) -> frozenset[str]:
    return frozenset(v.casefold() for v in values)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def download_task(analysis: str, item: dict[str, Any], follow: Any = lambda u: u) -> FileTask:
    """The file task for one ``analysis-job-downloads`` item.

    A name that cannot be a file name under ``mgnify/{analysis}/`` (``../x``,
    ``/etc/x``, empty) still becomes a task, one that fails without a request, so
    the run reports it with the rest instead of dropping it silently.
    """
    attrs = item.get("attributes") or {}
    alias = _text(attrs.get("alias")) or _text(item.get("id"))
    url = follow(_text((item.get("links") or {}).get("self")))
    checksum = attrs.get("file-checksum") or {}
    digest = _text(checksum.get("checksum")).strip().lower()
    sha1 = digest if _text(checksum.get("checksum-algorithm")).upper() == "SHA1" else ""
    error = None
    try:
        name = safe_name(alias)
    except UnsafePathError as exc:
        name = quote(alias, safe="") or "(empty name)"
        if name in (".", ".."):
            name = f"(unsafe name {alias!r})"
        error = f"MGnify {analysis}: {exc}; not downloaded"
    if not url and error is None:
        error = f"MGnify {analysis}: download {alias!r} has no links.self URL"
    return FileTask(
        source="mgnify",
        accession=analysis,
        url=url,
        path=f"mgnify/{analysis}/{name}",
        checksum=sha1 or None,
        verify="sha1" if sha1 else "size",
        error=error,
    )


class MgnifySource:
    """Expands an ``mgnify:`` manifest entry through the MGnify v1 API."""

    name = "mgnify"
    #: Plain GETs of public files.
    hooks = None

    def __init__(self, spec: MgnifySpec, ctx: SourceContext) -> None:
        self.spec = spec
        self.ctx = ctx
        self.base = ctx.endpoints["mgnify"].rstrip("/")
        self._default = DEFAULT_BASE
        self._groups = _lower(spec.groups)
        self._formats = _lower(spec.formats)
        self._labels = _lower(spec.labels)
        #: Per filter, every value the listed downloads carry (as the service spells it):
        #: a filter that matches nothing is reported with the values that exist.
        self._seen: dict[str, set[str]] = {"groups": set(), "formats": set(), "labels": set()}
        self._listed = self._planned = 0

    def _follow(self, url: str) -> str:
        return rewrite(url, self.base, self._default)

    async def expand(self) -> AsyncIterator[list[FileTask]]:
        async for batch in produced(self._run):
            yield batch

    async def _run(self, emit: Callable[[list[FileTask]], Awaitable[None]]) -> None:
        """List analyses and expand ``tuning.sources.mgnify_analyses`` of them at a time."""

        async def analyses() -> AsyncIterator[dict[str, Any]]:
            for study in self.spec.studies:
                async for record in self._study_analyses(study):
                    yield record
            for accession in self.spec.analyses:
                found = await self._analysis(accession)
                if found is not None:
                    yield found

        async def expand(record: dict[str, Any]) -> None:
            tasks = await self._downloads(record)
            if tasks:
                self._planned += len(tasks)
                await emit(tasks)

        # The source fails with its own error (one line for the user), not a group.
        with collapsed():
            await fan_out(analyses(), expand, at_once=self.ctx.sizes.mgnify_analyses)
        self._report_filters()

    async def _study_analyses(self, study: str) -> AsyncIterator[dict[str, Any]]:
        params = []
        if self.spec.pipeline_version:
            params.append(("pipeline_version", self.spec.pipeline_version))
        url = f"{self.base}/studies/{study}/analyses"
        found = 0
        try:
            async for page in iter_jsonapi(
                self.ctx.http,
                url,
                params=params,
                follow=self._follow,
                page_size=self.ctx.sizes.mgnify_page,
                ahead=self.ctx.sizes.pages_ahead,
            ):
                for record in page:
                    if self._pipeline_ok(record):
                        found += 1
                        yield record
        except HTTPStatusError as exc:
            if exc.status == 404:
                self.ctx.warn(f"MGnify: {study}: no such study")
                return
            raise SourceError(f"MGnify: {study}: {exc}") from exc
        if not found:
            version = self.spec.pipeline_version
            self.ctx.warn(
                f"MGnify: {study}: no analyses"
                + (f" with pipeline version {version}" if version else "")
            )

    async def _analysis(self, accession: str) -> dict[str, Any] | None:
        try:
            doc = await self.ctx.http.get_json(f"{self.base}/analyses/{accession}")
        except HTTPStatusError as exc:
            if exc.status == 404:
                self.ctx.warn(f"MGnify: {accession}: no such analysis")
                return None
            raise SourceError(f"MGnify: {accession}: {exc}") from exc
        record = doc.get("data") if isinstance(doc, dict) else None
        if not isinstance(record, dict):
            raise SourceError(f"MGnify: {accession}: not a JSON:API resource document")
        return record if self._pipeline_ok(record) else None

    def _pipeline_ok(self, record: dict[str, Any]) -> bool:
        wanted = self.spec.pipeline_version
        if not wanted:
            return True
        got = _text((record.get("attributes") or {}).get("pipeline-version"))
        return not got or got == wanted

    async def _downloads(self, record: dict[str, Any]) -> list[FileTask]:
        accession = _text(record.get("id")) or _text(
            (record.get("attributes") or {}).get("accession")
        )
        if not accession:
            raise SourceError("MGnify: an analysis record without an id")
        await self.ctx.metadata.write_json(f"mgnify/{safe_name(accession)}.json", record)
        related = (
            ((record.get("relationships") or {}).get("downloads") or {}).get("links") or {}
        ).get("related")
        url = (
            self._follow(related)
            if isinstance(related, str) and related
            else (f"{self.base}/analyses/{accession}/downloads")
        )
        tasks: list[FileTask] = []
        listed = 0
        async for page in iter_jsonapi(
            self.ctx.http,
            url,
            follow=self._follow,
            page_size=self.ctx.sizes.mgnify_page,
            ahead=self.ctx.sizes.pages_ahead,
        ):
            for item in page:
                listed += 1
                self._note(item)
                if self._wanted(item):
                    tasks.append(download_task(accession, item, self._follow))
        self._listed += listed
        if not listed:
            status = _text((record.get("attributes") or {}).get("analysis-status"))
            self.ctx.warn(
                f"MGnify: {accession}: no downloads"
                + (f" (analysis status: {status})" if status else "")
            )
        return tasks

    def _note(self, item: dict[str, Any]) -> None:
        attrs = item.get("attributes") or {}
        for key, value in (
            ("groups", attrs.get("group-type")),
            ("formats", (attrs.get("file-format") or {}).get("name")),
            ("labels", (attrs.get("description") or {}).get("label")),
        ):
            if _text(value):
                self._seen[key].add(_text(value))

    def _report_filters(self) -> None:
        report_filters(
            (
                ("groups", self.spec.groups),
                ("formats", self.spec.formats),
                ("labels", self.spec.labels),
            ),
            self._seen,
            listed=self._listed,
            planned=self._planned,
            asked=", ".join((*self.spec.studies, *self.spec.analyses)),
            warn=self.ctx.warn,
        )

    def _wanted(self, item: dict[str, Any]) -> bool:
        attrs = item.get("attributes") or {}
        if self._groups and _text(attrs.get("group-type")).casefold() not in self._groups:
            return False
        fmt = _text((attrs.get("file-format") or {}).get("name"))
        if self._formats and fmt.casefold() not in self._formats:
            return False
        label = _text((attrs.get("description") or {}).get("label"))
        if self._labels and label.casefold() not in self._labels:
            return False
        pipeline = (
            ((item.get("relationships") or {}).get("pipeline") or {}).get("data") or {}
        ).get("id")
        wanted = self.spec.pipeline_version
        return not (wanted and isinstance(pipeline, str) and pipeline != wanted)


# --------------------------------------------------------------------------- the entry


def parse(w: v.Where, path: v.KeyPath, body: dict[str, object]) -> MgnifySpec:
    studies = v.optional_strings(
        w,
        path,
        body,
        "studies",
        item="MGnify study accession",
        # MGnify looks a study up by its ENA study or BioProject accession too.
        check=v.pattern_check(
            lambda acc: is_mgnify_study(acc) or ena_kind(acc) in ("study", "project"),
            "a MGnify study accession (MGYS and 8 digits) or an ENA study (ERP…, PRJ…)",
        ),
    )
    analyses = v.optional_strings(
        w,
        path,
        body,
        "analyses",
        item="MGnify analysis accession",
        check=v.pattern_check(
            is_mgnify_analysis, "a MGnify analysis accession (MGYA and 8 digits)"
        ),
    )
    if not studies and not analyses:
        raise w.error(path, "no studies or analyses given")
    version = body.get("pipeline_version")
    api = "v1" if body.get("api") is None else v.choice(w, (*path, "api"), body["api"], _APIS)
    labels = v.optional_strings(w, path, body, "labels", item="label")
    if api == "v2" and labels:
        raise w.error(
            (*path, "labels"),
            "API v2 has no download labels: filter by groups (download_group or "
            "download_type) or formats (file_type)",
        )
    return MgnifySpec(
        studies=studies,
        analyses=analyses,
        pipeline_version=None if version is None else _pipeline_version(w, path, version),
        groups=v.optional_strings(w, path, body, "groups", item="group"),
        formats=v.optional_strings(w, path, body, "formats", item="format"),
        labels=labels,
        api="v2" if api == "v2" else "v1",
    )


_APIS = ("v1", "v2")


def _pipeline_version(w: v.Where, path: v.KeyPath, value: object) -> str:
    here = (*path, "pipeline_version")
    if isinstance(value, str):
        text = v.text(w, here, value, "a version such as '5.0'")
        # MGnify's filter takes only its own spelling ("5.0"): "5" is answered with 400.
        return f"{text}.0" if text.isdigit() else text
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise w.expected(here, "a version such as '5.0'", value)
    # ``5.10`` unquoted is the float 5.1: prefer the text as written when we have it.
    written = w.raw.get(here)
    if written is not None and "." in written:
        return written
    # MGnify names every pipeline "N.M"; a bare ``5`` means 5.0.
    return f"{value}.0" if isinstance(value, int) else str(value)


def _entry(accessions: tuple[str, ...], options: GetOptions) -> MgnifySpec:
    return MgnifySpec(
        studies=tuple(a for a in accessions if is_mgnify_study(a)),
        analyses=tuple(a for a in accessions if not is_mgnify_study(a)),
    )


def webin_login(spec: MgnifySpec, lookup: CredentialLookup) -> WebinLogin | None:
    """API v2's Webin account, when both variables are set (else public data only)."""
    if spec.api != "v2":
        return None
    user = lookup.credentials.get("MGNIFY_WEBIN_USER")
    password = lookup.credentials.get("MGNIFY_WEBIN_PASSWORD")
    if user is None and password is None:
        return None
    if user is None or password is None:
        missing = "MGNIFY_WEBIN_USER" if user is None else "MGNIFY_WEBIN_PASSWORD"
        raise CredentialsError(
            f"{lookup.where}: {missing} is not set; MGnify's private data needs both "
            "MGNIFY_WEBIN_USER and MGNIFY_WEBIN_PASSWORD (unset both for public data only)",
            hint="set MGNIFY_WEBIN_USER (Webin-N) and MGNIFY_WEBIN_PASSWORD",
        )
    return WebinLogin(username=user, password=password)


def _build(spec: MgnifySpec, ctx: SourceContext, credentials: WebinLogin | None) -> Source:
    if spec.api == "v2":
        return MgnifyV2Source(spec, ctx, credentials)
    return MgnifySource(spec, ctx)


KIND: SourceKind[MgnifySpec, WebinLogin | None] = SourceKind(
    key="mgnify",
    spec=MgnifySpec,
    fields=("studies", "analyses", "pipeline_version", "groups", "formats", "labels", "api"),
    parse=parse,
    credentials=webin_login,
    build=_build,
    optional_environment=("MGNIFY_WEBIN_USER", "MGNIFY_WEBIN_PASSWORD"),
    endpoints={"mgnify": DEFAULT_BASE, "mgnify_v2": DEFAULT_BASE_V2},
    accessions=Accessions(
        title="MGnify",
        claims=lambda acc: is_mgnify_study(acc) or is_mgnify_analysis(acc),
        entry=_entry,
    ),
)
