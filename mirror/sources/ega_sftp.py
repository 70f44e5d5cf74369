"""The EGA outbox's files over SFTP (the session from :mod:`.ega_ssh`), one attempt at a
file: its Crypt4GH header read and opened, the payload read
with many requests in flight and decrypted, in order, into the plaintext ``.part``
(:mod:`.ega_c4gh`), continuing the whole segments an earlier attempt left.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

import asyncssh

from .._dest import Destination, SizedPart
from .._exceptions import ChecksumMismatch, TransferError
from .._fetch import PartRecord
from .._models import FileTask
from .._seam import Landing, Received
from .._sink import HashThread
from .ega_c4gh import C4ghKey, Decryptor, HeaderError, header_length, resume_point, session_keys
from .ega_openssh import OpenSshFile
from .ega_ssh import OutboxConnection, Session, lost

__all__ = ["C4GH", "Fetcher", "encrypted"]

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
            # One thread per digest: MD5 and SHA-256 side by side, each in order.
            hashing = [(HashThread(ahead=2), h) for h in (out.md5, out.sha256) if h is not None]
            try:
                while (batch := await queue.get()) is not None:
                    plain = await loop.run_in_executor(None, out.feed, batch)
                    for thread, digest in hashing:
                        await thread.room()
                        thread.submit(_update, digest, plain)
                    landing.progress(sum(len(p) for p in plain))
            finally:
                for thread, _ in hashing:
                    await thread.wait()

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


def _update(digest: hashlib._Hash, plain: list[bytes]) -> None:
    for data in plain:
        digest.update(data)


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
