"""One file task → ``NAME.part`` → checked → renamed into place.

The fetcher knows HTTP and bytes and nothing about archives. Resume follows RFC 9110
§14 (Range, If-Range) the way pip's ``network/download.py`` does it: ask for the
bytes we lack, validated by the ETag (or Last-Modified) we saw when the ``.part``
file was started; a 206 whose ``Content-Range`` starts where we stopped is
appended, a 200 means the server ignored us (or the file changed) and we start
again from zero.

A ``.part`` is only ever continued for the same file: beside the ETag the store
keeps the checksum and size the ``.part`` was started for (:class:`PartRecord`,
written before its first byte). When the archive now lists another checksum or
size (ENA regenerates a FASTQ and the Portal reports its new MD5), or nothing says
what the ``.part`` was started for, it starts again from zero: a server may keep its
ETag, or send none, for a file whose bytes changed.

The hot path is written for throughput: bytes from the socket are gathered into
batches of ``flush_bytes`` (:class:`TransferTuning`); each batch is written in a worker
thread and hashed from memory on a thread of the stream's own (hashlib releases the
GIL) while the loop receives the next one, so MD5 never waits for a write nor shares a
core with the event loop, no byte is read back from disk, and there is one thread hop
per batch, not per socket read. A batch is also written once it is ``flush_seconds`` old,
so a killed process loses at most the bytes of the last half second (and never more
than one batch) of each file: on a fast link the batch fills first, on a slow one
the clock writes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

from ._dest import Destination, LocalDestination
from ._exceptions import (
    ChecksumMismatch,
    IncompleteDownload,
    RemoteFileChanged,
    TransferError,
)
from ._http import Http, redact_url
from ._models import FileTask
from ._pace import Pace, StreamSlow
from ._ranges import RangeAction, content_length, decide, resume_headers
from ._seam import Received
from ._sink import Digests, Sink, drain
from ._tasks import acquire_in_thread, to_the_end
from ._tuning import TransferTuning

__all__ = [
    "Fetched",
    "PartRecord",
    "PartSliced",
    "Received",
    "Verifier",
    "fetch",
    "finish_part",
    "hash_file",
]

logger = logging.getLogger(__name__)
T = TypeVar("T")


class Validators(Protocol):
    """Where the :class:`PartRecord` of an unfinished ``.part`` is kept (the state store)."""

    async def get_validator(self, path: str) -> str | None: ...

    async def set_validator(self, path: str, validator: str | None) -> None: ...


@dataclass(frozen=True, kw_only=True, slots=True)
class Fetched:
    """A file now complete and checked at its final path."""

    md5: str
    size: int
    verified_by: str
    received: int


@dataclass(frozen=True, kw_only=True, slots=True)
class PartRecord:
    """What a ``.part`` was started for: the archive's checksum and size, and the
    server's ETag (or Last-Modified) for ``If-Range``. Kept as the store's validator."""

    checksum: str | None
    size: int | None
    validator: str | None = None

    @classmethod
    def of(cls, task: FileTask, validator: str | None = None) -> PartRecord:
        checksum = task.checksum.lower() if task.checksum else None
        return cls(checksum=checksum, size=task.size, validator=validator)

    def dumps(self) -> str:
        return json.dumps({"checksum": self.checksum, "size": self.size, "etag": self.validator})

    @classmethod
    def loads(cls, text: str | None) -> PartRecord | None:
        """The record in ``text``; None for nothing or anything else (an older bare ETag)."""
        try:
            doc = json.loads(text) if text else None
        except ValueError:
            return None
        if not isinstance(doc, dict) or not {"checksum", "size", "etag"} <= doc.keys():
            return None
        checksum, size, etag = doc["checksum"], doc["size"], doc["etag"]
        if not (
            (checksum is None or isinstance(checksum, str))
            and (size is None or (isinstance(size, int) and not isinstance(size, bool)))
            and (etag is None or isinstance(etag, str))
        ):
            return None
        return cls(checksum=checksum, size=size, validator=etag)

    def same_file(self, task: FileTask) -> bool:
        """Whether ``task`` names the file this ``.part`` was started for."""
        other = PartRecord.of(task)
        return (self.checksum, self.size) == (other.checksum, other.size)


class PartSliced(Exception):
    """The ``.part`` is a split file's (its slice record is beside it): resume its slices."""


#: An extra check run on the complete ``.part`` before the rename (EGA ``/results``).
Verifier = Callable[[FileTask, "Received"], Awaitable[None]]


def hash_file(path: Path, *, algorithm: str = "md5", limit: int | None = None) -> tuple[str, int]:
    """Digest and length of the first ``limit`` bytes of ``path`` (blocking: call in a thread)."""
    return LocalDestination(path.parent).hash(path, algorithm, limit=limit)


