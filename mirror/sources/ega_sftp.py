"""The EGA outbox's files over SFTP: one SSH connection shared by the files fetched at
once, and one attempt at a file: its Crypt4GH header read and opened, the payload read
with many requests in flight and decrypted, in order, into the plaintext ``.part``
(:mod:`.ega_c4gh`), continuing the whole segments an earlier attempt left.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import urlsplit

import asyncssh

from .._credentials import Secret
from .._dest import Destination, SizedPart
from .._exceptions import ChecksumMismatch, ConnectionFailed, CredentialsError, TransferError
from .._fetch import PartRecord
from .._models import FileTask
from .._seam import Landing, Received
from .._sink import HashThread
from .ega_c4gh import C4ghKey, Decryptor, HeaderError, header_length, resume_point, session_keys
from .ega_openssh import OpenSshFile, OpenSshSftp, SshRefused, openssh_binary

__all__ = [
    "C4GH",
    "Fetcher",
    "OutboxConnection",
    "OutboxLogin",
    "Session",
    "SshClient",
    "default_client",
    "encrypted",
    "lost",
]

logger = logging.getLogger(__name__)

C4GH: Final = ".c4gh"
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
    #: Where the key was read from and its passphrase: what OpenSSH's ssh is given.
    ssh_key_path: str | None = None
    ssh_passphrase: Secret | None = None


#: The SFTP session either client gives: the same calls, the same exceptions.
Session = asyncssh.SFTPClient | OpenSshSftp
SshClient = Literal["openssh", "asyncssh"]


def default_client() -> SshClient:
    """OpenSSH's ``ssh`` where it is installed (its transport runs in C on a core of its
    own: twice the throughput); asyncssh, in this process, otherwise."""
    return "openssh" if openssh_binary() is not None else "asyncssh"


class OutboxConnection:
    """One SSH connection and its SFTP session, shared by the files fetched at once;
    made again after it drops."""

    def __init__(self, url: str, login: OutboxLogin, *, client: SshClient | None = None) -> None:
        parts = urlsplit(url)
        self.url = url
        self.host = parts.hostname or ""
        self.port = parts.port or 22
        self.login = login
        self.client: SshClient = client or default_client()
        self._lock = asyncio.Lock()
        self._conn: asyncssh.SSHClientConnection | None = None
        self._sftp: Session | None = None

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    async def sftp(self) -> Session:
        async with self._lock:
            if self._sftp is None:
                if self.client == "openssh":
                    self._sftp = await self._openssh()
                else:
                    self._conn, self._sftp = await self._asyncssh()
            return self._sftp

    def _refused(self) -> CredentialsError:
        login = self.login
        return CredentialsError(
            f"the EGA outbox {self.where} refused the login (EGA_USERNAME with "
            f"{'EGA_SSH_KEY' if login.ssh_key is not None else 'EGA_PASSWORD'})",
            hint="register the SSH key's public half in your EGA profile, or check EGA_PASSWORD",
        )

    def _unknown_host(self) -> TransferError:
        known = self.login.known_hosts or "~/.ssh/known_hosts"
        return TransferError(
            f"the EGA outbox {self.where}: its host key is not in {known}",
            url=self.url,
            hint="add the outbox's host key to ~/.ssh/known_hosts (or EGA_KNOWN_HOSTS)",
        )

    async def _openssh(self) -> OpenSshSftp:
        login = self.login
        secret = login.ssh_passphrase if login.ssh_key is not None else login.password
        try:
            session = await OpenSshSftp.start(
                self.host,
                self.port,
                username=login.username,
                key_path=login.ssh_key_path if login.ssh_key is not None else None,
                secret=secret.value if secret is not None else None,
                known_hosts=login.known_hosts,
            )
        except SshRefused as exc:
            if exc.kind == "login":
                raise self._refused() from None
            if exc.kind == "host key":
                raise self._unknown_host() from None
            raise lost(self.url, self.where, exc.detail) from None
        logger.debug("EGA outbox %s: SFTP through OpenSSH's ssh", self.where)
        return session

    async def _asyncssh(self) -> tuple[asyncssh.SSHClientConnection, asyncssh.SFTPClient]:
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
            "preferred_auth": "publickey" if login.ssh_key is not None else "keyboard-interactive",
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
                return conn, await conn.start_sftp_client()
            except BaseException:
                conn.close()
                raise
        except asyncssh.PermissionDenied:
            raise self._refused() from None
        except asyncssh.HostKeyNotVerifiable:
            raise self._unknown_host() from None
        except (OSError, asyncssh.Error, TimeoutError) as exc:
            raise lost(self.url, self.where, exc) from None

    async def dropped(self, sftp: Session) -> None:
        """Forget ``sftp`` (its connection failed) so the next call connects again."""
        async with self._lock:
            if self._sftp is sftp:
                await self._end()

    async def close(self) -> None:
        async with self._lock:
            await self._end(wait=True)

    async def _end(self, *, wait: bool = False) -> None:
        conn, sftp, self._conn, self._sftp = self._conn, self._sftp, None, None
        if isinstance(sftp, OpenSshSftp):
            await sftp.close()
        if conn is not None:
            conn.close()
            if wait:
                with contextlib.suppress(Exception):
                    await conn.wait_closed()


def lost(url: str, where: str, exc: BaseException | str) -> ConnectionFailed:
    """A dropped or failed connection, as a retryable error naming the outbox."""
    why = exc if isinstance(exc, str) else str(exc) or type(exc).__name__
    return ConnectionFailed(f"the EGA outbox {where}: {why}", url=url, why=why)


class Fetcher:
    """One attempt at one file: what :meth:`OutboxSource.receive` runs in a connection
    slot of the outbox's host."""

    def __init__(self, connection: OutboxConnection, key: C4ghKey, *, keep: bool) -> None:
        self.connection = connection
        self.key = key
        #: ``keep_encrypted``: the ``.c4gh`` as served is written beside the plaintext.
        self.keep = keep

    async def receive(self, task: FileTask, landing: Landing) -> tuple[Received, int]:
        """Fill ``landing.part`` with the plaintext of ``task`` (one attempt)."""
        sftp = await self.connection.sftp()
        try:
            return await self._receive(sftp, task, landing)
        except (OSError, asyncssh.Error, TimeoutError) as exc:
            if isinstance(exc, asyncssh.SFTPNoSuchFile):
                raise TransferError(
                    f"{task.url}: no longer in the outbox (moved to cold storage, or "
                    "access ended); a later run plans it again",
                    url=task.url,
                ) from None
            await self.connection.dropped(sftp)
            raise lost(task.url, self.connection.where, exc) from None

    async def _receive(
        self, sftp: Session, task: FileTask, landing: Landing
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
                keys = await asyncio.to_thread(session_keys, head[:length], self.key)
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
        cipher_part = dest.part(encrypted(landing.final)) if self.keep else None
        return await asyncio.to_thread(
            _Output.open, dest, landing.part, cipher_part, task, kept, header, keys
        )

    async def _pull(
        self, f: asyncssh.SFTPClientFile | OpenSshFile, out: _Output, total: int, landing: Landing
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


def encrypted(final: Path) -> Path:
    """Where the kept ``.c4gh`` of ``final`` lands."""
    return final.with_name(final.name + C4GH)
