"""MGnify's API v2 (``/metagenomics/api/v2``): studies, paged analyses, downloads, JWT
login and signed private-data links; and the public results tree on the file host.

No v2 answer has been recorded from the real service: the shapes follow emgapi-v2's
schemas (``analyses/schemas.py``) and the download item of the MGnify web client's own
fixture (``cypress/fixtures/apiv2/analyses/analysisMGYA00000002.json``), as read in
research/outbox-mgnify2-webin-upload.md section 2. What the emulator does:

* Pages as django-ninja's ``PageNumberPagination``: ``{count, items}``, ``page`` ≥ 1
  and ``page_size`` ≥ 1 (else 422), the size capped silently, a page past the end is
  200 with ``items: []``; no ``next``.
* ``file_size_bytes`` is always null and there is no checksum. Legacy analyses
  (pipelines V1–V5) have the same MGYA and bytes as in v1, whose SHA1s describe them.
* A Bearer token that is bad or expired is 401 ``token_not_valid`` on every endpoint,
  anonymous ones too; an object private to another account is 404.
* Private files are served under ``private-data/`` behind ``?expires=&token=``, the
  token an HMAC-SHA256 over the path (after ``private-data/``) and ``expires``: 403
  when missing or wrong, 410 once expired. Unlike OpenResty, which hashes the decoded
  URI, the emulator hashes the path exactly as sent, so a client that re-encodes the
  link is caught.
* File URLs name the emulator's own hosts: a client could not map ftp.ebi.ac.uk.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from .._blob import send_blob
from .._context import CONTEXT, Context
from .._send import send_document
from ._options import MGNIFY
from ._records import MgnifyAnalysis, MgnifyStudy
from ._v2_state import (
    MGNIFY_V2,
    RESULTS_ROOT,
    MgnifyV2State,
    download_type,
    file_path,
    file_type,
    index_size,
    is_legacy,
    v2_pipeline,
)

__all__ = [
    "MGNIFY_V2",
    "MGNIFY_V2_PREFIX",
    "RESULTS_ROOT",
    "MgnifyV2State",
    "add_results_routes",
    "build_mgnify_v2_app",
    "index_size",
]

MGNIFY_V2_PREFIX = "/metagenomics/api/v2"
_PRIVATE = MGNIFY_V2_PREFIX + "/private-data/"
_PAGE_SIZE_DEFAULT = 25
_INVALID_TOKEN = {"detail": "Token is invalid or expired", "code": "token_not_valid"}


class _Answer(Exception):
    def __init__(self, status: int, doc: Any) -> None:
        super().__init__(status)
        self.status = status
        self.doc = doc


def _state(request: web.Request) -> MgnifyV2State:
    return request.config_dict[MGNIFY_V2]


def _user(request: web.Request) -> str | None:
    """The account of a valid Bearer token, None without one; 401 for a bad one."""
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    state = _state(request)
    payload = state.decode(token.strip()) if scheme.lower() == "bearer" else None
    if payload is None or float(payload.get("exp", 0)) <= state.now():
        raise _Answer(401, _INVALID_TOKEN)
    return str(payload.get("username", ""))


def _visible(owner: str, user: str | None) -> bool:
    return not owner or owner == user


def _study_visible(study: MgnifyStudy, user: str | None) -> bool:
    return _visible(study.owner, user)


def _analysis_visible(study: MgnifyStudy, analysis: MgnifyAnalysis, user: str | None) -> bool:
    return _visible(study.owner, user) and _visible(analysis.owner, user)


def _study_item(study: MgnifyStudy) -> dict[str, Any]:
    lineage = study.biomes[0] if study.biomes else None
    return {
        "accession": study.accession,
        "ena_accessions": [a for a in (study.secondary_accession, study.bioproject) if a],
        "title": study.name,
        "biome": (
            {"biome_name": lineage.rsplit(":", 1)[-1], "lineage": lineage} if lineage else None
        ),
        "updated_at": "2025-06-25T10:00:00Z",
        "metadata": {},
    }


def _study_detail(study: MgnifyStudy) -> dict[str, Any]:
    return {
        **_study_item(study),
        "first_accession": study.secondary_accession or study.bioproject or None,
        "downloads": [],
    }


def _analysis_item(analysis: MgnifyAnalysis) -> dict[str, Any]:
    run = (
        {
            "accession": analysis.run,
            "instrument_model": analysis.instrument_model,
            "instrument_platform": analysis.instrument_platform,
        }
        if analysis.run
        else None
    )
    sample = (
        {"accession": analysis.sample, "ena_accessions": [analysis.sample]}
        if analysis.sample
        else None
    )
    return {
        "study_accession": analysis.study,
        "accession": analysis.accession,
        "experiment_type": analysis.experiment_type.capitalize(),
        "run": run,
        "sample": sample,
        "assembly": (
            {"accession": analysis.assembly, "updated_at": analysis.complete_time}
            if analysis.assembly
            else None
        ),
        "pipeline_version": v2_pipeline(analysis.pipeline_version),
    }


def _link(ctx: Context, state: MgnifyV2State, path: str, *, private: bool) -> str:
    if private:
        return f"{ctx.bases['www']}{_PRIVATE}{path}{state.sign(path)}"
    return f"{ctx.bases['ftp']}{RESULTS_ROOT}{path}"


def _analysis_detail(
    ctx: Context, state: MgnifyV2State, study: MgnifyStudy, analysis: MgnifyAnalysis
) -> dict[str, Any]:
    private = bool(study.owner or analysis.owner)
    legacy = is_legacy(analysis)
    downloads = []
    for item in analysis.downloads:
        path = file_path(study, analysis, item, private=private)
        url = _link(ctx, state, path, private=private) if item.has_url else None
        downloads.append(
            {
                "alias": item.alias,
                "download_type": download_type(item.group_type),
                "file_type": file_type(item.format_extension),
                "download_group": item.group
                or ("all" if legacy else item.group_type.casefold().replace(" ", "_")),
                "short_description": item.label,
                "long_description": item.description or item.label,
                "file_size_bytes": None,
                "index_files": [
                    {
                        "index_type": kind,
                        "url": _link(ctx, state, f"{path}.{kind}", private=private),
                    }
                    for kind in (item.index_types if item.has_url else ())
                ],
                "url": url,
            }
        )
    results = f"{study.accession[:7]}/{study.accession}/{analysis.accession}"
    return {
        **_analysis_item(analysis),
        "downloads": downloads,
        "read_run": [_analysis_item(analysis)["run"]] if analysis.run else None,
        "quality_control_summary": None,
        "metadata": {},
        "results_dir": _link(ctx, state, results, private=private),
    }


def _find_study(ctx: Context, accession: str) -> MgnifyStudy | None:
    return ctx.catalog.mgnify_study(accession) if accession.upper().startswith("MGYS") else None


def _page(request: web.Request, items: list[Any]) -> dict[str, Any]:
    cap = request.config_dict[MGNIFY].page_size_max
    page = _positive(request, "page", 1)
    size = min(_positive(request, "page_size", _PAGE_SIZE_DEFAULT), cap)
    start = (page - 1) * size
    return {"count": len(items), "items": items[start : start + size]}


def _positive(request: web.Request, name: str, default: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _Answer(
            422,
            {
                "detail": [
                    {
                        "type": "int_parsing",
                        "loc": ["query", name],
                        "msg": "Input should be a valid integer, unable to parse string as "
                        "an integer",
                    }
                ]
            },
        ) from None
    if value < 1:
        raise _Answer(
            422,
            {
                "detail": [
                    {
                        "type": "greater_than_equal",
                        "loc": ["query", name],
                        "msg": "Input should be greater than or equal to 1",
                        "ctx": {"ge": 1},
                    }
                ]
            },
        )
    return value


_NOT_FOUND = {"detail": "Not Found"}


async def _studies(request: web.Request) -> Any:
    ctx, user = request.config_dict[CONTEXT], _user(request)
    search = request.query.get("search", "").casefold()
    found = [
        _study_item(study)
        for study in ctx.catalog.mgnify_studies
        if _study_visible(study, user)
        and (
            not search
            or search in study.accession.casefold()
            or search in study.name.casefold()
            or any(search in a.casefold() for a in (study.secondary_accession, study.bioproject))
        )
    ]
    return _page(request, found)


async def _study(request: web.Request) -> Any:
    ctx, user = request.config_dict[CONTEXT], _user(request)
    study = _find_study(ctx, request.match_info["accession"])
    if study is None or not _study_visible(study, user):
        raise _Answer(404, _NOT_FOUND)
    return _study_detail(study)


async def _insdc(request: web.Request) -> Any:
    if not request.config_dict[MGNIFY].insdc_route:
        raise _Answer(404, _NOT_FOUND)
    ctx = request.config_dict[CONTEXT]
    _user(request)
    wanted = request.match_info["accession"].upper()
    for study in ctx.catalog.mgnify_studies:
        if not study.owner and wanted in (study.secondary_accession, study.bioproject):
            return _study_detail(study)
    raise _Answer(404, _NOT_FOUND)


async def _study_analyses(request: web.Request) -> Any:
    ctx, user = request.config_dict[CONTEXT], _user(request)
    study = _find_study(ctx, request.match_info["accession"])
    if study is None or not _study_visible(study, user):
        raise _Answer(404, _NOT_FOUND)
    analyses = sorted(
        (a for a in study.analyses if _analysis_visible(study, a, user)),
        key=lambda a: a.accession,
    )
    return _page(request, [_analysis_item(a) for a in analyses])


async def _analysis(request: web.Request) -> Any:
    ctx, user = request.config_dict[CONTEXT], _user(request)
    analysis = ctx.catalog.mgnify_analysis(request.match_info["accession"])
    study = ctx.catalog.mgnify_study(analysis.study) if analysis is not None else None
    if analysis is None or study is None or not _analysis_visible(study, analysis, user):
        raise _Answer(404, _NOT_FOUND)
    return _analysis_detail(ctx, _state(request), study, analysis)


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        body = None
    if not isinstance(body, dict):
        raise _Answer(422, {"detail": [{"type": "json_invalid", "loc": ["body"]}]})
    return body


async def _login(request: web.Request) -> Any:
    body = await _json_body(request)
    accounts = request.config_dict[MGNIFY].accounts
    user, password = str(body.get("username", "")), str(body.get("password", ""))
    if not user or accounts.get(user) != password:
        raise _Answer(401, {"detail": "Invalid credentials"})
    return {"token": _state(request).issue(user), "token_type": "sliding"}


async def _refresh(request: web.Request) -> Any:
    body = await _json_body(request)
    state = _state(request)
    payload = state.decode(str(body.get("token", "")))
    if payload is None or float(payload.get("refresh_exp", 0)) <= state.now():
        raise _Answer(401, _INVALID_TOKEN)
    return {
        "token": state.issue(str(payload.get("username", "")), int(payload["refresh_exp"])),
        "token_type": "sliding",
    }


def _endpoint(
    handler: Callable[[web.Request], Awaitable[Any]],
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def endpoint(request: web.Request) -> web.StreamResponse:
        status = 200
        try:
            doc = await handler(request)
        except _Answer as answer:
            status, doc = answer.status, answer.doc
        body = json.dumps(doc, separators=(",", ":")).encode()
        return await send_document(request, body, host="www", status=status)

    return endpoint


def _raw(request: web.Request, prefix: str) -> tuple[str, str]:
    """The path after ``prefix`` and the query, exactly as the client sent them."""
    path, _, query = request.raw_path.partition("?")
    return path[len(prefix) :], query


async def _private_file(request: web.Request) -> web.StreamResponse:
    ctx, state = request.config_dict[CONTEXT], _state(request)
    path, query = _raw(request, _PRIVATE)
    state.private_targets.append(request.raw_path)
    params = dict(part.partition("=")[::2] for part in query.split("&") if part)
    expires, token = params.get("expires", ""), params.get("token", "")
    try:
        if not expires or not token:
            return web.Response(status=403, text="Forbidden")
        if not expires.isdigit() or int(expires) < state.now():
            return web.Response(status=410, text="Gone")
        wanted = hmac.new(state.secret, (path + expires).encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(wanted, token):
            return web.Response(status=403, text="Forbidden")
        found = state.files(ctx).get(("private", path))
        if found is None:
            return web.Response(status=404, text="Not Found")
        return await send_blob(request, host="www", key=found.key, size=found.size)
    finally:
        state.ended(path)


async def _public_file(request: web.Request) -> web.StreamResponse:
    ctx, state = request.config_dict[CONTEXT], _state(request)
    path, _ = _raw(request, RESULTS_ROOT)
    found = state.files(ctx).get(("public", path))
    if found is None:
        return web.Response(status=404, text="Not Found")
    return await send_blob(request, host="ftp", key=found.key, size=found.size)


def add_results_routes(app: web.Application) -> None:
    """The file host's ``mgnify_results`` tree, where v2's public download URLs point."""
    app.router.add_get(RESULTS_ROOT + "{tail:.+}", _public_file)


def build_mgnify_v2_app() -> web.Application:
    """The v2 API, mounted at MGNIFY_V2_PREFIX on the ``www`` host."""
    app = web.Application()
    app.router.add_post("/auth/sliding", _endpoint(_login))
    app.router.add_post("/auth/sliding/refresh", _endpoint(_refresh))
    app.router.add_get("/studies/", _endpoint(_studies))
    app.router.add_get("/studies/insdc/{accession}", _endpoint(_insdc))
    app.router.add_get("/studies/{accession}", _endpoint(_study))
    app.router.add_get("/studies/{accession}/analyses/", _endpoint(_study_analyses))
    app.router.add_get("/analyses/{accession}", _endpoint(_analysis))
    app.router.add_get("/private-data/{tail:.+}", _private_file)
    return app
