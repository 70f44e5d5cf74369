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
import collections
import contextlib
import dataclasses
import hashlib
import io
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final
from urllib.parse import urlsplit

import asyncssh
from crypt4gh.keys import get_private_key

from .._credentials import Secret
from .._dest import Destination, SizedPart
from .._exceptions import (
    ChecksumMismatch,
    ConnectionFailed,
    CredentialsError,
    MirrorError,
    SourceError,
    TransferError,
)
from .._fetch import PartRecord
from .._models import FileTask, Verify
from .._registry import CredentialLookup
from .._seam import Landing
from .._sink import HashThread
from . import Received, SourceContext
from .ega import ega_path
from .ega_c4gh import (
    C4ghKey,
    Decryptor,
    HeaderError,
    header_length,
    plain_size,
    resume_point,
    session_keys,
)

__all__ = [
    "OUTBOX_ENDPOINTS",
    "OUTBOX_ENVIRONMENT",
    "OutboxLogin",
    "OutboxSource",
    "outbox_login",
]

logger = logging.getLogger(__name__)
# asyncssh logs connections with the user name at INFO: personal data, kept out of the
# run's log unless someone asks for asyncssh's debugging.
logging.getLogger("asyncssh").setLevel(logging.WARNING)
# crypt4gh logs key material (the decrypted secret key, shared keys) at DEBUG, and only
# errors this module reports in its own words above that.
logging.getLogger("crypt4gh").setLevel(logging.CRITICAL)

OUTBOX_ENDPOINTS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "ega_outbox": "sftp://outbox.ega-archive.org:22",
        "ega_metadata": "https://metadata.ega-archive.org",
    }
)
#: Set by a user of the outbox (besides EGA_USERNAME, and EGA_PASSWORD or the key).
OUTBOX_ENVIRONMENT: Final = ("EGA_SSH_KEY", "C4GH_SECRET_KEY", "C4GH_PASSPHRASE")

_UNAVAILABLE: Final = ".unavailable.c4gh"
_C4GH: Final = ".c4gh"
#: The header the outbox writes for a user with one Crypt4GH key: 16 + 108 bytes.
_ONE_RECIPIENT: Final = 124
#: Bytes of the file asked for at once to find its header (one packet is 108).
_HEAD: Final = 4096
#: Cipher bytes handed to the decrypting thread at once, and batches read ahead of it.
_BATCH: Final = 4 << 20
_QUEUED: Final = 4
#: SFTP reads in flight per file (of the server's largest read each, 255 KiB for
#: OpenSSH): enough to keep a fast link busy through the round trips.
_IN_FLIGHT: Final = 32
_READ_BACK: Final = 1 << 20
_CIPHERS: Final = (
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "chacha20-poly1305@openssh.com",
    "aes256-ctr",
    "aes192-ctr",
    "aes128-ctr",
)
_WINDOW: Final = 16 << 20
_PACKET: Final = 256 << 10


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class OutboxLogin:
    """The account and keys; ``repr`` shows none of them."""

    username: str = dataclasses.field(repr=False)
    password: Secret | None = None
    ssh_key: asyncssh.SSHKey | None = dataclasses.field(default=None, repr=False)
    c4gh: C4ghKey = dataclasses.field(repr=False)
    #: A known_hosts file to trust the outbox's host key from (else ~/.ssh/known_hosts).
    known_hosts: str | None = None


def outbox_login(lookup: CredentialLookup) -> OutboxLogin:
    """``EGA_USERNAME`` and either ``EGA_SSH_KEY`` (``EGA_SSH_PASSPHRASE``) or
    ``EGA_PASSWORD``; ``C4GH_SECRET_KEY`` (``C4GH_PASSPHRASE``). The keys are read now,
    so a wrong passphrase stops the run before any download."""
    creds, where = lookup.credentials, lookup.where
    user, password = creds.get("EGA_USERNAME"), creds.get("EGA_PASSWORD")
    key_path, c4gh_path = creds.get("EGA_SSH_KEY"), creds.get("C4GH_SECRET_KEY")
    missing = []
    if user is None:
        missing.append("EGA_USERNAME")
    if key_path is None and password is None:
        missing.append("EGA_SSH_KEY (or EGA_PASSWORD)")
    if c4gh_path is None:
        missing.append("C4GH_SECRET_KEY")
    if missing or user is None or c4gh_path is None:
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
        c4gh=_c4gh_key(c4gh_path.value, creds.get("C4GH_PASSPHRASE"), where),
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


