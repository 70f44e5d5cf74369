"""EGA's Live Outbox: SFTP listings matched to the metadata API, Crypt4GH files fetched
resumably and decrypted into place (``ega: {protocol: outbox}``).

Facts this module relies on (research/outbox-mgnify2-webin-upload.md, section 1):

* One directory per dataset (``EGAD…/``) holding ``<display name>.c4gh``; a file on
  cold storage is listed as ``<display name>.unavailable.c4gh`` and cannot be read.
* A listing gives the ``.c4gh`` size and, where the server is EGA's patched one, the
  plaintext size as the ``decrypted_filesize`` extended attribute.
* Login is by SSH key or by the EGA password through keyboard-interactive; the plain
  ``password`` method is refused.
* No checksum is in the outbox: ``metadata.ega-archive.org/datasets/{EGAD}/files``
  gives each file's plaintext checksum and its algorithm (SHA256 or MD5), with
  ``accession_id`` (the EGAF) and the ``.c4gh`` size for one recipient (``filesize``).

The ``.part`` beside the final path holds the plaintext: the header is re-encrypted on
every read, the payload is not, so a resume keeps the whole segments decrypted so far
and continues past whatever header the server sends now (:mod:`.ega_c4gh`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any, Final

import asyncssh
from crypt4gh.keys import get_private_key

from .._accessions import is_ega_dataset
from .._credentials import Secret
from .._exceptions import (
    CredentialsError,
    MirrorError,
    SourceError,
    TransferError,
)
from .._listing import ListedDataset, ListedFile, checksum_kind
from .._models import FileTask, Verify
from .._registry import CredentialLookup
from .._seam import Landing
from . import Received, SourceContext
from .ega import ega_path
from .ega_c4gh import (
    C4ghKey,
    plain_size,
)
from .ega_openssh import Attrs
from .ega_sftp import Fetcher, encrypted
from .ega_ssh import OutboxConnection, OutboxLogin, SshClient, lost

__all__ = [
    "OutboxLogin",
    "OutboxSource",
    "outbox_login",
]

# asyncssh logs connections with the user name at INFO: personal data, kept out of the
# run's log unless someone asks for asyncssh's debugging.
logging.getLogger("asyncssh").setLevel(logging.WARNING)
# crypt4gh logs key material (the decrypted secret key, shared keys) at DEBUG, and only
# errors this module reports in its own words above that.
logging.getLogger("crypt4gh").setLevel(logging.CRITICAL)

_UNAVAILABLE: Final = ".unavailable.c4gh"
_C4GH: Final = ".c4gh"
#: The header the outbox writes for a user with one Crypt4GH key: 16 + 108 bytes.
_ONE_RECIPIENT: Final = 124


def outbox_login(lookup: CredentialLookup, *, decrypt: bool = True) -> OutboxLogin:
    """``EGA_USERNAME`` and either ``EGA_SSH_KEY`` (``EGA_SSH_PASSPHRASE``) or
    ``EGA_PASSWORD``; ``C4GH_SECRET_KEY`` (``C4GH_PASSPHRASE``) unless only listing
    (not ``decrypt``). The keys are read now, so a wrong passphrase stops the run
    before any download."""
    creds, where = lookup.credentials, lookup.where
    user, password = creds.get("EGA_USERNAME"), creds.get("EGA_PASSWORD")
    key_path, c4gh_path = creds.get("EGA_SSH_KEY"), creds.get("C4GH_SECRET_KEY")
    missing = []
    if user is None:
        missing.append("EGA_USERNAME")
    if key_path is None and password is None:
        missing.append("EGA_SSH_KEY (or EGA_PASSWORD)")
    if c4gh_path is None and decrypt:
        missing.append("C4GH_SECRET_KEY")
    if missing or user is None:
        raise CredentialsError(
            f"{where}: {' and '.join(missing)} not set. The EGA outbox needs your account "
            "(EGA_USERNAME with the SSH key registered at EGA in EGA_SSH_KEY, or "
            "EGA_PASSWORD) and your Crypt4GH secret key (C4GH_SECRET_KEY, C4GH_PASSPHRASE)"
        )
    ssh_key = None
    if key_path is not None:
        phrase = creds.get("EGA_SSH_PASSPHRASE")
        try:
            ssh_key = asyncssh.read_private_key(
                key_path.value, phrase.value if phrase is not None else None
            )
        except (OSError, asyncssh.KeyImportError, ValueError):
            raise CredentialsError(
                f"{where}: cannot read the SSH key EGA_SSH_KEY={key_path.value} "
                "(not an OpenSSH private key, or EGA_SSH_PASSPHRASE is missing or wrong)"
            ) from None
    return OutboxLogin(
        username=user.value,
        password=password,
        ssh_key=ssh_key,
        ssh_key_path=key_path.value if key_path is not None else None,
        ssh_passphrase=creds.get("EGA_SSH_PASSPHRASE") if key_path is not None else None,
        c4gh=_c4gh_key(c4gh_path.value, creds.get("C4GH_PASSPHRASE"), where)
        if c4gh_path is not None and decrypt
        else None,
        known_hosts=(k.value if (k := creds.get("EGA_KNOWN_HOSTS")) is not None else None),
    )


def _c4gh_key(path: str, passphrase: Secret | None, where: str) -> C4ghKey:
    asked = False

    def ask() -> str:
        nonlocal asked
        asked = True
        return passphrase.value if passphrase is not None else ""

    try:
        # The library's key parser prints to stderr and exits on a bad passphrase.
        with contextlib.redirect_stderr(io.StringIO()):
            return C4ghKey(get_private_key(path, ask))
    except (Exception, SystemExit):  # what its parsers meet: ValueError, nacl's, exit
        if asked and passphrase is None:
            raise CredentialsError(
                f"{where}: C4GH_PASSPHRASE not set; the key in C4GH_SECRET_KEY={path} is encrypted"
            ) from None
        raise CredentialsError(
            f"{where}: cannot read the Crypt4GH secret key C4GH_SECRET_KEY={path} "
            "(not a Crypt4GH or ed25519 key, or C4GH_PASSPHRASE is wrong)"
        ) from None


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class _Listed:
    name: str
    size: int
    plain: int | None


class OutboxSource:
    """Expands an ``ega:`` entry (``protocol: outbox``) and fetches over SFTP."""

    name = "ega"
    parallel_ranges = False
    max_range: int | None = None

    def __init__(
        self,
        datasets: tuple[str, ...],
        files: tuple[str, ...],
        ctx: SourceContext,
        login: OutboxLogin,
        *,
        keep: bool = False,
        client: SshClient | None = None,
    ) -> None:
        self.datasets = datasets
        self.files = files
        self.ctx = ctx
        self.keep = keep
        self.base = ctx.endpoints["ega_outbox"].rstrip("/")
        self.metadata = ctx.endpoints["ega_metadata"].rstrip("/")
        self.outbox = OutboxConnection(self.base, login, client=client)
        # No Crypt4GH key: a login for listing only (``mirror ls ega``), fetching nothing.
        self.fetcher = Fetcher(self.outbox, login.c4gh, keep=keep) if login.c4gh else None
        self.login = login
        self.hooks = self

    async def aclose(self) -> None:
        """The run is over: the SSH connection goes."""
        await self.outbox.close()

    # -- planning ----------------------------------------------------------------------

    async def expand(self) -> AsyncIterator[list[FileTask]]:
        wanted = set(self.files)
        seen: set[str] = set()
        for dataset in self.datasets:
            records = await self._records(dataset)
            listed = await self._list(dataset)
            tasks = self._match(dataset, records, listed)
            if wanted:
                tasks = [t for t in tasks if t.accession in wanted]
            seen.update(t.accession for t in tasks)
            if not tasks and not wanted:
                self.ctx.warn(f"EGA outbox: {dataset}: no files (not authorised, or empty)")
            yield tasks
        for file_id in sorted(wanted - seen):
            self.ctx.warn(f"EGA outbox: {file_id} is in none of the datasets given")

    async def _records(self, dataset: str) -> list[dict[str, Any]]:
        url = f"{self.metadata}/datasets/{dataset}/files"

        async def once() -> Any:
            async with self.ctx.http.request(
                "GET", url, params={"limit": "100000"}, headers={"Accept": "application/json"}
            ) as resp:
                return await resp.json()

        doc = await self.ctx.http.retrying(f"EGA metadata {dataset}", once)
        if not isinstance(doc, list):
            raise SourceError(f"EGA metadata {url}: not a list of files")
        return [r for r in doc if isinstance(r, dict) and r.get("accession_id")]

    async def _list(self, dataset: str) -> list[_Listed]:
        sftp = await self.outbox.sftp()
        try:
            names = await sftp.readdir(dataset)
        except asyncssh.SFTPNoSuchFile:
            raise SourceError(
                f"EGA outbox {self.outbox.where}: no directory {dataset} "
                "(no access to the dataset, or it has expired)"
            ) from None
        except (OSError, asyncssh.Error) as exc:
            await self.outbox.dropped(sftp)
            raise lost(self.base, self.outbox.where, exc) from None
        found = []
        for entry in names:
            name = str(entry.filename)
            if not name.endswith(_C4GH) or entry.attrs.size is None:
                continue
            found.append(_Listed(name=name, size=entry.attrs.size, plain=_decrypted(entry.attrs)))
        return found

    def _match(
        self, dataset: str, records: list[dict[str, Any]], listed: list[_Listed]
    ) -> list[FileTask]:
        tasks: list[FileTask] = []
        for pair in _pair(records, listed):
            entry, display, record = pair.entry, pair.display, pair.record
            if record is None:
                tasks.append(
                    FileTask(
                        source="ega",
                        accession=display,
                        url=f"{self.base}/{dataset}/{entry.name}",
                        path=ega_path(dataset, "unmatched", display),
                        error=f"{dataset}/{entry.name} is in the outbox, but no record of "
                        "the metadata API matches it (by display name or size): its file "
                        "id and checksum are unknown",
                    )
                )
                continue
            task = self._task(dataset, entry, display, record)
            if pair.unavailable:
                self.ctx.warn(
                    f"EGA outbox: {dataset}/{display} ({task.accession}) is on cold storage "
                    "at EGA; a later run fetches it"
                )
                task = dataclasses.replace(
                    task, error="on cold storage at EGA; a later run fetches it"
                )
            tasks.append(task)
        return tasks

    # -- listing (``mirror ls ega --protocol outbox``) -----------------------------------

    async def granted(self) -> list[ListedDataset]:
        """The datasets' directories at the top of the outbox, files not listed."""
        sftp = await self.outbox.sftp()
        try:
            names = await sftp.readdir(".")
        except (OSError, asyncssh.Error) as exc:
            await self.outbox.dropped(sftp)
            raise lost(self.base, self.outbox.where, exc) from None
        found = sorted({str(e.filename) for e in names if is_ega_dataset(str(e.filename))})
        return [ListedDataset(id=name) for name in found]

    async def listing(self, dataset: str) -> ListedDataset:
        """``dataset``'s files as the outbox holds them, matched to the metadata API's
        records as a run matches them: a file on cold storage has status
        ``unavailable``, one no record matches ``unmatched`` (its id is its name)."""
        try:
            listed = await self._list(dataset)
        except SourceError as exc:  # no such directory: not granted, or expired
            return ListedDataset(id=dataset, error=str(exc))
        records = await self._records(dataset)
        files = []
        for pair in _pair(records, listed):
            record = pair.record or {}
            plain = pair.entry.plain
            if plain is None:
                plain = plain_size(pair.entry.size - _ONE_RECIPIENT)
            files.append(
                ListedFile(
                    id=str(record.get("accession_id") or pair.display),
                    name=pair.display,
                    size=plain,
                    status="unmatched"
                    if pair.record is None
                    else "unavailable"
                    if pair.unavailable
                    else "available",
                    checksum_type=checksum_kind(
                        record.get("unencrypted_checksum_type"),
                        record.get("unencrypted_checksum"),
                    ),
                )
            )
        return ListedDataset(id=dataset, files=tuple(files))

    def _task(self, dataset: str, entry: _Listed, display: str, record: dict[str, Any]) -> FileTask:
        file_id = str(record["accession_id"])
        kind = str(record.get("unencrypted_checksum_type") or "").strip().upper()
        checksum = str(record.get("unencrypted_checksum") or "").strip().lower() or None
        verify: Verify = "size"
        if kind in ("SHA256", "SHA-256") and checksum:
            verify = "sha256"
        elif kind == "MD5" and checksum:
            verify = "md5"
        else:
            self.ctx.warn(
                f"EGA outbox: {file_id}: no checksum the mirror knows ({kind or 'none'}); "
                "checked by size only"
            )
            checksum = None
        plain = entry.plain
        if plain is None:
            # The server gave no plaintext size: the header for one recipient.
            plain = plain_size(entry.size - _ONE_RECIPIENT)
        return FileTask(
            source="ega",
            accession=file_id,
            url=f"{self.base}/{dataset}/{entry.name}",
            path=ega_path(dataset, file_id, display),
            size=plain,
            checksum=checksum,
            verify=verify,
        )

    # -- FileHooks ---------------------------------------------------------------------

    def recoverable(self, error: TransferError) -> bool:
        return False

    async def prepare(self, task: FileTask, error: MirrorError | None) -> FileTask:
        return task

    async def headers(self, task: FileTask) -> Mapping[str, str]:
        return {}

    async def verify(self, task: FileTask, got: Received) -> None:
        """The plaintext passed its checks: the kept ``.c4gh`` lands beside it."""
        if not self.keep:
            return
        dest = self.ctx.dest
        final = encrypted(dest.final(task.path, task.root))
        await asyncio.to_thread(dest.land, dest.part(final), final, task.mode)

    async def settled(self, task: FileTask, verified: bool) -> None:
        return None

    # -- the transfer (OwnTransfer) ----------------------------------------------------

    async def receive(self, task: FileTask, landing: Landing) -> tuple[Received, int]:
        # One file per connection slot of the outbox's host (hosts: in the manifest).
        async with self.ctx.http.gate(task.url).slot():
            if self.fetcher is None:
                raise CredentialsError(
                    "C4GH_SECRET_KEY not set: the outbox's files cannot be decrypted"
                )
            return await self.fetcher.receive(task, landing)


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class _Paired:
    """A file of the listing and the metadata record it is (``None``: none matched)."""

    entry: _Listed
    #: Its name without ``.c4gh`` (or ``.unavailable.c4gh``): the name it lands under.
    display: str
    unavailable: bool
    record: dict[str, Any] | None


