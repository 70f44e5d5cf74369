"""MGnify's v1 JSON:API (``/metagenomics/api/v1``): studies, analyses, downloads, files."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Any
from urllib.parse import quote

from aiohttp import web

from .._blob import missing, send_blob
from .._content import sha1_of
from .._context import CONTEXT, Context
from .._send import send_document
from ._jsonapi import (
    JSON,
    ApiError,
    Listing,
    cursor_page,
    document,
    error_document,
    number_page,
    origin,
)
from ._records import (
    MGNIFY_LATEST,
    MGNIFY_PREFIX,
    PIPELINE_VERSIONS,
    MgnifyAnalysis,
    MgnifyDownload,
    MgnifyStudy,
    download_key,
)
from ._v2 import MGNIFY_V2

__all__ = ["MGNIFY_LATEST", "MGNIFY_PREFIX", "build_mgnify_app", "find_study"]

# SHA1 of a big generated file takes a while: compute it off the loop.
_THREAD_SHA1_ABOVE = 8 * 1024 * 1024
# Relationships emgapi lists on an analysis that the emulator only links to, and the
# URL path under the analysis of each.
_ANALYSIS_LINKS: dict[str, tuple[str, ...]] = {
    "interpro-identifiers": ("interpro-identifiers",),
    "taxonomy-lsu": ("taxonomy", "lsu"),
    "taxonomy-itsunite": ("taxonomy", "unite"),
    "go-terms": ("go-terms",),
    "genome-properties": ("genome-properties",),
    "taxonomy": ("taxonomy",),
    "go-slim": ("go-slim",),
    "taxonomy-itsonedb": ("taxonomy", "itsonedb"),
    "taxonomy-ssu": ("taxonomy", "ssu"),
    "antismash-gene-clusters": ("antismash-gene-clusters",),
}

Handler = Callable[[web.Request], Awaitable[dict[str, Any]]]


class _Links:
    """Absolute links as emgapi writes them for one request."""

    def __init__(self, request: web.Request) -> None:
        self.base = origin(request) + MGNIFY_PREFIX
        # DRF's reverse() keeps a ``format`` query parameter on every link it builds
        # (the ``?format=json`` seen on real download URLs).
        fmt = request.query.get("format")
        self.suffix = f"?format={quote(fmt, safe='')}" if fmt else ""

    def url(self, *parts: str) -> str:
        return "/".join((self.base, *parts)) + self.suffix

    def related(self, *parts: str) -> dict[str, Any]:
        return {"links": {"related": self.url(*parts)}}

    def resource(self, kind: str, ident: str, *parts: str) -> dict[str, Any]:
        return {"links": {"related": self.url(*parts)}, "data": {"type": kind, "id": ident}}


def _study_item(study: MgnifyStudy, links: _Links) -> dict[str, Any]:
    acc = study.accession
    samples = {a.sample for a in study.analyses if a.sample}
    times = [a.complete_time for a in study.analyses]
    # Keys and their order as emgapi's StudySerializer writes them.
    relationships: dict[str, Any] = {
        "geocoordinates": links.related("studies", acc, "geocoordinates"),
        "studies": {**links.related("studies", acc, "studies"), "data": []},
        "downloads": links.related("studies", acc, "downloads"),
        "analyses": links.related("studies", acc, "analyses"),
        "samples": links.related("studies", acc, "samples"),
        "publications": links.related("studies", acc, "publications"),
        "biomes": {
            **links.related("studies", acc, "biomes"),
            "data": [
                {
                    "type": "biomes",
                    "id": biome,
                    "links": {"self": links.url("biomes", quote(biome, safe=":"))},
                }
                for biome in study.biomes
            ],
        },
    }
    return {
        "type": "studies",
        "id": acc,
        "attributes": {
            "accession": acc,
            "bioproject": study.bioproject,
            "samples-count": len(samples),
            "is-private": False,
            "last-update": max(times) if times else None,
            "secondary-accession": study.secondary_accession,
            "centre-name": "EMBL-EBI",
            "public-release-date": None,
            "study-abstract": study.name,
            "study-name": study.name,
            "data-origination": "SUBMITTED",
        },
        "relationships": relationships,
        "links": {"self": links.url("studies", acc)},
    }


def _analysis_item(analysis: MgnifyAnalysis, links: _Links) -> dict[str, Any]:
    acc = analysis.accession
    # emgapi writes a to-one relationship that is empty as ``{"data": null}``, no links.
    empty: dict[str, Any] = {"data": None}
    sample, run, assembly = analysis.sample, analysis.run, analysis.assembly
    relationships: dict[str, Any] = {
        name: links.related("analyses", acc, *path) for name, path in _ANALYSIS_LINKS.items()
    }
    relationships.update(
        {
            "run": links.resource("runs", run, "runs", run) if run else empty,
            "sample": links.resource("samples", sample, "samples", sample) if sample else empty,
            "downloads": links.related("analyses", acc, "downloads"),
            "study": links.resource("studies", analysis.study, "studies", analysis.study),
            "assembly": (
                links.resource("assemblies", assembly, "assemblies", assembly)
                if assembly
                else empty
            ),
        }
    )
    return {
        "type": "analysis-jobs",
        "id": acc,
        "attributes": {
            "pipeline-version": analysis.pipeline_version,
            "experiment-type": analysis.experiment_type,
            "analysis-summary": [
                {"key": "Downloadable result files", "value": str(len(analysis.downloads))}
            ],
            "accession": acc,
            "analysis-status": analysis.status,
            "is-private": False,
            "last-update": analysis.complete_time,
            "mgx-accession": None,
            "complete-time": analysis.complete_time,
            "instrument-platform": analysis.instrument_platform,
            "instrument-model": analysis.instrument_model,
        },
        "relationships": relationships,
        "links": {"self": links.url("analyses", acc)},
    }


def _download_item(analysis: MgnifyAnalysis, item: MgnifyDownload, links: _Links) -> dict[str, Any]:
    checksum = sha1_of(download_key(analysis.accession, item.alias), item.size) if item.sha1 else ""
    return {
        "type": "analysis-job-downloads",
        "id": item.alias,
        "attributes": {
            "alias": item.alias,
            "file-format": {
                "name": item.format_name,
                "extension": item.format_extension,
                "compression": item.compression,
            },
            "description": {"label": item.label, "description": item.description},
            "group-type": item.group_type,
            # emgapi: checksum "" and algorithm "" where no checksum was back-filled.
            "file-checksum": {
                "checksum": checksum,
                "checksum-algorithm": "SHA1" if checksum else "",
            },
        },
        "relationships": {
            "pipeline": {
                "data": {"type": "pipelines", "id": item.pipeline},
                "links": {"related": links.url("pipelines", item.pipeline)},
            }
        },
        # The alias is one path segment: "/" in it is sent as %2F.
        "links": {
            "self": links.url("analyses", analysis.accession, "file", quote(item.alias, safe=""))
        },
    }


def find_study(ctx: Context, accession: str) -> MgnifyStudy | None:
    """emgapi's ``study_accession_query``: the number after ``MGYS``, else the ENA study
    (``secondary_accession``) or BioProject (``project_id``) accession."""
    wanted = accession.strip().upper()
    try:
        number: int | None = int(wanted.lstrip("MGYS"))
    except ValueError:
        number = None
    for study in ctx.catalog.mgnify_studies:
        if number is not None:
            if int(study.accession[4:]) == number:
                return study
        elif wanted in (study.secondary_accession, study.bioproject):
            return study
    return None


def _study(ctx: Context, request: web.Request) -> MgnifyStudy:
    study = find_study(ctx, request.match_info["accession"])
    if study is None:
        raise ApiError(404, "Not found.")
    return study


def _analysis(ctx: Context, request: web.Request) -> MgnifyAnalysis:
    analysis = ctx.catalog.mgnify_analysis(request.match_info["accession"])
    if analysis is None:
        raise ApiError(404, "Not found.")
    return analysis


def _filtered(
    ctx: Context, request: web.Request, analyses: Iterable[MgnifyAnalysis]
) -> list[MgnifyAnalysis]:
    """emgapi's AnalysisJobFilter subset and ordering; unknown parameters are ignored."""
    query = request.query
    version = query.get("pipeline_version")
    if version and version not in PIPELINE_VERSIONS:
        detail = f"Select a valid choice. {version} is not one of the available choices."
        raise ApiError(
            400, detail, code="invalid_choice", pointer="/data/attributes/pipeline-version"
        )
    wanted = {
        "pipeline_version": version,
        "experiment_type": query.get("experiment_type"),
        "sample_accession": query.get("sample_accession"),
        "accession": query.get("accession"),
    }
    study = query.get("study_accession")
    found = find_study(ctx, study) if study else None
    result = []
    for analysis in analyses:
        values = {
            "pipeline_version": analysis.pipeline_version,
            "experiment_type": analysis.experiment_type,
            "sample_accession": analysis.sample,
            "accession": analysis.accession,
        }
        if any(want and values[key] != want for key, want in wanted.items()):
            continue
        if study and (found is None or analysis.study != found.accession):
            continue
        result.append(analysis)
    ordering = query.get("ordering", "")
    field = ordering.lstrip("-")
    if field in ("accession", "pipeline"):
        key = (lambda a: a.accession) if field == "accession" else (lambda a: a.pipeline_version)
        result.sort(key=key, reverse=ordering.startswith("-"))
    else:
        # emgapi's default ordering is ``-pipeline_id``: newest pipeline first.
        result.sort(key=lambda a: a.pipeline_version, reverse=True)
    return result


