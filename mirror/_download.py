"""One file task, start to end: attempts, backoff, the right fetcher, the source's hooks."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

from ._dest import SLICES_SUFFIX, Destination
from ._exceptions import (
    ChecksumMismatch,
    DestinationError,
    Fatal,
    HostDown,
    MirrorError,
    RateLimited,
    Retryable,
    TransferError,
)
from ._fetch import Fetched, PartSliced, fetch, finish_part
from ._http import Http, host_key, redact_url
from ._meter import RateMeter
from ._models import Event, FileFailed, FileStarted, FileTask, FileVerified
from ._pace import Pace, StreamSlow
from ._retry import Retry, Retrying, RetryPolicy
from ._seam import FileHooks, Landing, OwnTransfer
from ._segments import RangesUnsupported, fetch_segmented
from ._state import Store
from ._tuning import TransferTuning

__all__ = ["Downloader", "Stats"]

logger = logging.getLogger(__name__)

#: The smallest batch a split file's connection writes in one trip to a thread.
_SPLIT_BATCH = 256 << 10

#: Write errors that every other file would hit too: they stop the run.
FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
READ_ONLY = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})


class Stats:
    """Live counters for progress events; the store stays the source of truth."""

    def __init__(self) -> None:
        self.planned = 0
        self.planned_bytes = 0
        self.unsized = 0
        self.verified = 0
        self.failed = 0
        self.skipped = 0
        self.done_bytes = 0
        self.received = 0
        self.planning = True
        #: Per file being fetched: [bytes of it on disk or received in this attempt, size].
        self.active: dict[str, list[int | None]] = {}
        #: Files sleeping before a retry: (monotonic time the sleep ends, why).
        self.waiting: dict[str, tuple[float, str]] = {}
        self.meter = RateMeter()
        #: Sizes of the files that failed for good: bytes no one will wait for.
        self.failed_bytes = 0
        self._planned_seen = (0, time.monotonic())
        #: Hosts given up on: their outage ("host: connection refused for 90 s") and
        #: how many files failed with it.
        self.hosts_down: dict[str, tuple[str, int]] = {}

    def rate(self) -> float | None:
        """Smoothed network rate; None until bytes have flowed long enough to say."""
        return self.meter.sample(self.received)

    def planning_idle(self) -> float:
        """Seconds since planning last added a file (0 once it is over)."""
        now = time.monotonic()
        if self.planned != self._planned_seen[0]:
            self._planned_seen = (self.planned, now)
        return now - self._planned_seen[1] if self.planning else 0.0


class Downloader:
    """Fetches tasks into the destination and records each outcome in the store."""

    def __init__(
        self,
        *,
        dest: Destination,
        http: Http,
        store: Store,
        retry: RetryPolicy,
        stats: Stats,
        emit: Callable[[Event], None],
        transfer: TransferTuning | None = None,
        rng: random.Random | None = None,
        recorded: Callable[[str], None] | None = None,
    ) -> None:
        self.dest = dest
        #: Told the key of each file whose result (verified or failed) this process
        #: has written to the store; its download may still be finishing (events, hooks).
        self._recorded = recorded
        #: Segmenting, slice and flush sizes, checksum attempts.
        self.transfer = transfer or TransferTuning()
        self.http = http
        self.store = store
        self.retry = retry
        self.stats = stats
        self.emit = emit
        #: The backoff's jitter (a seeded one makes the delays repeatable).
        self._rng = rng or random.Random()
        #: Hosts that answered a ranged request with 200: one stream from then on.
        self._no_ranges: set[str] = set()

    async def fail(
        self,
        task: FileTask,
        reason: str,
        hooks: FileHooks | None = None,
        *,
        fence: int | None = None,
        down: HostDown | None = None,
    ) -> None:
        """Record ``task`` as failed. ``down``: its host was given up on, and the run
        reports all of that host's files in one line instead of one line each.
        ``fence``: the claim this process holds the file under (None: never claimed)."""
        # An empty .part is no progress to keep, only litter (in a shared cache, too).
        await asyncio.to_thread(_drop_empty_part, self.dest, task)
        if not await self.store.fail(task.key, fence, reason):
            # Another process took the file over meanwhile: its result stands.
            logger.info("%s: failed here (%s), but another process holds it now", task.path, reason)
            return
        if self._recorded is not None:
            self._recorded(task.key)
        self.stats.failed += 1
        self.stats.failed_bytes += task.size or 0
        if down is not None:
            _, count = self.stats.hosts_down.get(down.host, ("", 0))
            self.stats.hosts_down[down.host] = (down.outage, count + 1)
            logger.info("%s: failed: %s", task.path, reason)
        else:
            logger.warning("%s: failed: %s", task.path, reason)
        self.emit(FileFailed(path=task.path, reason=reason, final=True, grouped=down is not None))
        if hooks is not None:
            await hooks.settled(task, False)

    async def download(
        self, task: FileTask, hooks: FileHooks | None = None, *, fence: int | None = None
    ) -> None:
        """Fetch, verify and land ``task``, held under claim ``fence``."""
        try:
            final = self.dest.final(task.path, task.root)
        except MirrorError as exc:
            await self.fail(task, str(exc), hooks, fence=fence)
            return
        entry: list[int | None] = [0, task.size]
        self.stats.active[task.path] = entry
        try:
            got = await self._attempts(task, final, entry, hooks, fence)
        finally:
            self.stats.active.pop(task.path, None)
        if got is None:
            return
        self.stats.verified += 1
        self.stats.done_bytes += got.size
        logger.info("%s: verified (%s, %d bytes)", task.path, got.verified_by, got.size)
        self.emit(
            FileVerified(path=task.path, bytes=got.size, md5=got.md5, verified_by=got.verified_by)
        )
        if hooks is not None:
            await hooks.settled(task, True)

    async def _attempts(
        self,
        task: FileTask,
        final: Path,
        entry: list[int | None],
        hooks: FileHooks | None,
        fence: int | None,
    ) -> Fetched | None:
        current = task

        def worth(exc: MirrorError) -> bool:
            if isinstance(exc, Retryable):
                return True
            # A source may know better for its own files (EGA: a ticket gone is worth
            # a new ticket).
            return isinstance(exc, TransferError) and hooks is not None and hooks.recoverable(exc)

        def on_retry(retry: Retry) -> None:
            self.emit(FileFailed(path=task.path, reason=str(retry.error), final=False))
            if retry.counted:
                # The display's clock, not the one the wait runs on.
                why = _why(current, retry.error)
                self.stats.waiting[task.path] = (time.monotonic() + retry.delay, why)

        loop = Retrying(
            task.path,
            self.retry,
            sleep=self.http.clock.sleep,
            rng=self._rng,
            worth=worth,
            # The host is paused: the next request waits for its probe. This one does
            # not count against the file's own budget.
            uncounted=self.http.waits_for_host,
            caps={ChecksumMismatch: self.transfer.checksum_attempts},
            on_retry=on_retry,
        )
        try:
            async for attempt in loop:
                self.stats.waiting.pop(task.path, None)
                with attempt:
                    current = task
                    if hooks is not None:
                        current = await hooks.prepare(task, attempt.previous)
                    return await self._once(current, final, entry, hooks, fence)
        except HostDown as exc:
            await self.fail(task, str(exc), hooks, fence=fence, down=exc)
        except Fatal:
            raise
        except MirrorError as exc:
            await self.fail(task, str(exc), hooks, fence=fence)
        except OSError as exc:
            if exc.errno in FULL or exc.errno in READ_ONLY:
                raise await asyncio.to_thread(
                    _destination_error, self.dest, exc, task, final
                ) from None
            await self.fail(
                task, f"cannot write {final}: {exc.strerror or exc}", hooks, fence=fence
            )
        finally:
            self.stats.waiting.pop(task.path, None)
        return None

    async def _once(
        self,
        task: FileTask,
        final: Path,
        entry: list[int | None],
        hooks: FileHooks | None,
        fence: int | None,
    ) -> Fetched:
        def progress(n: int) -> None:
            entry[0] = (entry[0] or 0) + n
            self.stats.received += n

        def started(offset: int) -> None:
            # Each attempt restates where the file stands: bytes of an attempt that
            # were dropped (a restart, an unsaved slice) are not counted twice.
            entry[0] = offset
            self.emit(
                FileStarted(path=task.path, url=redact_url(task.url), size=task.size, offset=offset)
            )

        async def commit(got: Fetched) -> None:
            # Only after the rename: a verified row always names a complete file.
            if not await self.store.complete(
                task.key, fence, md5=got.md5, size=got.size, verified_by=got.verified_by
            ):
                # Its lease ran out while it was landing (this process stalled): the
                # bytes are verified, but the file's row is the new holder's to write.
                logger.warning("%s: landed after another process took it over", task.path)
            elif self._recorded is not None:
                self._recorded(task.key)

        verifier = hooks.verify if hooks is not None else None
        if isinstance(hooks, OwnTransfer):
            # Not HTTP: the source fills the .part; checks, landing and store as always.
            landing = Landing(
                dest=self.dest,
                part=self.dest.part(final),
                final=final,
                records=self.store,
                started=started,
                progress=progress,
            )
            got, received = await hooks.receive(task, landing)
            return await finish_part(task, final, got, received, verifier, commit, self.dest)
        gate = self.http.gate(task.url)
        parallel = hooks is None or hooks.parallel_ranges
        # A split file may use the host's connections, up to split_connections.
        most = min(self.transfer.split_connections, gate.connections)
        sidecar = self.dest.part(final)
        sidecar = sidecar.with_name(sidecar.name + SLICES_SUFFIX)
        headers = None
        if hooks is not None:

            async def headers() -> Mapping[str, str]:
                return await hooks.headers(task)

        # A sliced file's connections share one stream's batch: the memory held in
        # batches stays what one stream holds, however many files are sliced at once.
        shared = dataclasses.replace(
            self.transfer, flush_bytes=max(_SPLIT_BATCH, self.transfer.flush_bytes // most)
        )

        async def sliced(connections: int, slice_size: int, ahead: StreamSlow | None) -> Fetched:
            return await fetch_segmented(
                task,
                final,
                self.http,
                progress=progress,
                started=started,
                headers=headers,
                verifier=verifier,
                commit=commit,
                slice_size=_slice_size(slice_size, hooks),
                connections=connections,
                dest=self.dest,
                transfer=shared,
                ahead=ahead,
                most=most,
            )

        splittable = parallel and self._splittable(task, gate.key)
        try:
            if splittable and task.size is not None and task.size >= self.transfer.segment_min:
                return await sliced(
                    min(self.transfer.segment_connections, gate.connections),
                    self.transfer.slice,
                    None,
                )
            pace = None
            if splittable and task.size is not None:
                # With one connection to the host a stream never splits, but a .part
                # split by an earlier run (with more) still resumes its slices.
                pace = Pace(
                    below=self.transfer.split_below if most > 1 else 0,
                    probe=self.transfer.split_probe,
                    size=task.size,
                    idle=lambda: gate.idle,
                )
            try:
                return await self._stream(task, final, hooks, progress, started, commit, pace)
            except PartSliced:
                # Split by an earlier attempt or run: its slices resume.
                return await sliced(most, self.transfer.slice, None)
            except StreamSlow as slow:
                assert task.size is not None
                left = task.size - slow.held
                logger.info(
                    "%s: one stream ran below %.1f MB/s; the last %d bytes in slices",
                    task.path,
                    self.transfer.split_below / 1e6,
                    left,
                )
                # From here the slice record, not the stream's, says what the .part holds.
                await self.store.set_validator(task.key, None)
                # The connections idle now (the stream's own among them); more join
                # later, up to most, while each stays slow and other files free theirs.
                now = min(most, max(2, gate.idle))
                size = max(1, min(self.transfer.split_slice, -(-left // now)))
                return await sliced(now, size, slow)
        except RangesUnsupported:
            self._no_ranges.add(gate.key)
            logger.info("%s does not serve ranges: one stream per file", gate.key)
            # The .part has holes: nothing of it can be continued by one stream.
            await asyncio.to_thread(self.dest.drop, sidecar)
            await self.store.set_validator(task.key, None)
        return await self._stream(task, final, hooks, progress, started, commit, None)

    async def _stream(
        self,
        task: FileTask,
        final: Path,
        hooks: FileHooks | None,
        progress: Callable[[int], None],
        started: Callable[[int], None],
        commit: Callable[[Fetched], Awaitable[None]],
        pace: Pace | None,
    ) -> Fetched:
        verifier = hooks.verify if hooks is not None else None
        if hooks is not None:
            task = _with_headers(task, await hooks.headers(task))
        return await fetch(
            task,
            final,
            self.http,
            self.store,
            progress=progress,
            started=started,
            verifier=verifier,
            commit=commit,
            dest=self.dest,
            transfer=self.transfer,
            pace=pace,
        )

    def _splittable(self, task: FileTask, host: str) -> bool:
        return (
            task.size is not None
            and task.verify != "sha1"  # the in-order hasher computes MD5 only
            and host not in self._no_ranges
        )


def _slice_size(wanted: int, hooks: FileHooks | None) -> int:
    """The tuning's slice, cut to what the archive serves in one request."""
    if hooks is not None and hooks.max_range is not None:
        return min(wanted, hooks.max_range)
    return wanted


