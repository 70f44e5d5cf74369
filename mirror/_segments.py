"""Large files over several connections: Range slices written in place, hashed in order.

Why: one TCP stream rarely fills a long fat pipe, and EGA serves its Data API in
byte-range slices (pyega3 uses 100 MiB). aria2c's ``-x8 -s8`` is the usual answer;
this is ours, with two differences that matter to an overnight pull:

* **Byte-level resume inside a slice.** Each slice's progress is kept in a sidecar
  (``NAME.part.slices``), written after the bytes it describes, so a killed run
  resumes every slice where it stopped. (pyega3 restarts a slice from zero.)
* **MD5 over the file in order, overlapped with the download.** A hasher follows the
  contiguous prefix (the "frontier") as slices fill in, on a thread of its own. The
  slice writing at the frontier hands its batches over from memory as they land; only
  bytes that landed ahead of the frontier are read back (from the page cache) once it
  reaches them. When the last byte lands, little is left to hash.

A server that answers a ranged request with 200 does not do ranges: we raise
:class:`RangesUnsupported` and the caller falls back to one stream.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ._dest import SLICES_SUFFIX, Destination, LocalDestination, SizedPart
from ._exceptions import IncompleteDownload, RemoteFileChanged, TransferError
from ._fetch import Fetched, Received, Verifier, finish_part
from ._http import Http, redact_url
from ._models import FileTask
from ._pace import SOCKET_SHARE, StreamSlow, thread_busy
from ._ranges import parse_content_range
from ._sink import HashThread
from ._tasks import acquire_in_thread, to_the_end
from ._tuning import TransferTuning

__all__ = ["RangesUnsupported", "fetch_segmented", "plan_slices"]

logger = logging.getLogger(__name__)

_READ = 4 << 20


class RangesUnsupported(TransferError):
    """The server answered a ranged request with the whole file."""


def plan_slices(size: int, slice_size: int) -> list[tuple[int, int]]:
    """``(start, end)`` half-open byte ranges of at most ``slice_size`` covering ``size``."""
    if size <= 0:
        return []
    return [(start, min(start + slice_size, size)) for start in range(0, size, slice_size)]


@dataclass
class _State:
    """Progress of one segmented download, mirrored in the ``.slices`` sidecar."""

    size: int
    slice_size: int
    #: The archive's checksum the ``.part`` was started for: slices of a file that
    #: has changed since (same size, new MD5) are never joined with the new one's.
    checksum: str | None
    done: list[int]

    @classmethod
    def load(
        cls,
        dest: Destination,
        path: Path,
        size: int,
        slice_size: int,
        checksum: str | None,
    ) -> _State | None:
        """The record at ``path`` if it is for this file, in slices of at most
        ``slice_size`` (a split stream's slices are smaller than a sliced file's)."""
        try:
            doc = json.loads(dest.read_bytes(path))
            kept = doc["slice"]
            if (
                doc["size"] == size
                and isinstance(kept, int)
                and 1 <= kept <= slice_size
                and doc["checksum"] == checksum
            ):
                done = [int(x) for x in doc["done"]]
                slices = plan_slices(size, kept)
                if len(done) == len(slices) and all(
                    0 <= d <= end - start for d, (start, end) in zip(done, slices, strict=True)
                ):
                    return cls(size, kept, checksum, done)
        except (OSError, ValueError, KeyError, TypeError):
            pass
        return None

    @classmethod
    def after(cls, size: int, slice_size: int, checksum: str | None, held: int) -> _State:
        """A file whose first ``held`` bytes are in place, the rest in slices."""
        done = [max(0, min(held, end) - start) for start, end in plan_slices(size, slice_size)]
        return cls(size, slice_size, checksum, done)

    def save(self, dest: Destination, path: Path) -> None:
        doc = {
            "size": self.size,
            "slice": self.slice_size,
            "checksum": self.checksum,
            "done": self.done,
        }
        # One writer per .part (its claim): a fixed temporary name, within NAME_MAX.
        dest.write_atomic(path, json.dumps(doc).encode(), tmp=path.with_name(path.name + ".tmp"))


async def fetch_segmented(
    task: FileTask,
    final: Path,
    http: Http,
    *,
    connections: int,
    slice_size: int,
    progress: Callable[[int], None] = lambda n: None,
    started: Callable[[int], None] = lambda offset: None,
    headers: Callable[[], Awaitable[Mapping[str, str]]] | None = None,
    verifier: Verifier | None = None,
    commit: Callable[[Fetched], Awaitable[None]] | None = None,
    dest: Destination | None = None,
    transfer: TransferTuning | None = None,
    ahead: StreamSlow | None = None,
    most: int | None = None,
) -> Fetched:
    """Download ``task`` (whose ``size`` must be known) in parallel Range slices.

    ``ahead``: a stream that found itself slow left its first bytes in the ``.part``
    (and their MD5 so far): only the rest is sliced, and hashed on from there. A
    slice record from an earlier run wins over it.

    ``most``: connections may grow from ``connections`` to this many while each runs
    below ``transfer.split_below`` bytes a second (a server that caps every
    connection).

    Each slice writes ``transfer.flush_bytes`` at a time (one thread hop, one
    ``pwritev``) and records its progress in the sidecar every ``save_every`` bytes
    or ``flush_seconds`` seconds.

    ``progress`` hears each piece of body as it arrives; ``started`` how many bytes
    the slices already hold when the transfer (re)starts.
    """
    if task.size is None:
        raise ValueError("a segmented download needs the file's size")
    size = task.size
    transfer = transfer or TransferTuning()
    flush_bytes, flush_seconds = transfer.flush_bytes, transfer.flush_seconds
    dest = dest or LocalDestination(final.parent)
    part = dest.part(final)
    sidecar = part.with_name(part.name + SLICES_SUFFIX)
    checksum = task.checksum.lower() if task.checksum else None
    loaded = await asyncio.to_thread(_State.load, dest, sidecar, size, slice_size, checksum)
    md5 = hashlib.md5()
    hashed_from = 0
    if loaded is not None:
        state = loaded
    elif ahead is not None:
        state = _State.after(size, slice_size, checksum, ahead.held)
        md5, hashed_from = ahead.md5.copy(), ahead.held
    else:
        state = _State(size, slice_size, checksum, [0] * len(plan_slices(size, slice_size)))
    slices = plan_slices(size, state.slice_size)
    if any(state.done) and not await asyncio.to_thread(dest.exists, part):
        state.done = [0] * len(slices)  # the sidecar outlived its .part
        md5, hashed_from = hashlib.md5(), 0
    fresh = not any(state.done)
    if loaded is None or fresh:
        # Written before the first slice byte: the .part never outlives what it is for.
        await asyncio.to_thread(state.save, dest, sidecar)
    held = await acquire_in_thread(dest.open_sized, part, size, fresh)
    started(sum(state.done))
    loop = asyncio.get_running_loop()
    digests = _InOrder(md5, held, hashed_from)
    frontier_moved = asyncio.Event()
    received = 0
    arrived = 0
    first_byte = asyncio.Event()
    save_lock = asyncio.Lock()

    def heard(n: int) -> None:
        nonlocal arrived
        arrived += n
        first_byte.set()
        progress(n)

    def contiguous() -> int:
        for (start, end), done in zip(slices, state.done, strict=True):
            if start + done < end:
                return start + done
        return size

    async def save() -> None:
        async with save_lock:
            await asyncio.to_thread(state.save, dest, sidecar)

    async def get_slice(index: int) -> None:
        nonlocal received
        start, end = slices[index]
        offset = start + state.done[index]
        if offset >= end:
            return
        request_headers = dict(task.headers)
        if headers is not None:
            request_headers.update(await headers())
        request_headers["Range"] = f"bytes={offset}-{end - 1}"
        async with http.request(
            "GET", task.url, headers=request_headers, expect=(200, 206)
        ) as resp:
            if resp.status == 200:
                raise RangesUnsupported(
                    f"{redact_url(task.url)}: the server ignored Range", url=task.url
                )
            first, _, total = parse_content_range(resp.headers.get("Content-Range"))
            if first != offset or (total is not None and total != size):
                raise RemoteFileChanged(
                    f"{redact_url(task.url)}: asked for bytes {offset}-{end - 1} of {size}, got "
                    f"Content-Range {resp.headers.get('Content-Range')!r}",
                    url=task.url,
                )
            position = offset
            saved = offset
            batch: list[bytes | memoryview] = []
            size_ = 0
            due = loop.time() + flush_seconds
            async for chunk in resp.chunks():
                room = end - position - size_
                piece: bytes | memoryview = (
                    chunk if len(chunk) <= room else memoryview(chunk)[:room]
                )
                batch.append(piece)
                size_ += len(piece)
                heard(len(piece))
                now = loop.time()
                if size_ >= flush_bytes or position + size_ >= end or now >= due:
                    await loop.run_in_executor(None, held.write_at, batch, position)
                    await digests.offer(batch, position, size_)
                    position += size_
                    state.done[index] = position - start
                    received += size_
                    batch, size_ = [], 0
                    frontier_moved.set()
                    # The sidecar is written after the bytes it describes, every
                    # save_every bytes or flush_seconds, whichever comes first: a
                    # kill loses at most the last half second of a slice.
                    if position - saved >= transfer.save_every or position >= end or now >= due:
                        await save()
                        saved = position
                    due = loop.time() + flush_seconds
                    if position >= end:
                        break
            if batch:
                await loop.run_in_executor(None, held.write_at, batch, position)
                await digests.offer(batch, position, size_)
                position += size_
                state.done[index] = position - start
                received += size_
                frontier_moved.set()
                await save()
        if position < end:
            raise IncompleteDownload(
                f"{redact_url(task.url)}: slice {offset}-{end - 1} ended at {position}",
                url=task.url,
            )

    async def hasher() -> None:
        # Bytes that landed ahead of the frontier are read back once it reaches them.
        while digests.queued < size:
            target = contiguous()
            if target > digests.queued:
                await digests.read_back(target)
                continue
            frontier_moved.clear()
            if contiguous() == digests.queued:
                await frontier_moved.wait()
        await digests.wait()

    todo = [i for i, (start, end) in enumerate(slices) if start + state.done[i] < end]
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in todo:
        queue.put_nowait(index)

    async def connection() -> None:
        while not queue.empty():
            await get_slice(queue.get_nowait())

    running = max(1, min(connections, len(todo)))

    async def grow(downloads: asyncio.TaskGroup) -> None:
        """More connections while each runs below ``split_below``, up to ``most``,
        and the loop waits for the sockets (not the CPU) most of the time."""
        nonlocal running
        assert most is not None
        await first_byte.wait()
        since, at, busy_at = loop.time(), arrived, thread_busy()
        while running < most:
            await asyncio.sleep(transfer.split_probe)
            now, busy = loop.time(), thread_busy()
            rate = (arrived - at) / (now - since) / running
            socket = (now - since) - (busy - busy_at) - digests.take_waited()
            cpu_bound = socket < SOCKET_SHARE * (now - since)
            since, at, busy_at = now, arrived, busy
            if rate >= transfer.split_below or queue.empty() or cpu_bound:
                continue
            more = min(most - running, queue.qsize())
            logger.info(
                "%s: %d connections at %.1f MB/s each; %d more",
                task.path,
                running,
                rate / 1e6,
                more,
            )
            for _ in range(more):
                downloads.create_task(connection())
            running += more

    try:
        async with asyncio.TaskGroup() as tg:
            hash_task = tg.create_task(hasher())
            grower = None
            async with asyncio.TaskGroup() as downloads:
                for _ in range(running):
                    downloads.create_task(connection())
                if most is not None and most > running and len(todo) > running:
                    grower = tg.create_task(grow(downloads))
            if grower is not None:
                grower.cancel()
            await hash_task
    except BaseExceptionGroup as group:
        raise _first(group) from None
    finally:
        try:
            # The thread may be reading the .part: it finishes before the file closes.
            await to_the_end(digests.wait())
        finally:
            await asyncio.to_thread(held.close)
    got = Received(md5=md5.hexdigest(), size=size, path=part, offset=0)
    fetched = await finish_part(task, final, got, received, verifier, commit, dest)
    await asyncio.to_thread(dest.drop, sidecar)
    return fetched


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error to report from a failed group: ours first, then anything else."""
    leaves: list[BaseException] = []
    stack: list[BaseException] = [group]
    while stack:
        exc = stack.pop(0)
        if isinstance(exc, BaseExceptionGroup):
            stack[:0] = list(exc.exceptions)
        else:
            leaves.append(exc)
    for exc in leaves:
        if isinstance(exc, TransferError):
            return exc
    return leaves[0]