class _Connection:
    """One SSH connection and its SFTP session, shared by the files fetched at once;
    made again after it drops."""

    def __init__(self, url: str, login: OutboxLogin) -> None:
        parts = urlsplit(url)
        self.url = url
        self.host = parts.hostname or ""
        self.port = parts.port or 22
        self.login = login
        self._lock = asyncio.Lock()
        self._conn: asyncssh.SSHClientConnection | None = None
        self._sftp: asyncssh.SFTPClient | None = None

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    async def sftp(self) -> asyncssh.SFTPClient:
        async with self._lock:
            if self._sftp is not None:
                return self._sftp
            login = self.login
            options: dict[str, Any] = {
                "username": login.username,
                "known_hosts": login.known_hosts or (),
                "connect_timeout": 30,
                "keepalive_interval": 30,
                # No agent, no ~/.ssh keys, no ssh_config: what the user set, and only it.
                "agent_path": None,
                "config": None,
                "client_keys": [login.ssh_key] if login.ssh_key is not None else None,
                "preferred_auth": "publickey"
                if login.ssh_key is not None
                else "keyboard-interactive",
                # Answered through keyboard-interactive only: the outbox refuses the
                # plain password method.
                "password": login.password.value if login.password is not None else None,
                # AES-GCM first: one call into OpenSSL per packet (AES-NI), where
                # ChaCha20-Poly1305 takes several from Python; big packets and a window
                # of many reads in flight make fewer, larger trips through the loop.
                "encryption_algs": _CIPHERS,
                "window": _WINDOW,
                "max_pktsize": _PACKET,
            }
            try:
                conn = await asyncssh.connect(self.host, self.port, **options)
                try:
                    sftp = await conn.start_sftp_client()
                except BaseException:
                    conn.close()
                    raise
            except asyncssh.PermissionDenied:
                raise CredentialsError(
                    f"the EGA outbox {self.where} refused the login (EGA_USERNAME with "
                    f"{'EGA_SSH_KEY' if login.ssh_key is not None else 'EGA_PASSWORD'})",
                    hint="register the SSH key's public half in your EGA profile, or check "
                    "EGA_PASSWORD",
                ) from None
            except asyncssh.HostKeyNotVerifiable:
                raise TransferError(
                    f"the EGA outbox {self.where}: its host key is not in "
                    f"{login.known_hosts or '~/.ssh/known_hosts'}",
                    url=self.url,
                    hint="add the outbox's host key to ~/.ssh/known_hosts (or EGA_KNOWN_HOSTS)",
                ) from None
            except (OSError, asyncssh.Error, TimeoutError) as exc:
                raise _lost(self.url, self.where, exc) from None
            self._conn, self._sftp = conn, sftp
            return sftp

    async def dropped(self, sftp: asyncssh.SFTPClient) -> None:
        """Forget ``sftp`` (its connection failed) so the next call connects again."""
        async with self._lock:
            if self._sftp is sftp:
                conn, self._conn, self._sftp = self._conn, None, None
                if conn is not None:
                    conn.close()

    async def close(self) -> None:
        async with self._lock:
            conn, self._conn, self._sftp = self._conn, None, None
        if conn is not None:
            conn.close()
            with contextlib.suppress(Exception):
                await conn.wait_closed()


