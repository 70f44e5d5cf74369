"""EGA over the current Data API (pyega3's): OAuth2 token, metadata, plain Range slices.

Facts this module relies on (research/ega-webin.md, A2):

* Token: OAuth2 password grant at ``ega_auth``; pyega3 caches it for an hour and
  re-fetches it lazily. We refresh it before it expires, so a long transfer never
  meets a 401 in the middle of a slice (pyega3 #35: "token dies every hour").
* ``metadata/datasets/{id}/files`` lists ``fileId, fileName, displayFileName,
  fileSize, fileStatus, plainChecksum``. ``fileSize`` counts a 16-byte IV that
  ``destinationFormat=plain`` does not send (pyega3: ``file_size -= 16``).
* Which files and under which names, as pyega3 does: only ``fileStatus ==
  "available"`` is downloaded; a ``fileName`` ending ``.gpg`` (legacy GPG-encrypted
  archive files) is not served by this API and is skipped; the local name is
  ``displayFileName`` without ``.cip``, since the plain download is not encrypted.
* The token request carries the OAuth client of pyega3's published server file;
  ``EGA_CLIENT_ID``/``EGA_CLIENT_SECRET`` replace it.
* ``files/{id}?destinationFormat=plain`` serves Range slices; large files go over
  several connections (the engine's segmented fetcher, slices of 64 MiB, under the
  100 MiB pyega3 found safe, #262), with byte-level resume inside a slice.
* The whole file's MD5 is checked against ``plainChecksum``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import PurePosixPath
from typing import Any

from .._exceptions import CredentialsError, HTTPStatusError, MirrorError, SourceError, TransferError
from .._listing import ListedDataset, ListedFile, checksum_kind
from .._models import FileTask
from . import SourceContext
from .ega import EgaLogin, ega_path

__all__ = ["CLIENT_ID", "CLIENT_SECRET", "IV_BYTES", "EgaDataSource", "local_name"]

logger = logging.getLogger(__name__)

#: Bytes of ``fileSize`` that a plain download does not carry.
IV_BYTES = 16
#: The OAuth client of pyega3's default server file (pyega3/config/default_server_file.json,
#: client id in pyega3/libs/auth_client.py). Both are published with the client for
#: every user, so they identify the software, not the user; EGA_CLIENT_ID and
#: EGA_CLIENT_SECRET replace them.
CLIENT_ID = "f20cd2d3-682a-4568-a53e-4262ef54c8f4"
CLIENT_SECRET = (
    "AMenuDLjVdVo4BSwi0QD54LL6NeVDEZRzEQUJ7hJOM3g4imDZBHHX0hNfKHPeQIGkskhtCmqAJtt_jm7EKq-rWw"
)
#: The one ``fileStatus`` pyega3 downloads (pyega3/libs/utils.py, ``status_ok``).
AVAILABLE = "available"
#: Refresh when less than this share of the token's lifetime is left.
REFRESH_AT = 0.25
#: The Data API serves at most 100 MiB a request (pyega3 #262, its default slice).
MAX_RANGE = 100 << 20


class EgaDataSource:
    """Expands an ``ega:`` entry (``protocol: data-api``); its hooks keep a fresh token."""

    name = "ega"
    parallel_ranges = True

    @property
    def max_range(self) -> int | None:
        return MAX_RANGE

    def __init__(
        self,
        datasets: tuple[str, ...],
        files: tuple[str, ...],
        ctx: SourceContext,
        login: EgaLogin,
    ) -> None:
        self.datasets = datasets
        self.files = files
        self.ctx = ctx
        self.login = login
        self.auth_url = ctx.endpoints["ega_auth"]
        self.base = ctx.endpoints["ega_data"].rstrip("/")
        self._token: str | None = None
        self._expires = 0.0
        self._lifetime = 0.0
        self._lock = asyncio.Lock()
        #: The token last sent for each file, to tell a revoked token from a renewed one.
        self._sent: dict[str, str] = {}
        self.hooks = self

    async def token(self, *, rejected: str | None = None) -> str:
        """A valid token; a new one if the current one is ``rejected`` or near its end.

        Many requests may meet a 401 for the same revoked token at once: the first to
        get here renews it, the others find a token other than theirs and use it.
        """
        async with self._lock:
            now = time.monotonic()
            if (
                self._token is not None
                and self._token != rejected
                and self._expires - now > self._lifetime * REFRESH_AT
            ):
                return self._token
            client_id, client_secret = self.login.client_id, self.login.client_secret
            form = {
                "grant_type": "password",
                "client_id": client_id.value if client_id else CLIENT_ID,
                "scope": "openid",
                "client_secret": client_secret.value if client_secret else CLIENT_SECRET,
                "username": self.login.username,
                "password": self.login.password.value,
            }

            async def once() -> tuple[int, Any]:
                async with self.ctx.http.request(
                    "POST", self.auth_url, data=form, expect=(200, 400, 401, 403)
                ) as resp:
                    try:
                        return resp.status, await resp.json()
                    except TransferError:
                        return resp.status, None

            status, doc = await self.ctx.http.retrying("EGA token", once)
            if status != 200:
                # OAuth2 (RFC 6749 5.2): "invalid_client" is the client id or secret,
                # anything else the user's login.
                error = doc.get("error") if isinstance(doc, dict) else None
                if error == "invalid_client":
                    raise CredentialsError(
                        "EGA refused the OAuth client (EGA_CLIENT_ID/EGA_CLIENT_SECRET, "
                        f"or pyega3's published one when they are unset): HTTP {status}",
                        hint="unset EGA_CLIENT_ID and EGA_CLIENT_SECRET, or set both correctly",
                    )
                # The user name is personal data: it stays out of messages and logs.
                raise CredentialsError(
                    f"EGA refused the login (EGA_USERNAME/EGA_PASSWORD): HTTP {status}"
                    + (f" {error}" if isinstance(error, str) else ""),
                    hint="check EGA_USERNAME and EGA_PASSWORD (your EGA account's login)",
                )
            if not isinstance(doc, dict) or not isinstance(doc.get("access_token"), str):
                raise SourceError("EGA: the token endpoint answered without an access_token")
            self._token = doc["access_token"]
            self._lifetime = float(doc.get("expires_in") or 3600)
            self._expires = now + self._lifetime
            logger.info("EGA: token valid %.0fs", self._lifetime)
            return self._token

    async def _get(self, path: str) -> Any:
        url = f"{self.base}/{path}"
        rejected: str | None = None
        for retry in (False, True):
            token = await self.token(rejected=rejected)
            rejected = token
            try:
                return await self.ctx.http.get_json(
                    url, headers={"Authorization": f"Bearer {token}"}
                )
            except HTTPStatusError as exc:
                if exc.status == 401 and not retry:
                    continue  # expired under us: one fresh token, then give up
                if exc.status in (401, 403):
                    raise CredentialsError(
                        f"EGA: not authorised for {path} (HTTP {exc.status})",
                        hint="ask the dataset's Data Access Committee to grant your account access",
                    ) from None
                if exc.status == 404:
                    return None
                raise SourceError(f"EGA {path}: {exc}") from exc
        return None

    async def expand(self) -> AsyncIterator[list[FileTask]]:
        for dataset in self.datasets:
            items = await self._get(f"metadata/datasets/{dataset}/files")
            listed = [f for f in items or [] if isinstance(f, dict)]
            if not listed:
                self.ctx.warn(f"EGA: {dataset}: no files (not authorised, or empty)")
            yield self._select(dataset, [(dataset, f) for f in listed])
        for file_id in self.files:
            item = await self._get(f"metadata/files/{file_id}")
            if not isinstance(item, dict) or not item.get("fileId"):
                self.ctx.warn(f"EGA: {file_id}: no such file, or not authorised")
                continue
            yield self._select(file_id, [(str(item.get("datasetId") or "files"), item)])

    # -- listing (``mirror ls ega``) -----------------------------------------------------

    async def granted(self) -> list[ListedDataset]:
        """The datasets the account may download (``metadata/datasets``), files not listed.

        pyega3 reads the answer as a list of dataset ids; objects with a ``datasetId``
        are taken too.
        """
        items = await self._get("metadata/datasets")
        ids = [
            str(item.get("datasetId") or "") if isinstance(item, dict) else str(item)
            for item in items or []
        ]
        return [ListedDataset(id=i) for i in dict.fromkeys(ids) if i]

    async def listing(self, dataset: str) -> ListedDataset:
        """``dataset`` and every file the API lists for it, downloadable or not.

        A dataset the account may not read, or that does not exist, comes back with
        its ``error``: one refused dataset does not hide the others' files.
        """
        await self.token()  # a refused login stops here, before any dataset
        try:
            items = await self._get(f"metadata/datasets/{dataset}/files")
        except CredentialsError as exc:
            why = f"{exc}: {exc.hint}" if exc.hint else str(exc)
            return ListedDataset(id=dataset, error=why)
        if items is None:
            return ListedDataset(id=dataset, error=f"EGA: {dataset}: no such dataset (HTTP 404)")
        files = tuple(_listed_file(f) for f in items if isinstance(f, dict))
        return ListedDataset(id=dataset, files=files)

    def _select(self, where: str, items: list[tuple[str, dict[str, Any]]]) -> list[FileTask]:
        """The files pyega3 would download; one warning per kind of file left out."""
        tasks: list[FileTask] = []
        legacy: list[str] = []
        unavailable: list[str] = []
        for dataset, item in items:
            file_id = str(item.get("fileId", ""))
            status = str(item.get("fileStatus") or "")
            if str(item.get("fileName") or item.get("displayFileName") or "").endswith(".gpg"):
                legacy.append(file_id)
            elif status != AVAILABLE:
                unavailable.append(f"{file_id} ({status or 'no fileStatus'})")
            else:
                tasks.append(self._task(dataset, item))
        if legacy:
            self.ctx.warn(
                f"EGA: {where}: {len(legacy)} legacy .gpg file(s) skipped, the Data API does "
                f"not serve them (ask EGA's helpdesk): {_listed(legacy)}"
            )
        if unavailable:
            self.ctx.warn(
                f"EGA: {where}: {len(unavailable)} file(s) skipped, not available for "
                f"download: {_listed(unavailable)}"
            )
        return tasks

    def _task(self, dataset: str, item: dict[str, Any]) -> FileTask:
        file_id = str(item.get("fileId", ""))
        try:
            size: int | None = int(str(item.get("fileSize"))) - IV_BYTES
        except ValueError:
            size = None
        checksum = str(item.get("plainChecksum") or item.get("unencryptedChecksum") or "")
        md5 = checksum.lower() if len(checksum) == 32 else None
        return FileTask(
            source="ega",
            accession=file_id,
            url=f"{self.base}/files/{file_id}?destinationFormat=plain",
            path=ega_path(dataset, file_id, local_name(item)),
            size=size,
            checksum=md5,
            verify="md5" if md5 else "size",
        )

    # -- FileHooks ---------------------------------------------------------------------

    def recoverable(self, error: TransferError) -> bool:
        return isinstance(error, HTTPStatusError) and error.status == 401

    async def prepare(self, task: FileTask, error: MirrorError | None) -> FileTask:
        if isinstance(error, HTTPStatusError) and error.status == 401:
            await self.token(rejected=self._sent.pop(task.path, self._token))
        return task

    async def headers(self, task: FileTask) -> Mapping[str, str]:
        token = self._sent[task.path] = await self.token()
        return {"Authorization": f"Bearer {token}"}

    async def verify(self, task: FileTask, got: object) -> None:
        return None  # the whole-file MD5 against plainChecksum is the fetcher's own check

    async def settled(self, task: FileTask, verified: bool) -> None:
        self._sent.pop(task.path, None)


def local_name(item: Mapping[str, Any]) -> str:
    """pyega3's output name: ``displayFileName`` (else ``fileName``) without ``.cip``.

    ``.cip`` marks the archive's encrypted copy; ``destinationFormat=plain`` sends the
    decrypted bytes, so the name keeps only the real format (``x.bam.cip`` -> ``x.bam``).
    """
    name = str(item.get("displayFileName") or item.get("fileName") or item.get("fileId") or "")
    name = PurePosixPath(name.strip()).name
    stem = name.removesuffix(".cip")
    return stem or name


def _listed_file(item: Mapping[str, Any]) -> ListedFile:
    """One ``metadata/datasets/{id}/files`` item; its size as a plain download has it."""
    try:
        size: int | None = max(int(str(item.get("fileSize"))) - IV_BYTES, 0)
    except ValueError:
        size = None
    checksum = item.get("plainChecksum") or item.get("unencryptedChecksum")
    return ListedFile(
        id=str(item.get("fileId") or ""),
        name=local_name(item),
        size=size,
        status=str(item.get("fileStatus") or ""),
        checksum_type=checksum_kind(item.get("checksumType"), checksum),
    )


def _listed(names: list[str], most: int = 10) -> str:
    shown = ", ".join(names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")
