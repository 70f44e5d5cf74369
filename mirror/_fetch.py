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
import collections
import concurrent.futures
import contextlib
import enum
import functools
import hashlib
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from ._dest import SLICES_SUFFIX, Destination, LocalDestination, PartFile
from ._exceptions import (
    ChecksumMismatch,
    IncompleteDownload,
    RemoteFileChanged,
    TransferError,
)
from ._http import Http, redact_url
from ._models import FileTask
from ._seam import Received
from ._tuning import TransferTuning

__all__ = [
    "SOCKET_SHARE",
    "Fetched",
    "Pace",
    "PartRecord",
    "PartSliced",
    "RangeAction",
    "Received",
    "StreamSlow",
    "decide",
    "fetch",
    "finish_part",
    "hash_file",
    "parse_content_range",
    "resume_headers",
    "thread_busy",
]

logger = logging.getLogger(__name__)
T = TypeVar("T")

_CONTENT_RANGE = re.compile(r"bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)")


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


class StreamSlow(Exception):
    """A stream ran below its share and stopped: the ``.part`` holds its first ``held``
    bytes, in order, and ``md5`` is their digest so far."""

    def __init__(self, held: int, md5: hashlib._Hash) -> None:
        super().__init__(f"stream slow after {held} bytes")
        self.held = held
        self.md5 = md5


class PartSliced(Exception):
    """The ``.part`` is a split file's (its slice record is beside it): resume its slices."""


class Pace:
    """Watches one stream's rate: :meth:`slow` says when the rest of its file is worth
    splitting over more connections.

    The rate is measured over windows of at least ``probe`` seconds, from the first
    batch written (the request's own latency is not the stream's pace). A stream
    below ``below`` bytes a second, with more left than one more window would bring,
    is slow; one window is enough, so a throttled file gains its connections early.
    A stream is never split while ``idle()`` says the host has no connection to
    spare: the other files' streams already fill its cap, and slices would only
    queue behind them.

    Nor is a stream split that this machine holds back: more connections only help
    when the event loop spent most of the window waiting for the socket. ``busy()``
    is the loop thread's time on a CPU or waiting for one (a loaded machine), and
    :meth:`waited` adds the time the stream waited for its own writes and hashes;
    a window in which these leave less than ``SOCKET_SHARE`` of it to the socket
    is the CPU's pace, not the link's.
    """

    def __init__(
        self,
        *,
        below: int,
        probe: float,
        size: int,
        idle: Callable[[], int] = lambda: 1,
        busy: Callable[[], float] | None = None,
    ) -> None:
        self.below = below
        self.probe = probe
        self.size = size
        self.idle = idle
        self.busy = busy or thread_busy
        self.tripped = False
        self._since: float | None = None
        self._at = 0
        self._busy_at = 0.0
        self._waited = 0.0

    def waited(self, seconds: float) -> None:
        """The stream waited ``seconds`` for its own writes and hashes."""
        self._waited += seconds

    def slow(self, position: int, now: float) -> bool:
        if self._since is None:
            self._since, self._at = now, position
            self._busy_at, self._waited = self.busy(), 0.0
            return False
        elapsed = now - self._since
        if elapsed < self.probe:
            return False
        rate = (position - self._at) / elapsed
        busy = self.busy()
        socket = elapsed - (busy - self._busy_at) - self._waited
        self._since, self._at = now, position
        self._busy_at, self._waited = busy, 0.0
        self.tripped = (
            rate < self.below
            and self.size - position > rate * self.probe
            and socket >= SOCKET_SHARE * elapsed
            and self.idle() > 0
        )
        return self.tripped


#: The least share of a window a slow stream's loop spends waiting for the socket
#: before the stream is split: below it, the CPU is the limit, and more connections
#: would only share the same cores.
SOCKET_SHARE = 0.5


def thread_busy() -> float:
    """Seconds the calling thread has run on a CPU or waited in a run queue for one.

    Linux reports both in ``/proc/thread-self/schedstat``; elsewhere only the time
    on a CPU is known.
    """
    try:
        with open("/proc/thread-self/schedstat", "rb") as f:
            on_cpu, queued, _ = f.read().split()
        return (int(on_cpu) + int(queued)) / 1e9
    except (OSError, ValueError):
        return time.thread_time()


#: An extra check run on the complete ``.part`` before the rename (EGA ``/results``).
Verifier = Callable[[FileTask, "Received"], Awaitable[None]]