async def _get_study(request: web.Request) -> dict[str, Any]:
    ctx = request.config_dict[CONTEXT]
    return {"data": _study_item(_study(ctx, request), _Links(request))}


async def _study_analyses(request: web.Request) -> dict[str, Any]:
    ctx = request.config_dict[CONTEXT]
    # A list filtered by the study: an unknown study is an empty list, not a 404.
    study = find_study(ctx, request.match_info["accession"])
    found = study.analyses if study is not None else ()
    page = number_page(request, _filtered(ctx, request, found))
    links = _Links(request)
    return page.document([_analysis_item(a, links) for a in page.items])


async def _study_downloads(request: web.Request) -> dict[str, Any]:
    # Study-level summary files: the emulated studies have none.
    _study(request.config_dict[CONTEXT], request)
    return number_page(request, []).document([])


async def _analyses(request: web.Request) -> dict[str, Any]:
    ctx = request.config_dict[CONTEXT]
    page = number_page(request, _filtered(ctx, request, ctx.catalog.iter_mgnify_analyses()))
    links = _Links(request)
    return page.document([_analysis_item(a, links) for a in page.items])


async def _get_analysis(request: web.Request) -> dict[str, Any]:
    ctx = request.config_dict[CONTEXT]
    return {"data": _analysis_item(_analysis(ctx, request), _Links(request))}


