"""EGA over the current Data API (pyega3's): OAuth2 token, metadata, plain Range slices.

Facts this module relies on (research/ega-webin.md, A2):

* Token: OAuth2 password grant at ``ega_auth``; pyega3 caches it for an hour and
  re-fetches it lazily. We refresh it before it expires, so a long transfer never
  meets a 401 in the middle of a slice (pyega3 #35: "token dies every hour").
* ``metadata/datasets/{id}/files`` lists ``fileId, fileName, fileSize,
  plainChecksum``. ``fileSize`` counts a 16-byte IV that ``destinationFormat=plain``
  does not send (pyega3: ``file_size -= 16``).
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
from typing import Any

from .._exceptions import CredentialsError, HTTPStatusError, MirrorError, SourceError, TransferError
from .._models import FileTask
from . import SourceContext
from .ega import EgaLogin, ega_path

__all__ = ["IV_BYTES", "EgaDataSource"]

logger = logging.getLogger(__name__)

#: Bytes of ``fileSize`` that a plain download does not carry.
IV_BYTES = 16
#: pyega3's public client id; the secret may be set in EGA_CLIENT_SECRET.
CLIENT_ID = "f20cd2d3-682a-4568-a53e-4262ef54c8f4"
#: Refresh when less than this share of the token's lifetime is left.
REFRESH_AT = 0.25


class EgaDataSource:
    """Expands an ``ega:`` entry (``protocol: data-api``); its hooks keep a fresh token."""

    name = "ega"

    def __init__(
        self,
        datasets: tuple[str, ...],
        files: tuple[str, ...],
        ctx: SourceContext,
        login: EgaLogin,
        client_secret: str = "",
    ) -> None:
        self.datasets = datasets
        self.files = files
        self.ctx = ctx
        self.login = login
        self.client_secret = client_secret
        self.auth_url = ctx.endpoints["ega_auth"]
        self.base = ctx.endpoints["ega_data"].rstrip("/")
        self._token: str | None = None
        self._expires = 0.0
        self._lifetime = 0.0
        self._lock = asyncio.Lock()
        self.hooks = self

    async def token(self, *, force: bool = False) -> str:
        async with self._lock:
            now = time.monotonic()
            if (
                not force
                and self._token is not None
                and self._expires - now > self._lifetime * REFRESH_AT
            ):
                return self._token
            form = {
                "grant_type": "password",
                "client_id": CLIENT_ID,
                "scope": "openid",
                "client_secret": self.client_secret,
                "username": self.login.username,
                "password": self.login.password.value,
            }

            async def once() -> Any:
                async with self.ctx.http.request("POST", self.auth_url, data=form) as resp:
                    return await resp.json()

            try:
                doc = await self.ctx.http.retrying("EGA token", once)
            except HTTPStatusError as exc:
                if exc.status in (400, 401, 403):
                    raise CredentialsError(
                        # The user name is personal data: it stays out of messages and logs.
                        f"EGA refused the login (EGA_USERNAME/EGA_PASSWORD): HTTP {exc.status}"
                    ) from None
                raise
            if not isinstance(doc, dict) or not isinstance(doc.get("access_token"), str):
                raise SourceError("EGA: the token endpoint answered without an access_token")
            self._token = doc["access_token"]
            self._lifetime = float(doc.get("expires_in") or 3600)
            self._expires = now + self._lifetime
            logger.info("EGA: token valid %.0fs", self._lifetime)
            return self._token

    async def _get(self, path: str) -> Any:
        url = f"{self.base}/{path}"
        for retry in (False, True):
            token = await self.token(force=retry)
            try:
                return await self.ctx.http.get_json(
                    url, headers={"Authorization": f"Bearer {token}"}
                )
            except HTTPStatusError as exc:
                if exc.status == 401 and not retry:
                    continue  # expired under us: one fresh token, then give up
                if exc.status in (401, 403):
                    raise CredentialsError(
                        f"EGA: not authorised for {path} (HTTP {exc.status})"
                    ) from None
                if exc.status == 404:
                    return None
                raise SourceError(f"EGA {path}: {exc}") from exc
        return None

    async def expand(self) -> AsyncIterator[list[FileTask]]:
        for dataset in self.datasets:
            items = await self._get(f"metadata/datasets/{dataset}/files")
            tasks = [self._task(dataset, f) for f in items or [] if isinstance(f, dict)]
            if not tasks:
                self.ctx.warn(f"EGA: {dataset}: no files (not authorised, or empty)")
            yield tasks
        for file_id in self.files:
            item = await self._get(f"metadata/files/{file_id}")
            if not isinstance(item, dict):
                self.ctx.warn(f"EGA: {file_id}: no such file, or not authorised")
                continue
            yield [self._task(str(item.get("datasetId") or "files"), item)]

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
            path=ega_path(dataset, file_id, str(item.get("fileName") or file_id)),
            size=size,
            checksum=md5,
            verify="md5" if md5 else "size",
        )

    # -- FileHooks ---------------------------------------------------------------------

    def recoverable(self, error: TransferError) -> bool:
        return isinstance(error, HTTPStatusError) and error.status == 401

    async def prepare(self, task: FileTask, error: MirrorError | None) -> FileTask:
        if isinstance(error, HTTPStatusError) and error.status == 401:
            await self.token(force=True)
        return task

    async def headers(self, task: FileTask) -> Mapping[str, str]:
        return {"Authorization": f"Bearer {await self.token()}"}

    async def verify(self, task: FileTask, got: object) -> None:
        return None  # the whole-file MD5 against plainChecksum is the fetcher's own check

    async def settled(self, task: FileTask, verified: bool) -> None:
        return None