#: Batches the in-order hash may lag behind before a slice at the frontier waits for it.
_HASH_AHEAD = 4


class _InOrder(HashThread):
    """A file's MD5 in byte order, on a thread of its own: batches handed over from
    memory when they start where the hash stands (``queued``), ranges read back from
    the ``.part`` otherwise. Each piece is queued on the loop, so they hash in order."""

    def __init__(self, md5: hashlib._Hash, held: SizedPart, start: int) -> None:
        super().__init__(_HASH_AHEAD)
        self.md5 = md5
        self.held = held
        #: Bytes handed to the thread (hashed, or queued to be).
        self.queued = start

    def take_waited(self) -> float:
        """Seconds slices have waited for the hash since the last call."""
        waited, self.waited = self.waited, 0.0
        return waited

    async def offer(self, batch: list[bytes | memoryview], position: int, n: int) -> None:
        """``batch`` (``n`` bytes) just landed at ``position``: hashed from memory if
        the hash stands there."""
        if position != self.queued:
            return
        await self.room()
        if position == self.queued:
            self.submit(_hash_batch, self.md5, batch)
            self.queued += n

    async def read_back(self, end: int) -> None:
        """Queue the bytes from ``queued`` to ``end``, read from the ``.part``."""
        await self.room()
        start, self.queued = self.queued, max(self.queued, end)
        if end > start:
            self.submit(_hash_range, self.held, self.md5, start, end)


def _hash_batch(md5: hashlib._Hash, batch: list[bytes | memoryview]) -> None:
    for piece in batch:
        md5.update(piece)


def _hash_range(held: SizedPart, md5: hashlib._Hash, start: int, end: int) -> int:
    position = start
    while position < end:
        chunk = held.read_at(position, min(_READ, end - position))
        if not chunk:
            break
        md5.update(chunk)
        position += len(chunk)
    return position