class RangeAction(enum.Enum):
    APPEND = "append"  # 206 from our offset: keep what we have
    RESTART = "restart"  # 200: the server sends everything; start from zero
    COMPLETE = "complete"  # 416 and we already hold the whole file
    CHANGED = "changed"  # the server's file is not the one we started


def resume_headers(offset: int, validator: str | None) -> dict[str, str]:
    """Request headers for a download that already holds ``offset`` bytes."""
    if offset <= 0:
        return {}
    headers = {"Range": f"bytes={offset}-"}
    if validator:
        headers["If-Range"] = validator
    return headers


def parse_content_range(value: str | None) -> tuple[int | None, int | None, int | None]:
    """``(first, last, total)`` of a ``Content-Range`` header; ``None`` where absent."""
    if not value:
        return None, None, None
    m = _CONTENT_RANGE.fullmatch(value.strip())
    if not m:
        return None, None, None
    first = int(m[1]) if m[1] is not None else None
    last = int(m[2]) if m[2] is not None else None
    total = int(m[3]) if m[3] != "*" else None
    return first, last, total


def decide(status: int, offset: int, content_range: str | None, size: int | None) -> RangeAction:
    """What to do with a response to a (possibly ranged) GET, given ``offset`` bytes held."""
    first, _last, total = parse_content_range(content_range)
    if status == 206:
        if first != offset or (size is not None and total is not None and total != size):
            return RangeAction.CHANGED
        return RangeAction.APPEND
    if status == 416:
        # "bytes */N": we asked past the end. Whole already, or the file shrank.
        if total is not None and total == offset and (size is None or size == offset):
            return RangeAction.COMPLETE
        return RangeAction.CHANGED
    return RangeAction.RESTART


def hash_file(path: Path, *, algorithm: str = "md5", limit: int | None = None) -> tuple[str, int]:
    """Digest and length of the first ``limit`` bytes of ``path`` (blocking: call in a thread)."""
    return LocalDestination(path.parent).hash(path, algorithm, limit=limit)


class _Sink:
    """The ``.part`` file and its running digests, written in a thread."""

    def __init__(self, dest: Destination, path: Path, *, sha1: bool) -> None:
        self.dest = dest
        self.path = path
        self.md5 = hashlib.md5()
        self.sha1 = hashlib.sha1() if sha1 else None
        self.size = 0
        #: Where the bytes of this attempt begin (what was already on disk).
        self.started_at = 0
        self._file: PartFile | None = None

    @property
    def is_open(self) -> bool:
        return self._file is not None

    def open(self, sliced: bool = False) -> int:
        """Open the ``.part`` (or start it): bytes it holds.

        The bytes are not hashed yet: the caller first decides whether to trust them
        (:meth:`hash_held`) or start again (:meth:`restart`). With ``sliced``, a
        ``.part`` that has a slice record beside it is left alone: -1.
        """
        if sliced and self.dest.exists(self.path.with_name(self.path.name + SLICES_SUFFIX)):
            return -1
        self._file = self.dest.open_part(self.path)
        return self._file.size()

    def hash_held(self) -> int:
        """Hash what the ``.part`` holds and continue after it: bytes held."""
        assert self._file is not None
        for chunk in self._file.chunks():
            self._update(chunk)
        self.started_at = self.size
        return self.size

    def restart(self) -> None:
        if self._file is None:
            self._file = self.dest.open_part(self.path)
        self._file.restart()
        self.md5 = hashlib.md5()
        self.sha1 = hashlib.sha1() if self.sha1 is not None else None
        self.size = 0
        self.started_at = 0

    def write(self, chunks: list[bytes]) -> None:
        """Write and hash ``chunks`` (one trip to a thread for a short file)."""
        self.append(chunks)
        self.digest(chunks)

    def append(self, chunks: list[bytes]) -> None:
        assert self._file is not None
        self._file.append(chunks)

    def digest(self, chunks: list[bytes]) -> None:
        for data in chunks:
            self._update(data)

    def _update(self, data: bytes | bytearray) -> None:
        self.md5.update(data)
        if self.sha1 is not None:
            self.sha1.update(data)
        self.size += len(data)

    def finish(self, chunks: list[bytes], *, hash: bool = True) -> None:
        """Write (and unless the stream's hash thread does it, hash) the last ``chunks``,
        and close: one trip to a thread for a small file."""
        try:
            if hash:
                self.write(chunks)
            else:
                self.append(chunks)
        finally:
            self.close()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


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
    sink = _Sink(dest, dest.part(final), sha1=task.verify == "sha1")
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
            await _to_the_end(asyncio.to_thread(sink.close))


