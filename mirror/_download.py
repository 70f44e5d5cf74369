"""One file task, start to end: attempts, backoff, the right fetcher, the source's hooks."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from ._exceptions import ChecksumMismatch, HostDown, MirrorError, TransferError
from ._fetch import Fetched, fetch
from ._http import Http, redact_url
from ._models import Event, FileFailed, FileStarted, FileTask, FileVerified
from ._paths import final_path, part_path
from ._retry import RetryPolicy, next_delay
from ._segments import RangesUnsupported, fetch_segmented
from ._state import Store
from .sources import FileHooks

__all__ = ["CHECKSUM_ATTEMPTS", "Downloader", "Stats"]

logger = logging.getLogger(__name__)

#: A file whose digest is wrong this many times in a row is not a transient fault.
CHECKSUM_ATTEMPTS = 3
#: Files at least this large go over several connections in Range slices.
SEGMENT_MIN = 512 << 20
#: Slice size: EGA's Data API serves at most 100 MiB a request (pyega3's default).
SLICE = 64 << 20
#: Connections per segmented file (bounded again by the host's ``connections``).
SEGMENT_CONNECTIONS = 4


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
        self.active: dict[str, list[int | None]] = {}
        #: Hosts given up on: their outage ("host: connection refused for 90 s") and
        #: how many files failed with it.
        self.hosts_down: dict[str, tuple[str, int]] = {}
        self._window: list[tuple[float, int]] = []

    def rate(self) -> float:
        now = time.monotonic()
        self._window.append((now, self.received))
        self._window = [(t, b) for t, b in self._window if t >= now - 5] or [(now, self.received)]
        t0, b0 = self._window[0]
        return (self.received - b0) / (now - t0) if now > t0 else 0.0


class Downloader:
    """Fetches tasks into ``dest`` and records each outcome in the store."""

    def __init__(
        self,
        *,
        dest: Path,
        http: Http,
        store: Store,
        retry: RetryPolicy,
        stats: Stats,
        emit: Callable[[Event], None],
    ) -> None:
        self.dest = dest
        self.http = http
        self.store = store
        self.retry = retry
        self.stats = stats
        self.emit = emit
        self._rng = random.Random()
        #: Hosts that answered a ranged request with 200: one stream from then on.
        self._no_ranges: set[str] = set()

    async def fail(
        self,
        task: FileTask,
        reason: str,
        hooks: FileHooks | None = None,
        *,
        down: HostDown | None = None,
    ) -> None:
        """Record ``task`` as failed. ``down``: its host was given up on, and the run
        reports all of that host's files in one line instead of one line each."""
        # An empty .part is no progress to keep, only litter (in a shared cache, too).
        await asyncio.to_thread(_drop_empty_part, self.dest, task)
        await self.store.mark_failed(task.key, reason)
        self.stats.failed += 1
        if down is not None:
            _, count = self.stats.hosts_down.get(down.host, ("", 0))
            self.stats.hosts_down[down.host] = (down.outage, count + 1)
            logger.info("%s: failed: %s", task.path, reason)
        else:
            logger.warning("%s: failed: %s", task.path, reason)
        self.emit(FileFailed(path=task.path, reason=reason, final=True, grouped=down is not None))
        if hooks is not None:
            await hooks.settled(task, False)

    async def download(self, task: FileTask, hooks: FileHooks | None = None) -> None:
        try:
            final = final_path(self.dest, task.path, task.root)
        except MirrorError as exc:
            await self.fail(task, str(exc), hooks)
            return
        entry: list[int | None] = [0, task.size]
        self.stats.active[task.path] = entry
        try:
            got = await self._attempts(task, final, entry, hooks)
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
        self, task: FileTask, final: Path, entry: list[int | None], hooks: FileHooks | None
    ) -> Fetched | None:
        attempt = mismatches = 0
        error: MirrorError | None = None
        while True:
            attempt += 1
            current = task
            try:
                if hooks is not None:
                    current = await hooks.prepare(task, error)
                self.emit(
                    FileStarted(
                        path=task.path, url=redact_url(current.url), size=task.size, offset=0
                    )
                )
                return await self._once(current, final, entry, hooks)
            except HostDown as exc:
                await self.fail(task, str(exc), hooks, down=exc)
                return None
            except TransferError as exc:
                error = exc
                if exc.retryable and self.http.waits_for_host(exc):
                    # The host is paused: the next request waits for its probe. This
                    # one does not count against the file's own budget.
                    attempt -= 1
                    self.emit(FileFailed(path=task.path, reason=str(exc), final=False))
                    continue
                if isinstance(exc, ChecksumMismatch):
                    mismatches += 1
                worth = exc.retryable or (hooks is not None and hooks.recoverable(exc))
                delay = None
                if worth and mismatches < CHECKSUM_ATTEMPTS:
                    delay = next_delay(
                        self.retry,
                        attempt,
                        rng=self._rng,
                        retry_after=getattr(exc, "retry_after", None),
                    )
                if delay is None:
                    await self.fail(task, str(exc), hooks)
                    return None
                logger.info("%s: %s; retry %d in %.1fs", task.path, exc, attempt, delay)
                self.emit(FileFailed(path=task.path, reason=str(exc), final=False))
                await asyncio.sleep(delay)
            except MirrorError as exc:
                await self.fail(task, str(exc), hooks)
                return None
            except OSError as exc:
                await self.fail(task, f"cannot write {final}: {exc.strerror or exc}", hooks)
                return None

    async def _once(
        self, task: FileTask, final: Path, entry: list[int | None], hooks: FileHooks | None
    ) -> Fetched:
        def progress(n: int) -> None:
            entry[0] = (entry[0] or 0) + n
            self.stats.received += n

        async def commit(got: Fetched) -> None:
            # Only after the rename: a verified row always names a complete file.
            await self.store.mark_verified(
                task.key, md5=got.md5, size=got.size, verified_by=got.verified_by
            )

        verifier = hooks.verify if hooks is not None else None
        gate = self.http.gate(task.url)
        parallel = hooks is None or getattr(hooks, "parallel_ranges", True)
        if parallel and self._segmented(task, gate.key):
            headers = None
            if hooks is not None:

                async def headers() -> Mapping[str, str]:
                    return await hooks.headers(task)

            try:
                return await fetch_segmented(
                    task,
                    final,
                    self.http,
                    progress=progress,
                    headers=headers,
                    verifier=verifier,
                    commit=commit,
                    slice_size=SLICE,
                    connections=min(SEGMENT_CONNECTIONS, gate.limit.connections),
                )
            except RangesUnsupported:
                self._no_ranges.add(gate.key)
                logger.info("%s does not serve ranges: one stream per file", gate.key)
                entry[0] = 0
        if hooks is not None:
            task = _with_headers(task, await hooks.headers(task))
        return await fetch(
            task, final, self.http, self.store, progress=progress, verifier=verifier, commit=commit
        )

    def _segmented(self, task: FileTask, host: str) -> bool:
        return (
            task.size is not None
            and task.size >= SEGMENT_MIN
            and task.verify != "sha1"  # the in-order hasher computes MD5 only
            and host not in self._no_ranges
        )


def _drop_empty_part(dest: Path, task: FileTask) -> None:
    try:
        part = part_path(final_path(dest, task.path, task.root))
        if part.stat().st_size == 0:
            part.unlink()
    except (OSError, MirrorError):
        pass


def _with_headers(task: FileTask, extra: Mapping[str, str]) -> FileTask:
    if not extra:
        return task
    merged = dict(task.headers)
    merged.update(extra)
    return dataclasses.replace(task, headers=tuple(merged.items()))