async def fetch(
    task: FileTask,
    final: Path,
    http: Http,
    validators: Validators,
    *,
    progress: Callable[[int], None] = lambda n: None,
    started: Callable[[int], None] = lambda offset: None,
    verifier: Verifier | None = None,
    commit: Callable[[Fetched], Awaitable[None]] | None = None,
    dest: Destination | None = None,
    transfer: TransferTuning | None = None,
    pace: Pace | None = None,
) -> Fetched:
    """Download ``task`` to ``final`` (via ``final.part``), or raise a :class:`TransferError`.

    ``dest`` holds the files (the local file system by default); ``transfer`` says
    how often gathered bytes are written (the defaults when not given).

    ``progress`` hears each piece of body as it arrives; ``started`` the offset the
    file stands at when a transfer (re)starts, before the request goes out (0 for a
    fresh start, and again 0 when the server sends the whole file).

    On a retryable error the ``.part`` file keeps every byte that can be trusted,
    so the next attempt (or the next run) resumes from it. Bytes that cannot be
    trusted (a checksum mismatch, a changed remote file) are dropped first.

    With ``pace``, a stream from a server that serves ranges stops once ``pace``
    finds it slow, and :class:`StreamSlow` says how far it got; a ``.part`` already
    split into slices raises :class:`PartSliced`.
    """
    dest = dest or LocalDestination(final.parent)
    sink = Sink(dest, dest.part(final), sha1=task.verify == "sha1")
    try:
        # One trip to a thread for all the file work before the request.
        # Looked for in the same trip to a thread: a file split by an earlier attempt.
        held = await acquire_in_thread(sink.open, pace is not None)
        if held < 0:
            raise PartSliced(task.path)
        record = None
        if held:
            record = PartRecord.loads(await validators.get_validator(task.key))
            if (
                record is not None
                and record.same_file(task)
                and (task.size is None or held <= task.size)
            ):
                await asyncio.to_thread(sink.hash_held)
            else:
                logger.info(
                    "%s: the partial download was started for %s; starting again",
                    task.path,
                    "another version of the file" if record is not None else "an unknown file",
                )
                record = None
                await asyncio.to_thread(sink.restart)
        offset = sink.size
        started(offset)
        received = 0
        if task.size is None or offset < task.size:
            validator = record.validator if record is not None else None
            received = await _receive(
                task,
                http,
                validators,
                sink,
                offset,
                validator,
                progress,
                started,
                transfer or TransferTuning(),
                pace,
            )
        if sink.is_open:
            await asyncio.to_thread(sink.close)
        if pace is not None and pace.tripped:
            raise StreamSlow(sink.size, sink.md5)
        got = Received(
            md5=sink.md5.hexdigest(),
            size=sink.size,
            path=sink.path,
            offset=sink.started_at,
            sha1=sink.sha1.hexdigest() if sink.sha1 else None,
        )
        return await finish_part(task, final, got, received, verifier, commit, dest)
    finally:
        if sink.is_open:
            await to_the_end(asyncio.to_thread(sink.close))


async def _receive(
    task: FileTask,
    http: Http,
    validators: Validators,
    sink: Sink,
    offset: int,
    validator: str | None,
    progress: Callable[[int], None],
    started: Callable[[int], None],
    transfer: TransferTuning,
    pace: Pace | None = None,
) -> int:
    headers = dict(task.headers)
    headers.update(resume_headers(offset, validator))
    received = 0
    async with http.request("GET", task.url, headers=headers, expect=(200, 206, 416)) as resp:
        action = decide(resp.status, offset, resp.headers.get("Content-Range"), task.size)
        if action is RangeAction.COMPLETE:
            return 0
        if action is RangeAction.CHANGED:
            await asyncio.to_thread(sink.restart)
            await validators.set_validator(task.key, None)
            raise RemoteFileChanged(
                f"{redact_url(task.url)}: the server's file no longer matches the partial "
                f"download (Content-Range {resp.headers.get('Content-Range')!r}); partial download "
                "discarded",
                url=task.url,
            )
        if action is RangeAction.RESTART:
            if offset:
                logger.info("%s: server sent the whole file; restarting from 0", task.path)
                started(0)
                await asyncio.to_thread(sink.restart)
            # From 0, the .part is empty already (opened empty, or restarted when it
            # held bytes of another file).
            offset = 0
        length = content_length(resp.headers.get("Content-Length"))
        if task.size is not None and length is not None and offset + length != task.size:
            raise IncompleteDownload(
                f"{redact_url(task.url)}: server offers {offset + length} bytes, the archive "
                f"lists {task.size}",
                url=task.url,
            )
        recorded = None
        if offset == 0:
            # Recorded while the first bytes arrive, and before any lands in the
            # .part: a .part is never on disk without what it was started for.
            tag = resp.headers.get("ETag")
            validator = (
                tag if tag and not tag.startswith("W/") else resp.headers.get("Last-Modified")
            )
            recorded = asyncio.ensure_future(
                validators.set_validator(task.key, PartRecord.of(task, validator).dumps())
            )
        # Only a server that says it serves ranges (or just did) is ever asked for slices.
        ranges = resp.status == 206 or resp.headers.get("Accept-Ranges", "").lower() == "bytes"
        if not ranges or task.size is None:
            pace = None
        async with contextlib.aclosing(resp.chunks()) as chunks:
            received = await _stream(chunks, sink, progress, transfer, recorded, pace, offset)
    if pace is not None and pace.tripped:
        return received
    if length is not None and received < length:
        raise IncompleteDownload(
            f"{redact_url(task.url)}: body ended after {received} of {length} bytes",
            url=task.url,
        )
    return received


