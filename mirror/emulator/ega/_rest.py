"""EGA's REST API v2 (the seed): session logins, dataset listings, request tickets, streams."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Iterator

from aiohttp import web

from .._blob import missing, send_blob
from .._context import CONTEXT, basic_credentials
from ._data import DATA_PREFIX, TOKEN_PATH, add_data_api_routes
from ._records import EgaFile, stream_md5, stream_pieces
from ._state import EGA, EgaState
from ._wire import (
    JSON_OBJECT,
    Reply,
    file_object,
    form_object,
    send_reply,
    ticket_object,
)

__all__ = [
    "ACCESS_PREFIX",
    "DATA_PREFIX",
    "DOWNLOAD_PREFIX",
    "TOKEN_PATH",
    "add_ega_routes",
]

ACCESS_PREFIX = "/ega/rest/access/v2"
DOWNLOAD_PREFIX = "/ega/rest/download/v2"
# The docs and EgaDemoClient also fetch streams and results under this name.
DS_PREFIX = "/ega/rest/ds/v2"
# /results hashes big streams in a thread, so the loop keeps serving meanwhile.
_HASH_INLINE = 8 * 1024 * 1024

_LOGIN_FAILED = Reply(
    result=["Login failed: username or password incorrect"],
    code="401",
    message="Login failed: username or password incorrect",
)
# Snakemake's EGA provider: header code "991" means "session lost, log in again".
_SESSION_LOST = Reply(
    result=[],
    code="991",
    message="Session lost",
    technical="No valid session for this request: log in again",
)

Authed = Callable[[web.Request, str], Awaitable[Reply]]


def _state(request: web.Request) -> EgaState:
    return request.config_dict[EGA]


def _bad(what: str) -> Reply:
    return Reply(result=[what], code="400", message=f"Bad request: {what}")


def _authed(handler: Authed) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Run ``handler`` with the user of ``?session=``, or answer 991 if it is gone."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        user = _state(request).session_user(request.query.get("session"))
        reply = _SESSION_LOST if user is None else await handler(request, user)
        return await send_reply(request, reply)

    return wrapped


def _login(state: EgaState, username: str, password: str) -> Reply:
    user = state.authenticate(username, password)
    if user is None:
        state.count("login_failures")
        return _LOGIN_FAILED
    # The docs' example: numTotalResults is 1 although result has two elements.
    return Reply(result=["success", state.open_session(user)], total=1)


async def _login_form(request: web.Request) -> web.StreamResponse:
    state = _state(request)
    login = await form_object(request, "loginrequest")
    if login is None or "username" not in login or "password" not in login:
        state.count("login_failures")
        reply = _bad('form field \'loginrequest\' must hold {"username":…,"password":…}')
    else:
        reply = _login(state, login["username"], login["password"])
    return await send_reply(request, reply)


async def _login_basic(request: web.Request) -> web.StreamResponse:
    state = _state(request)
    credentials = basic_credentials(request.headers.get("Authorization"))
    if credentials is None:
        state.count("login_failures")
        return await send_reply(request, _LOGIN_FAILED)
    return await send_reply(request, _login(state, *credentials))


async def _login_url(request: web.Request) -> web.StreamResponse:
    # GET /users/{user}?pass=…: aiohttp has already decoded the path once.
    user = request.match_info["user"].strip()
    reply = _login(_state(request), user, request.query.get("pass", ""))
    return await send_reply(request, reply)


async def _logout(request: web.Request) -> web.StreamResponse:
    _state(request).close_session(request.query.get("session"))
    return await send_reply(request, Reply(result=["logged out"]))


async def _datasets(request: web.Request, user: str) -> Reply:
    return Reply(result=[d.dataset_id for d in _state(request).datasets_for(user)])


async def _dataset_files(request: web.Request, user: str) -> Reply:
    state = _state(request)
    dataset = request.config_dict[CONTEXT].catalog.ega_dataset(request.match_info["dataset"])
    if dataset is None or not state.may_access(user, dataset.dataset_id):
        # The docs: an unknown or unauthorised dataset gives "no results", not an error.
        return Reply(result=[])
    return Reply(result=[file_object(item) for item in dataset.files])


def _authorised_file(request: web.Request, user: str, file_id: str) -> EgaFile | None:
    found = request.config_dict[CONTEXT].catalog.ega_file(file_id)
    if found is None or not _state(request).may_access(user, found.dataset):
        return None
    return found


async def _file(request: web.Request, user: str) -> Reply:
    found = _authorised_file(request, user, request.match_info["file"])
    return Reply(result=[] if found is None else [file_object(found)])


async def _new_request(request: web.Request, user: str) -> Reply:
    state = _state(request)
    form = await form_object(request, "downloadrequest")
    if form is None:
        return _bad("form field 'downloadrequest' must hold a JSON object")
    rekey, label = form.get("rekey", ""), form.get("descriptor", "")
    if not rekey or not label:
        return _bad("downloadrequest needs a 'rekey' and a 'descriptor' (the request label)")
    if form.get("downloadType", "STREAM").upper() != "STREAM":
        return _bad("downloadType must be STREAM")
    kind, accession = request.match_info["kind"], request.match_info["id"]
    files: tuple[EgaFile, ...] = ()
    if kind == "datasets":
        dataset = request.config_dict[CONTEXT].catalog.ega_dataset(accession)
        if dataset is not None and state.may_access(user, dataset.dataset_id):
            files = dataset.files
    else:
        found = _authorised_file(request, user, accession)
        files = () if found is None else (found,)
    if not files:
        message = f"{accession} is unknown or not authorised for {user}"
        return Reply(result=[message], code="403", message=f"Forbidden: {message}")
    tickets = state.request(user, label, files, rekey)
    return Reply(result=[ticket_object(t) for t in tickets])


async def _requests(request: web.Request, user: str) -> Reply:
    label = request.match_info.get("label")
    tickets = _state(request).tickets(user, label)
    return Reply(result=[ticket_object(t) for t in tickets], result_type=JSON_OBJECT)


async def _ticket(request: web.Request, user: str) -> Reply:
    found = _state(request).ticket(request.match_info["ticket"])
    return Reply(result=[ticket_object(found)] if found is not None and found.user == user else [])


async def _delete(request: web.Request, user: str) -> Reply:
    """Delete a whole request, or one ticket (by label and ticket, or by ticket alone).

    The result lists the tickets deleted; deleting nothing is not an error.
    """
    state = _state(request)
    label, only = request.match_info.get("label"), request.match_info.get("ticket")
    deleted = [
        t.ticket
        for t in state.tickets(user, label)
        if (only is None or t.ticket == only) and state.remove(t.ticket, "deleted")
    ]
    return Reply(result=deleted)


def _not_found(request: web.Request, what: str) -> web.Response:
    reply = Reply(result=[what], code="404", message=what, service="download")
    body = web.Response(status=404, body=reply.body(), content_type="application/json")
    return missing(request, "ega", body)


async def _download(request: web.Request) -> web.StreamResponse:
    state = _state(request)
    ticket = state.ticket(request.match_info["ticket"])
    if ticket is None:
        # A plain 404 rather than an HTTP 200 envelope: a client streaming to disk must
        # never save an error document as data. Downloaded, expired, deleted, unknown:
        # the resource is gone, and only a new request makes a new one.
        return _not_found(request, "Ticket not found: downloaded, expired, deleted or unknown")
    file, rekey = ticket.file, ticket.rekey

    def pieces(start: int, end: int, chunk: int) -> Iterator[memoryview]:
        return stream_pieces(file, rekey, start, end, chunk)

    def completed() -> None:
        state.remove(ticket.ticket, "completed")

    return await send_blob(
        request,
        host="ega",
        key=f"ega-stream/{ticket.ticket}",
        size=file.size,
        pieces=pieces,
        ranges=state.range_support,
        on_complete=completed,
    )


async def _results(request: web.Request) -> web.StreamResponse:
    state = _state(request)
    ticket = request.match_info["ticket"]
    found = state.result(ticket)
    if found is None:
        what = f"No results for {ticket}: its stream has not been sent to the end"
        reply = Reply(result=[what], code="404", message="Not found", service="download")
        return await send_reply(request, reply)
    file = found.file
    if file.size > _HASH_INLINE:
        server_md5 = await asyncio.to_thread(stream_md5, file, found.rekey)
    else:
        server_md5 = stream_md5(file, found.rekey)
    if file.file_id in state.wrong_results:
        server_md5 = hashlib.md5(server_md5.encode()).hexdigest()
    local = request.query.get("md5")
    if local and local.strip().lower() != server_md5:
        state.count("results_mismatched")
    # EgaDemoClient reads the size with Long.parseLong(getString(1)): a string.
    reply = Reply(result=[server_md5, str(file.size)], service="download")
    return await send_reply(request, reply)


def _access_app() -> web.Application:
    app = web.Application()
    router = app.router
    # /users/login and /users/logout before /users/{user}: routes match in this order.
    router.add_post("/users/login", _login_form)
    router.add_get("/users/login", _login_basic)
    router.add_get("/users/logout", _logout)
    router.add_get("/users/{user}", _login_url)
    router.add_get("/datasets", _authed(_datasets))
    router.add_get("/datasets/{dataset}/files", _authed(_dataset_files))
    router.add_get("/files/{file}", _authed(_file))
    router.add_post("/requests/new/{kind:datasets|files}/{id}", _authed(_new_request))
    router.add_get("/requests", _authed(_requests))
    # The docs say GET; EgaDemoClient sends DELETE. Both work.
    for method in ("GET", "DELETE"):
        router.add_route(method, "/requests/ticket/delete/{ticket}", _authed(_delete))
        router.add_route(method, "/requests/delete/{label}", _authed(_delete))
        router.add_route(method, "/requests/delete/{label}/{ticket}", _authed(_delete))
    router.add_get("/requests/ticket/{ticket}", _authed(_ticket))
    router.add_get("/requests/{label}", _authed(_requests))
    return app


def _download_app() -> web.Application:
    # Downloads need no session: the ticket is the only credential (as on EGA, which
    # also matched the requester's IP; on loopback every client has the same one).
    app = web.Application()
    app.router.add_get("/downloads/{ticket}", _download)
    app.router.add_get("/results/{ticket}", _results)
    return app


def add_ega_routes(app: web.Application) -> None:
    """Both EGA protocols on the ``ega`` host: REST v2 (access, download) and the Data API."""
    app.add_subapp(ACCESS_PREFIX, _access_app())
    app.add_subapp(DOWNLOAD_PREFIX, _download_app())
    app.add_subapp(DS_PREFIX, _download_app())
    add_data_api_routes(app)