async def _receive(
    task: FileTask,
    http: Http,
    validators: Validators,
    sink: _Sink,
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
        length = _content_length(resp.headers.get("Content-Length"))
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
    sink: _Sink,
    progress: Callable[[int], None],
    transfer: TransferTuning,
    recorded: Awaitable[None] | None = None,
    pace: Pace | None = None,
    offset: int = 0,
) -> int:
    """Copy ``chunks`` into ``sink`` while the next batch arrives.

    Chunks are handed over as a list, not joined: joining would copy every byte once
    more on the event loop's thread. Each batch is written in a pool thread and
    hashed from memory on a thread of its own (:class:`_Digests`), so the MD5, the
    slowest step on most machines, never waits for a write nor shares a core with
    the loop. A body that fits one batch takes a single trip (write, then hash).
    Nothing is written before ``recorded`` is done. Stops early, after a whole
    batch, once ``pace`` finds the stream slow.
    """
    loop = asyncio.get_running_loop()
    pending: asyncio.Future[None] | None = None
    digests = _Digests(sink)
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
        await _to_the_end(_drain(sink, pending, recorded, batch, digests))
    return received + size


#: Batches a stream's hash may lag behind its writes before the stream waits for it.
_HASH_AHEAD = 2


class _Digests:
    """A stream's digests, updated from its batches in order on a thread of its own.

    The thread is started with the stream's second batch: a short file's one batch
    is written and hashed in a single trip instead.
    """

    def __init__(self, sink: _Sink) -> None:
        self._sink = sink
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._pending: collections.deque[asyncio.Future[None]] = collections.deque()

    @property
    def started(self) -> bool:
        return self._pool is not None

    async def room(self) -> None:
        """Wait until the hash is at most ``_HASH_AHEAD`` batches behind."""
        while len(self._pending) >= _HASH_AHEAD:
            await self._pending.popleft()

    def add(self, batch: list[bytes]) -> None:
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="digest")
        self._pending.append(asyncio.wrap_future(self._pool.submit(self._sink.digest, batch)))

    async def wait(self) -> None:
        """Every batch added is hashed (then the thread ends)."""
        try:
            while self._pending:
                await self._pending.popleft()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=False)


async def _drain(
    sink: _Sink,
    pending: Awaitable[None] | None,
    recorded: Awaitable[None] | None,
    batch: list[bytes],
    digests: _Digests,
) -> None:
    """Finish the write under way, the record of the ``.part``, the last batch and
    the hash of every batch, and close the ``.part``: nothing more is written to it."""
    try:
        if pending is not None:
            await pending
        if recorded is not None:
            await recorded
        if batch:
            loop = asyncio.get_running_loop()
            if digests.started:
                digests.add(batch)
                await loop.run_in_executor(None, functools.partial(sink.finish, batch, hash=False))
            else:
                await loop.run_in_executor(None, sink.finish, batch)
    finally:
        await digests.wait()


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
    if task.checksum and task.verify in ("md5", "sha1"):
        digest = got.md5 if task.verify == "md5" else (got.sha1 or "")
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
    await _to_the_end(land())
    return fetched


async def acquire_in_thread(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in a thread, for calls that acquire something (open a file).

    If we are cancelled while the thread runs, the thread still completes: wait
    for it before re-raising, so the caller's cleanup sees what was acquired.
    """
    return await _to_the_end(asyncio.to_thread(fn, *args))


async def _to_the_end(job: Awaitable[T]) -> T:
    """Run ``job`` to its end even if we are cancelled meanwhile, however many times,
    then raise the cancellation (and its own error first, if it failed).

    ``shield`` alone is not enough: a second cancellation while the first is handled
    would cancel whatever the handler awaits next.
    """
    future = asyncio.ensure_future(job)
    cancelled = False
    while True:
        try:
            result = await asyncio.shield(future)
        except asyncio.CancelledError:
            if future.done():
                raise
            cancelled = True
            continue
        if cancelled:
            raise asyncio.CancelledError
        return result


def _content_length(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