async def _downloads(request: web.Request) -> dict[str, Any]:
    ctx = request.config_dict[CONTEXT]
    analysis = _analysis(ctx, request)
    paginate = cursor_page if analysis.cursor else number_page
    page: Listing = paginate(request, analysis.downloads)
    for item in page.items:
        if item.sha1 and item.size > _THREAD_SHA1_ABOVE:
            await asyncio.to_thread(
                sha1_of, download_key(analysis.accession, item.alias), item.size
            )
    links = _Links(request)
    items = [_download_item(analysis, item, links) for item in page.items]
    wrong = request.config_dict[MGNIFY_V2].wrong_sha1
    for item in items:
        if (analysis.accession, item["id"]) in wrong:
            item["attributes"]["file-checksum"] = {
                "checksum": "0" * 40,
                "checksum-algorithm": "SHA1",
            }
    return page.document(items)


async def _file(request: web.Request) -> web.StreamResponse:
    ctx = request.config_dict[CONTEXT]
    analysis = ctx.catalog.mgnify_analysis(request.match_info["accession"])
    alias = request.match_info["alias"]
    item = analysis.download(alias) if analysis is not None else None
    if analysis is None or item is None:
        body = document(error_document(ApiError(404, "Not found.")))
        return missing(request, "www", web.Response(status=404, body=body, content_type=JSON))
    # emgapi answers with X-Accel-Redirect, so nginx serves the bytes (and ranges).
    headers = {"Content-Disposition": f"attachment; filename={alias}"}
    return await send_blob(
        request,
        host="www",
        key=download_key(analysis.accession, alias),
        size=item.size,
        headers=headers,
    )


def _endpoint(handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def endpoint(request: web.Request) -> web.StreamResponse:
        status = 200
        try:
            doc = await handler(request)
        except ApiError as exc:
            status, doc = exc.status, error_document(exc)
        # emgapi's default renderer writes JSON:API documents as application/json.
        return await send_document(
            request, document(doc), host="www", status=status, content_type=JSON
        )

    return endpoint


def build_mgnify_app() -> web.Application:
    """The v1 API, mounted at MGNIFY_PREFIX on the ``www`` host; GET only, no rate limit."""
    app = web.Application()
    app.router.add_get("/studies/{accession}", _endpoint(_get_study))
    app.router.add_get("/studies/{accession}/analyses", _endpoint(_study_analyses))
    app.router.add_get("/studies/{accession}/downloads", _endpoint(_study_downloads))
    app.router.add_get("/analyses", _endpoint(_analyses))
    app.router.add_get("/analyses/{accession}", _endpoint(_get_analysis))
    app.router.add_get("/analyses/{accession}/downloads", _endpoint(_downloads))
    # ".+": an alias sent with %2F in it arrives decoded, as several segments.
    app.router.add_get("/analyses/{accession}/file/{alias:.+}", _file)
    return app