def _destination_error(
    dest: Destination, exc: OSError, task: FileTask, final: Path
) -> DestinationError:
    """One line for the user: which path, why, and how much room the file still needs."""
    where = Path(exc.filename) if isinstance(exc.filename, str) else dest.part(final)
    if exc.errno in READ_ONLY:
        return DestinationError(
            f"cannot write {where}: {exc.strerror or exc}; the destination must be writable. "
            "Stopped; re-run to resume once it is",
            path=str(where),
            hint="the destination must be writable",
        )
    needed = None
    if task.size is not None:
        needed = task.size - (dest.size(dest.part(final)) or 0)
    room = dest.free(final.parent)
    free = f"{_megabytes(room)} free" if room is not None else "free space unknown"
    need = f"{task.path} needs {_megabytes(needed)} more" if needed is not None else ""
    return DestinationError(
        f"cannot write {where}: {exc.strerror or exc} ({need + ', ' if need else ''}{free}). "
        "Stopped; free some space and re-run to resume",
        path=str(where),
        needed=needed,
    )


def _megabytes(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


def _why(task: FileTask, exc: MirrorError) -> str:
    """What a file's retry waits for, for the progress display."""
    host = host_key(task.url)
    if isinstance(exc, RateLimited):
        told = f", Retry-After {exc.retry_after:.0f} s" if exc.retry_after else ""
        return f"waiting for {host}: rate limit ({exc.status}{told})"
    return f"waiting for {host}: {exc}"


def _drop_empty_part(dest: Destination, task: FileTask) -> None:
    with contextlib.suppress(OSError, MirrorError):
        dest.drop_empty(dest.part(dest.final(task.path, task.root)))


def _with_headers(task: FileTask, extra: Mapping[str, str]) -> FileTask:
    if not extra:
        return task
    merged = dict(task.headers)
    merged.update(extra)
    return dataclasses.replace(task, headers=tuple(merged.items()))
