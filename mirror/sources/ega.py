"""EGA over REST v2 tickets: log in, request tickets, stream them, verify with /results.

Facts this module relies on (seed 003, ARCHIVES.md, research/ega-webin.md):

* Every answer is an envelope ``{"header": {...}, "response": {"result": [...]}}`` and
  errors come back as HTTP 200 with a non-OK header: the header is what we read.
  Header code 991 means the session was lost (10 minutes idle): log in again.
* ``requests/new/datasets/{EGAD}`` (or ``files/{EGAF}``) with a ``downloadrequest``
  form field creates tickets under a label; ``requests/{label}`` lists them. We use
  one deterministic label per dataset and mirror, so a resumed run finds its
  tickets instead of piling up new requests.
* A ticket is removed after a complete download and after 7 days: any attempt after
  a failure re-lists the label and asks for a new ticket for that one file.
* ``results/{ticket}?md5=LOCAL`` answers ``[server_md5, size]`` of what was sent:
  the bytes are accepted only when both agree with what we received.

Several processes may share one pull, each fetching files another planned (from a
task rebuilt from the state store). What they must agree on lives in the pull's
ledger (:class:`~mirror.sources.PullLedger`), not in this object: the whole dataset
is requested once per pull, and its label is deleted once, when no file under it is
left pending, running or failed in any process.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import AsyncIterator, Mapping
from pathlib import PurePosixPath
from typing import Any

from .._credentials import Secret
from .._exceptions import (
    ChecksumMismatch,
    CredentialsError,
    HTTPStatusError,
    MirrorError,
    SourceError,
    TransferError,
)
from .._models import FileTask, TaskStatus
from .._paths import safe_name
from .._urls import redact_url
from . import Received, SourceContext

__all__ = ["EgaTicketSource", "ega_path"]

logger = logging.getLogger(__name__)

_SESSION_LOST = "991"


def ega_path(dataset: str, file_id: str, file_name: str) -> str:
    """``ega/{dataset}/{file id}/{base name of fileName}`` (SPEC.md)."""
    name = PurePosixPath(file_name.strip()).name
    return f"ega/{safe_name(dataset)}/{safe_name(file_id)}/{safe_name(name)}"


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class EgaLogin:
    username: str
    password: Secret
    rekey: Secret | None = None
    #: The Data API's OAuth client (EGA_CLIENT_ID/EGA_CLIENT_SECRET); None: pyega3's.
    client_id: Secret | None = None
    client_secret: Secret | None = None


class EgaTicketSource:
    """Expands an ``ega:`` entry (``protocol: tickets``) and fetches through tickets."""

    name = "ega"
    #: One stream per ticket: a complete download consumes the ticket, so parallel
    #: slices would race each other for it.
    parallel_ranges = False
    max_range: int | None = None

    def __init__(
        self, datasets: tuple[str, ...], files: tuple[str, ...], ctx: SourceContext, login: EgaLogin
    ) -> None:
        self.datasets = datasets
        self.files = files
        self.ctx = ctx
        self.login = login
        self.access = ctx.endpoints["ega_access"].rstrip("/")
        self.download = ctx.endpoints["ega_download"].rstrip("/")
        self._session: str | None = None
        self._login_lock = asyncio.Lock()
        self._locks: dict[str, asyncio.Lock] = {}
        self._tickets: dict[str, dict[str, str]] = {}  # label -> file id -> ticket
        #: Datasets named whole in the manifest (by their directory name): the ones a
        #: request for the whole dataset may serve, whichever process planned them.
        self._whole = {safe_name(d) for d in datasets}
        #: Labels for which this process has had its say on the whole-dataset request
        #: (it made it, or the pull's ledger said another process had the turn).
        self._asked: dict[str, bool] = {}
        # Used only when no store keeps the pull (one process): what it planned and has
        # not settled tells when a dataset is done.
        self._pending: dict[str, set[str]] = {}  # dataset -> file ids not yet settled
        self._failed: set[str] = set()
        self.hooks = self

    # -- the envelope API --------------------------------------------------------------

    def label(self, dataset: str) -> str:
        return f"ebi-mirror-{dataset}-{self.ctx.mirror_id}"

    async def _log_in(self) -> str:
        async with self._login_lock:
            if self._session is not None:
                return self._session
            form = {
                "loginrequest": json.dumps(
                    {"username": self.login.username, "password": self.login.password.value}
                )
            }
            doc = await self._envelope("POST", f"{self.access}/users/login", data=form)
            result = _result(doc)
            if _ok(doc) and len(result) >= 2 and result[0] == "success":
                self._session = str(result[1])
                logger.info("EGA: logged in")
                return self._session
            message = _message(doc) or (str(result[0]) if result else "no reason given")
            raise CredentialsError(
                # The user name is personal data: it stays out of messages and logs.
                f"EGA refused the login (EGA_USERNAME/EGA_PASSWORD): {message}",
                hint="check EGA_USERNAME and EGA_PASSWORD (your EGA account's login)",
            )

    async def _envelope(
        self,
        method: str,
        url: str,
        *,
        data: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        async def once() -> Any:
            async with self.ctx.http.request(
                method, url, data=data, params=params, headers={"Accept": "application/json"}
            ) as resp:
                return await resp.json()

        doc = await self.ctx.http.retrying(redact_url(url), once)
        if not isinstance(doc, dict) or not isinstance(doc.get("header"), dict):
            raise SourceError(f"EGA {redact_url(url)}: not an EGA envelope")
        return doc

    async def call(
        self,
        method: str,
        path: str,
        *,
        form: Mapping[str, str] | None = None,
        base: str | None = None,
    ) -> list[Any]:
        """``result`` of an access-API call, logging in (again) as needed."""
        for _ in range(3):
            session = await self._log_in()
            doc = await self._envelope(
                method, f"{base or self.access}/{path}", data=form, params={"session": session}
            )
            if _ok(doc):
                return _result(doc)
            if str(doc["header"].get("code")) == _SESSION_LOST:
                logger.info("EGA: session lost; logging in again")
                if self._session == session:
                    self._session = None
                continue
            raise SourceError(
                f"EGA {path}: {_message(doc) or 'error'} (code {doc['header'].get('code')})"
            )
        raise SourceError(f"EGA {path}: the session was lost again after logging in")

    # -- planning ----------------------------------------------------------------------

    async def expand(self) -> AsyncIterator[list[FileTask]]:
        for dataset in self.datasets:
            files = await self.call("GET", f"datasets/{dataset}/files")
            tasks = [self._task(dataset, f) for f in files if isinstance(f, dict)]
            self._pending[dataset] = {t.accession for t in tasks}
            if not tasks:
                self.ctx.warn(f"EGA: {dataset}: no files (not authorised, or empty)")
            yield tasks
        for file_id in self.files:
            found = await self.call("GET", f"files/{file_id}")
            tasks = [
                self._task(str(f.get("fileDataset") or "files"), f)
                for f in found
                if isinstance(f, dict)
            ]
            if not tasks:
                self.ctx.warn(f"EGA: {file_id}: no such file, or not authorised")
            yield tasks

    def _task(self, dataset: str, item: dict[str, Any]) -> FileTask:
        file_id = str(item.get("fileID", ""))
        try:
            size: int | None = int(str(item.get("fileSize")))
        except ValueError:
            size = None
        return FileTask(
            source="ega",
            accession=file_id,
            url=f"{self.access}/files/{file_id}",  # the ticket URL is known only later
            path=ega_path(dataset, file_id, str(item.get("fileName", file_id))),
            size=size,
            verify="ega-results",
        )

    # -- FileHooks ---------------------------------------------------------------------

    def recoverable(self, error: TransferError) -> bool:
        # 404/410 from the download server: the ticket is gone; a new one may work.
        return isinstance(error, HTTPStatusError) and error.status in (404, 410)

    async def prepare(self, task: FileTask, error: MirrorError | None) -> FileTask:
        # Everything comes from the task's own fields: the process that planned the
        # file need not be this one.
        dataset = task.path.split("/")[1]
        label = self.label(dataset)
        lock = self._locks.setdefault(label, asyncio.Lock())
        async with lock:
            if error is not None or label not in self._tickets:
                await self._list(label)  # after a failure the ticket may be gone
            tickets = self._tickets[label]
            if task.accession not in tickets:
                # One request for the whole dataset per pull, by the first process to
                # need a ticket; after that, file by file (an empty label later only
                # means completed downloads consumed their tickets). A label that
                # already holds tickets was requested by an earlier run.
                whole = await self._dataset_turn(dataset, label) and not tickets
                request = {
                    "downloadrequest": json.dumps(
                        {
                            "rekey": self.login.rekey.value if self.login.rekey else "",
                            "downloadType": "STREAM",
                            "descriptor": label,
                        }
                    )
                }
                target = f"datasets/{dataset}" if whole else f"files/{task.accession}"
                await self.call("POST", f"requests/new/{target}", form=request)
                await self._list(label)
            ticket = self._tickets[label].get(task.accession)
        if ticket is None:
            raise SourceError(f"EGA: no download ticket for {task.accession} under {label}")
        return dataclasses.replace(task, url=f"{self.download}/downloads/{ticket}")

    async def _dataset_turn(self, dataset: str, label: str) -> bool:
        """Whether this process requests ``dataset`` whole: asked of the pull once."""
        if dataset not in self._whole:
            return False  # only single files of it were named
        if label not in self._asked:
            self._asked[label] = await self.ctx.pull.once(f"ega-request {label}")
            return self._asked[label]
        return False

    async def _list(self, label: str) -> None:
        items = await self.call("GET", f"requests/{label}")
        self._tickets[label] = {
            str(t["fileID"]): str(t["ticket"])
            for t in items
            if isinstance(t, dict) and t.get("ticket") and t.get("fileID")
        }

    async def headers(self, task: FileTask) -> Mapping[str, str]:
        return {}

    async def verify(self, task: FileTask, got: Received) -> None:
        ticket = task.url.rsplit("/", 1)[-1]
        doc = await self._envelope(
            "GET", f"{self.download}/results/{ticket}", params={"md5": got.md5}
        )
        result = _result(doc)
        if not _ok(doc) or len(result) < 2:
            raise ChecksumMismatch(
                f"EGA /results gave no MD5 for {task.path}: {_message(doc) or result}", url=task.url
            )
        server_md5, server_size = str(result[0]).lower(), int(str(result[1]))
        if server_size == got.size:
            local = got.md5
        elif got.offset and server_size == got.size - got.offset:
            # The server saw only the resumed range: compare what it sent with that.
            local, _ = await asyncio.to_thread(self.ctx.dest.hash, got.path, start=got.offset)
        else:
            local = ""
        if local != server_md5:
            raise ChecksumMismatch(
                f"EGA /results: the server sent {server_size} bytes with MD5 {server_md5}; "
                f"{task.path} holds {got.size} bytes with MD5 {got.md5}",
                url=task.url,
            )

    async def settled(self, task: FileTask, verified: bool) -> None:
        dataset = task.path.split("/")[1]
        if not verified:
            self._failed.add(dataset)
        if (pending := self._pending.get(dataset)) is not None:
            pending.discard(task.accession)
        label = self.label(dataset)
        # Only a request this process made or found: the process that downloads the
        # last file of a dataset has listed its label, while one that only found files
        # verified earlier has no request to clean up.
        if label not in self._tickets or not await self._done(dataset):
            return
        if not await self.ctx.pull.once(f"ega-delete {label}"):
            return  # another process of the pull deletes it
        try:
            await self.call("GET", f"requests/delete/{label}")
            logger.info("EGA: %s complete; request %s deleted", dataset, label)
        except MirrorError as exc:
            logger.info("EGA: could not delete request %s: %s", label, exc)

    async def _done(self, dataset: str) -> bool:
        """Whether the pull is done with ``dataset``: every file verified, none failed.

        A failed file keeps the label, so the next run finds the tickets it has left.
        """
        tally = await self.ctx.pull.tally(f"ega/{dataset}/")
        if tally is None:  # one process, no shared store: what it planned decides
            pending = self._pending.get(dataset)
            return pending is not None and not pending and dataset not in self._failed
        unfinished = (TaskStatus.PENDING, TaskStatus.RUNNING, TaskStatus.FAILED)
        return tally.get(TaskStatus.VERIFIED, 0) > 0 and not any(
            tally.get(s, 0) for s in unfinished
        )


def _ok(doc: dict[str, Any]) -> bool:
    header = doc.get("header") or {}
    if "userMessage" in header:
        return str(header["userMessage"]).upper() == "OK"
    return str(header.get("code")) == "200"


def _result(doc: dict[str, Any]) -> list[Any]:
    result = (doc.get("response") or {}).get("result")
    return result if isinstance(result, list) else []


def _message(doc: dict[str, Any]) -> str:
    header = doc.get("header") or {}
    for key in ("userMessage", "technicalMessage", "errorStack"):
        value = header.get(key)
        if isinstance(value, str) and value and value.upper() != "OK":
            return value
    return ""