def _pair(records: list[dict[str, Any]], listed: list[_Listed]) -> list[_Paired]:
    """Each listed file with its record: by display name, else (no display names
    published) by a ``.c4gh`` size that one record alone has; a record serves once."""
    by_name = {
        str(r["display_name"]): r
        for r in records
        if isinstance(r.get("display_name"), str) and r["display_name"]
    }
    sizes: dict[int, list[dict[str, Any]]] = {}
    for r in records:
        if (size := _int(r.get("filesize"))) is not None:
            sizes.setdefault(size, []).append(r)
    pairs: list[_Paired] = []
    used: set[str] = set()
    for entry in sorted(listed, key=lambda e: e.name):
        unavailable = entry.name.endswith(_UNAVAILABLE)
        display = entry.name[: -len(_UNAVAILABLE if unavailable else _C4GH)]
        record = by_name.get(display)
        if record is None and not by_name:
            same = sizes.get(entry.size, [])
            record = same[0] if len(same) == 1 else None
        if record is not None and str(record["accession_id"]) in used:
            record = None
        if record is not None:
            used.add(str(record["accession_id"]))
        pairs.append(_Paired(entry=entry, display=display, unavailable=unavailable, record=record))
    return pairs


def _decrypted(attrs: asyncssh.SFTPAttrs | Attrs) -> int | None:
    for name, value in attrs.extended:
        if name == b"decrypted_filesize":
            return _int(value.decode("ascii", "replace"))
    return None


def _int(value: object) -> int | None:
    try:
        n = int(str(value).strip())
    except ValueError:
        return None
    return n if n >= 0 else None