async def _stream(
    chunks: AsyncIterator[bytes],
    sink: Sink,
    progress: Callable[[int], None],
    transfer: TransferTuning,
    recorded: Awaitable[None] | None = None,
    pace: Pace | None = None,
    offset: int = 0,
) -> int:
    """Copy ``chunks`` into ``sink`` while the next batch arrives.

    Chunks are handed over as a list, not joined: joining would copy every byte once
    more on the event loop's thread. Each batch is written in a pool thread and
    hashed from memory on a thread of its own (:class:`Digests`), so the MD5, the
    slowest step on most machines, never waits for a write nor shares a core with
    the loop. A body that fits one batch takes a single trip (write, then hash).
    Nothing is written before ``recorded`` is done. Stops early, after a whole
    batch, once ``pace`` finds the stream slow.
    """
    loop = asyncio.get_running_loop()
    pending: asyncio.Future[None] | None = None
    digests = Digests(sink)
    batch: list[bytes] = []
    size = received = 0
    flush_bytes, flush_seconds = transfer.flush_bytes, transfer.flush_seconds
    due = loop.time() + flush_seconds
    try:
        async for chunk in chunks:
            batch.append(chunk)
            size += len(chunk)
            # Reported as it arrives, not per batch: a display moves with the bytes.
            progress(len(chunk))
            if size >= flush_bytes or loop.time() >= due:
                before = loop.time()
                if pending is not None:
                    await pending
                if recorded is not None:
                    await recorded
                    recorded = None
                await digests.room()
                pending = loop.run_in_executor(None, sink.append, batch)
                digests.add(batch)
                received += size
                batch, size = [], 0
                now = loop.time()
                due = now + flush_seconds
                if pace is not None:
                    pace.waited(now - before)
                    if pace.slow(offset + received, now):
                        break
    finally:
        # Whatever arrived is good bytes: keep it for the resume, even on error, and
        # even when cancelled again while it is being written.
        await to_the_end(drain(sink, pending, recorded, batch, digests))
    return received + size


async def finish_part(
    task: FileTask,
    final: Path,
    got: Received,
    received: int,
    verifier: Verifier | None,
    commit: Callable[[Fetched], Awaitable[None]] | None,
    dest: Destination,
) -> Fetched:
    """Check a complete ``.part`` (size, checksum, ``verifier``), then land it.

    Bytes that fail a check are deleted: a wrong digest says something is wrong
    somewhere, not where, so nothing of them can be trusted for a resume.
    """
    if task.size is not None and got.size != task.size:
        if got.size > task.size:
            await asyncio.to_thread(dest.drop, got.path)
        raise IncompleteDownload(
            f"{redact_url(task.url)}: got {got.size} bytes, the archive lists {task.size}",
            url=task.url,
        )
    verified_by = "size"
    if task.checksum and task.verify in ("md5", "sha1", "sha256"):
        digest = {"md5": got.md5, "sha1": got.sha1, "sha256": got.sha256}[task.verify] or ""
        if digest != task.checksum.lower():
            await asyncio.to_thread(dest.drop, got.path)
            raise ChecksumMismatch(
                f"{task.verify.upper()} mismatch for {task.path}: got {digest}, "
                f"the archive lists {task.checksum}",
                url=task.url,
            )
        verified_by = task.verify
    if verifier is not None:
        try:
            await verifier(task, got)
        except TransferError:
            await asyncio.to_thread(dest.drop, got.path)
            raise
        verified_by = task.verify
    fetched = Fetched(md5=got.md5, size=got.size, verified_by=verified_by, received=received)

    async def land() -> None:
        # Mode and rename in one trip to a thread; the rename is atomic. The store
        # hears of it only afterwards, so a "verified" row always has its file.
        await asyncio.to_thread(dest.land, got.path, final, task.mode)
        if commit is not None:
            await commit(fetched)

    # Renaming a file into place and recording it must not be split by a Ctrl-C (or
    # two): a file at its final path that the store does not know is fetched again.
    await to_the_end(land())
    return fetched