def _lost(url: str, where: str, exc: BaseException) -> ConnectionFailed:
    why = str(exc) or type(exc).__name__
    return ConnectionFailed(f"the EGA outbox {where}: {why}", url=url, why=why)


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
    ) -> None:
        self.datasets = datasets
        self.files = files
        self.ctx = ctx
        self.keep = keep
        self.base = ctx.endpoints["ega_outbox"].rstrip("/")
        self.metadata = ctx.endpoints["ega_metadata"].rstrip("/")
        self.outbox = _Connection(self.base, login)
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
            raise _lost(self.base, self.outbox.where, exc) from None
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
        by_name = {
            str(r["display_name"]): r
            for r in records
            if isinstance(r.get("display_name"), str) and r["display_name"]
        }
        sizes: dict[int, list[dict[str, Any]]] = {}
        for r in records:
            if (size := _int(r.get("filesize"))) is not None:
                sizes.setdefault(size, []).append(r)
        tasks: list[FileTask] = []
        used: set[str] = set()
        for entry in sorted(listed, key=lambda e: e.name):
            unavailable = entry.name.endswith(_UNAVAILABLE)
            display = entry.name[: -len(_UNAVAILABLE if unavailable else _C4GH)]
            record = by_name.get(display)
            if record is None and not by_name:
                # No display names published: a size that one record alone has.
                same = sizes.get(entry.size, [])
                record = same[0] if len(same) == 1 else None
            if record is None or str(record["accession_id"]) in used:
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
            used.add(str(record["accession_id"]))
            task = self._task(dataset, entry, display, record)
            if unavailable:
                self.ctx.warn(
                    f"EGA outbox: {dataset}/{display} ({task.accession}) is on cold storage "
                    "at EGA; a later run fetches it"
                )
                task = dataclasses.replace(
                    task, error="on cold storage at EGA; a later run fetches it"
                )
            tasks.append(task)
        return tasks

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
        final = _encrypted(dest.final(task.path, task.root))
        await asyncio.to_thread(dest.land, dest.part(final), final, task.mode)

    async def settled(self, task: FileTask, verified: bool) -> None:
        return None

    # -- the transfer (OwnTransfer) ----------------------------------------------------

    async def receive(self, task: FileTask, landing: Landing) -> tuple[Received, int]:
        # One file per connection slot of the outbox's host (hosts: in the manifest).
        async with self.ctx.http.gate(task.url).slot():
            sftp = await self.outbox.sftp()
            try:
                return await self._receive(sftp, task, landing)
            except (OSError, asyncssh.Error, TimeoutError) as exc:
                if isinstance(exc, asyncssh.SFTPNoSuchFile):
                    raise TransferError(
                        f"{task.url}: no longer in the outbox (moved to cold storage, or "
                        "access ended); a later run plans it again",
                        url=task.url,
                    ) from None
                await self.outbox.dropped(sftp)
                raise _lost(task.url, self.outbox.where, exc) from None

    async def _receive(
        self, sftp: asyncssh.SFTPClient, task: FileTask, landing: Landing
    ) -> tuple[Received, int]:
        remote = urlsplit(task.url).path.lstrip("/")
        async with sftp.open(remote, "rb") as f:
            head = b""
            while (length := header_length(head)) is None:
                more: bytes = await f.read(_HEAD, len(head))
                if not more:
                    raise TransferError(f"{task.url}: ends inside its Crypt4GH header")
                head += more
            total = (await f.stat()).size or 0
            try:
                keys = await asyncio.to_thread(session_keys, head[:length], self.login.c4gh)
            except HeaderError as exc:
                raise TransferError(f"{task.url}: {exc}", url=task.url) from None
            out = await self._open(task, landing, head[:length], keys)
            try:
                landing.started(out.decryptor.size)
                received = await self._pull(f, out, total, landing)
            except HeaderError as exc:
                # Bytes that fail their MAC never reach the .part: the segments before
                # them are kept, and another attempt reads the rest again.
                raise ChecksumMismatch(f"{task.path}: {exc}", url=task.url) from None
            finally:
                await asyncio.to_thread(out.close)
        got = Received(
            md5=out.md5.hexdigest(),
            size=out.decryptor.size,
            path=landing.part,
            offset=out.kept,
            sha256=out.sha256.hexdigest() if out.sha256 else None,
        )
        return got, received

    async def _open(
        self, task: FileTask, landing: Landing, header: bytes, keys: list[bytes]
    ) -> _Output:
        """The ``.part`` (and the kept ``.c4gh``'s), cut back to the last whole segment a
        resume can trust; hashes of what is kept."""
        dest = landing.dest
        held = await asyncio.to_thread(dest.size, landing.part) or 0
        if held:
            record = PartRecord.loads(await landing.records.get_validator(task.key))
            if (
                record is None
                or not record.same_file(task)
                or (task.size is not None and held > task.size)
            ):
                logger.info(
                    "%s: the partial download is of another file; starting again", task.path
                )
                held = 0
        kept, _ = resume_point(held, len(header))
        if not kept:
            await landing.records.set_validator(task.key, PartRecord.of(task).dumps())
        cipher_part = dest.part(_encrypted(landing.final)) if self.keep else None
        return await asyncio.to_thread(
            _Output.open, dest, landing.part, cipher_part, task, kept, header, keys
        )

    async def _pull(
        self, f: asyncssh.SFTPClientFile, out: _Output, total: int, landing: Landing
    ) -> int:
        """Read the payload from ``out.offset`` with many requests in flight, in order
        into the decrypting thread, whose plaintext is hashed on a thread of its own;
        bytes received.

        The reads go on while a batch is decrypted: the reader only waits when
        ``_QUEUED`` batches are waiting already.
        """
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[list[bytes] | None] = asyncio.Queue(_QUEUED)
        received = 0

        async def read() -> None:
            nonlocal received
            batch: list[bytes] = []
            size = 0
            # Reads in flight, oldest first: taken in order, so no reordering is needed.
            flight: collections.deque[tuple[int, int, asyncio.Task[bytes]]] = collections.deque()
            at = ahead = out.offset
            block = f.read_len or _READ_BACK
            try:
                while at < total:
                    while ahead < total and len(flight) < _IN_FLIGHT:
                        n = min(block, total - ahead)
                        flight.append((ahead, n, asyncio.ensure_future(f.read(n, ahead))))
                        ahead += n
                    offset, n, task = flight.popleft()
                    data = await task
                    while len(data) < n:  # a short read: the rest of this block
                        more: bytes = await f.read(n - len(data), offset + len(data))
                        if not more:
                            raise asyncssh.ConnectionLost("the file ended early")
                        data += more
                    received += n
                    at += n
                    batch.append(data)
                    size += n
                    if size >= _BATCH:
                        await queue.put(batch)
                        batch, size = [], 0
            finally:
                for _, _, task in flight:
                    task.cancel()
                # Collected, so that none is left with an error no one reads.
                await asyncio.gather(*(t for _, _, t in flight), return_exceptions=True)
                # What arrived in order is good, even when the connection dropped: it
                # is decrypted into the .part for the next attempt (unless the
                # decrypting side is gone).
                if not stopped:
                    if batch:
                        await queue.put(batch)
                    await queue.put(None)

        async def land() -> None:
            hashing = HashThread(ahead=2)
            try:
                while (batch := await queue.get()) is not None:
                    plain = await loop.run_in_executor(None, out.feed, batch)
                    await hashing.room()
                    hashing.submit(out.digest, plain)
                    landing.progress(sum(len(p) for p in plain))
            finally:
                await hashing.wait()

        stopped = False
        reader = asyncio.ensure_future(read())
        try:
            await land()
        finally:
            stopped = True
            if not reader.done():
                reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader  # its error (a dropped connection) is the attempt's
        last = await loop.run_in_executor(None, out.finish)
        out.digest(last)
        landing.progress(sum(len(p) for p in last))
        return received


