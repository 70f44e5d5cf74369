"""The current EGA Data API, as pyega3 uses it: OAuth2 password grant, metadata, plain files.

pyega3's calls (pyega3/libs/auth_client.py, data_client.py, data_file.py): a password
grant at ``url_auth`` with its published OAuth client, ``POST …/userinfo`` for the
user id, ``{url_api_metadata}/datasets`` and ``/datasets/{id}/files`` and
``/files/{id}``, Range slices of ``{url_api}/files/{id}?destinationFormat=plain``, and
one JSON report per download attempt to ``url_api_stats`` (``/v2/download-stats``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from .._blob import missing, send_blob
from .._context import CONTEXT, basic_credentials
from .._send import send_document
from ._records import IV_SIZE, EgaFile, plain_md5
from ._state import EGA, EgaState

__all__ = ["DATA_PREFIX", "STATS_PATH", "TOKEN_PATH", "add_data_api_routes"]

# pyega3's default server file: url_auth …:8443/ega-openid-connect-server/token,
# url_api …:8443/v2 (files), url_api_metadata …/v2/metadata.
TOKEN_PATH = "/ega-openid-connect-server/token"
USERINFO_PATH = "/ega-openid-connect-server/userinfo"
DATA_PREFIX = "/v2"
#: pyega3's url_api_stats, under DATA_PREFIX.
STATS_PATH = "/download-stats"
# Checksums of bigger files are computed in a thread, so listings never stall the loop.
_HASH_INLINE = 8 * 1024 * 1024

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Bearer = Callable[[web.Request, str], Awaitable[web.StreamResponse]]


def _state(request: web.Request) -> EgaState:
    return request.config_dict[EGA]


async def _json(
    request: web.Request, doc: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.StreamResponse:
    body = json.dumps(doc).encode()
    return await send_document(request, body, host="ega", status=status, headers=headers)


async def _token_refused(
    request: web.Request, status: int, error: str, description: str
) -> web.StreamResponse:
    _state(request).count("token_refusals")
    doc = {"error": error, "error_description": description}
    return await _json(request, doc, status)


async def _token(request: web.Request) -> web.StreamResponse:
    state = _state(request)
    form = await request.post()
    fields = {name: value for name, value in form.items() if isinstance(value, str)}
    if fields.get("grant_type") != "password":
        return await _token_refused(
            request, 400, "unsupported_grant_type", "Use grant_type=password"
        )
    # The client authenticates in the form (client_secret_post, as pyega3 does) or
    # with HTTP Basic (client_secret_basic); an unknown client or a wrong or missing
    # secret is refused as the EGA IdP's Spring OAuth2 filter does.
    client = basic_credentials(request.headers.get("Authorization"))
    client_id, secret = client or (fields.get("client_id", ""), fields.get("client_secret", ""))
    if not state.client_ok(client_id, secret):
        state.count("client_refusals")
        return await _token_refused(request, 401, "invalid_client", "Bad client credentials")
    user = state.authenticate(fields.get("username", ""), fields.get("password", ""))
    if user is None:
        return await _token_refused(request, 401, "invalid_grant", "Invalid user credentials")
    doc = {
        "access_token": state.grant(user),
        "token_type": "Bearer",
        "expires_in": int(state.token_ttl),
        "scope": "openid",
    }
    return await _json(request, doc, headers={"Cache-Control": "no-store"})


def _bearer(handler: Bearer) -> Handler:
    """Run ``handler`` for the user of a valid ``Authorization: Bearer`` token, else 401.

    pyega3's test mock answers 400 {"error_description": "invalid token"}; a real
    OAuth2 resource server (RFC 6750) answers 401 invalid_token, as here, so a client
    that refreshes its token on 401 can be tested.
    """

    async def wrapped(request: web.Request) -> web.StreamResponse:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        user = _state(request).bearer_user(token.strip() if scheme.lower() == "bearer" else None)
        if user is None:
            doc = {"error": "invalid_token", "error_description": "Invalid or expired token"}
            challenge = 'Bearer error="invalid_token"'
            return await _json(request, doc, 401, headers={"WWW-Authenticate": challenge})
        return await handler(request, user)

    return wrapped


async def _userinfo(request: web.Request, user: str) -> web.StreamResponse:
    # pyega3 reads only "sub" (POST urljoin(url_auth, "userinfo")).
    return await _json(request, {"sub": user, "email": user, "preferred_username": user})


async def _file_doc(item: EgaFile) -> dict[str, Any]:
    if item.size > _HASH_INLINE:
        checksum = await asyncio.to_thread(plain_md5, item)
    else:
        checksum = plain_md5(item)
    return {
        "fileId": item.file_id,
        # The Data API's fileName is a relative archive path (EGAZ…/b37/x.bam.cip).
        "fileName": item.file_name.lstrip("/"),
        "displayFileName": item.display_name,
        # The archived size, IV included: pyega3 subtracts 16 before asking for ranges.
        "fileSize": item.size + IV_SIZE,
        "plainChecksum": checksum,
        # API v1's name for it; pyega3 reads it when api_version is 1.
        "unencryptedChecksum": checksum,
        "checksumType": "MD5",
        "fileStatus": item.status,
        "datasetId": item.dataset,
    }


async def _refused(request: web.Request, status: int, accession: str) -> web.StreamResponse:
    what = "not found" if status == 404 else "not authorised for this user"
    return await _json(request, {"error": f"{accession} {what}", "status": status}, status)


async def _datasets(request: web.Request, user: str) -> web.StreamResponse:
    datasets = _state(request).datasets_for(user)
    return await _json(request, [{"datasetId": d.dataset_id} for d in datasets])


async def _dataset_files(request: web.Request, user: str) -> web.StreamResponse:
    accession = request.match_info["dataset"]
    dataset = request.config_dict[CONTEXT].catalog.ega_dataset(accession)
    if dataset is None:
        return await _refused(request, 404, accession)
    if not _state(request).may_access(user, dataset.dataset_id):
        return await _refused(request, 403, accession)
    return await _json(request, [await _file_doc(item) for item in dataset.files])


async def _file_metadata(request: web.Request, user: str) -> web.StreamResponse:
    accession = request.match_info["file"]
    found = request.config_dict[CONTEXT].catalog.ega_file(accession)
    if found is None:
        return await _refused(request, 404, accession)
    if not _state(request).may_access(user, found.dataset):
        return await _refused(request, 403, accession)
    return await _json(request, await _file_doc(found))


async def _file_data(request: web.Request, user: str) -> web.StreamResponse:
    accession = request.match_info["file"]
    found = request.config_dict[CONTEXT].catalog.ega_file(accession)
    if found is None:
        body = json.dumps({"error": f"{accession} not found", "status": 404}).encode()
        return missing(
            request, "ega", web.Response(status=404, body=body, content_type="application/json")
        )
    if not _state(request).may_access(user, found.dataset):
        return await _refused(request, 403, accession)
    if not found.downloadable:
        # pyega3 never asks for these: it skips a dataset's files that are not
        # "available", and .gpg files altogether.
        why = "a legacy .gpg file" if found.legacy_gpg else f"fileStatus is {found.status!r}"
        doc = {"error": f"{accession} cannot be downloaded: {why}", "status": 400}
        return await _json(request, doc, 400)
    destination = request.query.get("destinationFormat", "")
    if destination.lower() != "plain":
        # The service defaults to aes128 (re-encrypted); only plain is emulated, and
        # pyega3 never asks for anything else.
        doc = {"error": f"destinationFormat {destination!r} is not supported: use plain"}
        return await _json(request, doc, 400)
    # Range is always honoured here (pyega3 slices depend on it); the 'no_range' fault
    # still makes a response ignore it.
    return await send_blob(request, host="ega", key=found.content_key, size=found.size, ranges=True)


_STATS_STATUSES = frozenset({"Succeeded", "Failed"})


async def _download_stats(request: web.Request, user: str) -> web.StreamResponse:
    """One report of a download attempt; pyega3 reads the answer as JSON."""
    try:
        doc = await request.json()
    except ValueError:
        doc = None
    if (
        not isinstance(doc, dict)
        or not isinstance(doc.get("fileId"), str)
        or doc.get("status") not in _STATS_STATUSES
    ):
        problem = {"error": "a JSON object with fileId and status (Succeeded or Failed)"}
        return await _json(request, {**problem, "status": 400}, 400)
    state = _state(request)
    state.count("download_stats")
    state.download_reports.append(dict(doc))
    return await _json(request, {"id": len(state.download_reports), **doc})


def add_data_api_routes(app: web.Application) -> None:
    """The token endpoint (and userinfo) at the root, the API under /v2."""
    app.router.add_post(TOKEN_PATH, _token)
    app.router.add_route("*", USERINFO_PATH, _bearer(_userinfo))
    api = web.Application()
    api.router.add_get("/metadata/datasets", _bearer(_datasets))
    api.router.add_get("/metadata/datasets/{dataset}/files", _bearer(_dataset_files))
    api.router.add_get("/metadata/files/{file}", _bearer(_file_metadata))
    api.router.add_get("/files/{file}", _bearer(_file_data))
    api.router.add_post(STATS_PATH, _bearer(_download_stats))
    app.add_subapp(DATA_PREFIX, api)