class _Output:
    """The plaintext ``.part`` being written and, with ``keep_encrypted``, the cipher one."""

    def __init__(
        self,
        decryptor: Decryptor,
        plain: SizedPart,
        cipher: SizedPart | None,
        *,
        kept: int,
        offset: int,
        cipher_at: int,
        md5: hashlib._Hash,
        sha256: hashlib._Hash | None,
    ) -> None:
        self.decryptor = decryptor
        #: The plaintext's digests: the one the store records, the archive's.
        self.md5 = md5
        self.sha256 = sha256
        self._plain = plain
        self._cipher = cipher
        #: Plaintext bytes kept from earlier attempts; the cipher offset read from.
        self.kept = kept
        self.offset = offset
        self._cipher_at = cipher_at

    @classmethod
    def open(
        cls,
        dest: Destination,
        part: Path,
        cipher_part: Path | None,
        task: FileTask,
        kept: int,
        header: bytes,
        keys: list[bytes],
    ) -> _Output:
        cipher_at = len(header)
        if kept and cipher_part is not None:
            # The kept .c4gh goes on after its own header (valid for the same payload).
            old = _held_header(dest, cipher_part)
            _, cipher_at = resume_point(kept, old or 0)
            if old is None or (dest.size(cipher_part) or 0) < cipher_at:
                kept, cipher_at = 0, len(header)
        _, offset = resume_point(kept, len(header))
        md5 = hashlib.md5()
        digest = hashlib.sha256() if task.verify == "sha256" else None
        plain = dest.open_sized(part, kept, not kept)
        cipher = None
        try:
            if kept:
                for at in range(0, kept, _READ_BACK):
                    data = plain.read_at(at, min(_READ_BACK, kept - at))
                    md5.update(data)
                    if digest is not None:
                        digest.update(data)
            if cipher_part is not None:
                cipher = dest.open_sized(cipher_part, cipher_at if kept else 0, not kept)
                if not kept:
                    cipher.write_at([header], 0)
        except BaseException:
            plain.close()
            if cipher is not None:
                cipher.close()
            raise
        return cls(
            Decryptor(keys, plain, at=kept),
            plain,
            cipher,
            kept=kept,
            offset=offset,
            cipher_at=cipher_at,
            md5=md5,
            sha256=digest,
        )

    def feed(self, chunks: Sequence[bytes]) -> list[bytes]:
        """Keep (with ``keep_encrypted``) and decrypt ``chunks``: the plaintext written."""
        if self._cipher is not None:
            self._cipher.write_at(chunks, self._cipher_at)
            self._cipher_at += sum(len(c) for c in chunks)
        return self.decryptor.feed(chunks)

    def finish(self) -> list[bytes]:
        return self.decryptor.finish()

    def digest(self, plain: list[bytes]) -> None:
        for data in plain:
            self.md5.update(data)
            if self.sha256 is not None:
                self.sha256.update(data)

    def close(self) -> None:
        self._plain.close()
        if self._cipher is not None:
            self._cipher.close()


def _held_header(dest: Destination, path: Path) -> int | None:
    """Header length of a kept ``.c4gh`` ``.part``; None when there is none to trust."""
    if not dest.is_file(path):
        return None
    with dest.open_read(path) as f:
        head = f.read(_HEAD)
    try:
        return header_length(head)
    except HeaderError:
        return None


def _encrypted(final: Path) -> Path:
    return final.with_name(final.name + _C4GH)


def _decrypted(attrs: asyncssh.SFTPAttrs) -> int | None:
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
