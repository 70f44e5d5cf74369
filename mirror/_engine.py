"""The engine: sources → store → claims → workers → verified files.

One run of a manifest is one member of a pull (:mod:`mirror._pull`): every process
naming the same state store and ``dest`` takes part in the same pull.

1. Planning (:mod:`mirror._planning`): the member whose turn it is runs one producer
   per source; each expands its manifest entry in batches into the store, which drops
   what the pull planned already. Nothing planned waits in memory: a 100,000-run study
   lives in the store, and downloads start with the first batch.
2. The dispatcher claims pending files from the store (leased to this member, with a
   fence) into a small bounded queue; workers download what they take. When the
   generation has nothing pending, leased or being planned, the dispatcher returns
   and the pipeline puts one ``None`` per worker into the queue; a worker that takes
   ``None`` returns.
3. The heartbeat renews this member's leases; a file whose lease another member took
   over is stopped here and left to it.
4. On the way out, cancelled (SIGINT, SIGTERM, the caller's), failed or done, the
   member leaves the pull: what it held goes back to pending for the others or the
   next run. Nothing else needs undoing: a file is only marked ``verified`` after its
   rename, a download in flight keeps its ``.part`` file and resumes. ``index.tsv``
   is then written from the store, and the cancellation propagates.

A source that fails (the archive rejects a query, say) is reported and counted;
the other sources and the downloads already planned carry on.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import os
import secrets
import socket
from collections.abc import Callable
from dataclasses import replace

from ._clock import REAL_CLOCK, Clock
from ._config import Manifest
from ._credentials import Credentials
from ._dest import Destination, LocalDestination
from ._download import Downloader, Stats
from ._exceptions import (
    CredentialsError,
    DestinationError,
    ManifestError,
    MirrorError,
    collapsed,
    joined,
)
from ._http import Http
from ._index import write_index
from ._metadata import MetadataWriter
from ._models import Event, FileTask, Progress, Summary, TaskStatus
from ._planning import Planning
from ._progress import progress
from ._pull import Ledger, Pull, evict_dead_neighbours, heartbeat
from ._registry import CredentialLookup, kind_of
from ._retry import RetryPolicy
from ._seam import FileHooks, PullLedger, Source, SourceContext, close_sources
from ._state import Claim, Member, Store, open_store
from ._tasks import cancelling
from ._tuning import Tuning

__all__ = ["Engine"]

#: A queued download: the task, its source's hooks (if it has any), its claim's fence.
_Item = tuple[FileTask, "FileHooks | None", int]

logger = logging.getLogger(__name__)


class Engine:
    """One run of a manifest. Build it, then ``await engine.run()`` once."""

    def __init__(
        self,
        manifest: Manifest,
        *,
        emit: Callable[[Event], None] = lambda e: None,
        state: str | None = None,
        retry: RetryPolicy | None = None,
        progress_interval: float | None = None,
        credentials: Credentials | None = None,
        lease: float | None = None,
        destination: Destination | None = None,
        tuning: Tuning | None = None,
        clock: Clock = REAL_CLOCK,
    ) -> None:
        tuning = tuning or Tuning()
        # The arguments of the same names, when given, replace the tuning's.
        if lease is not None or progress_interval is not None:
            pull = tuning.pull
            tuning = replace(
                tuning,
                pull=replace(
                    pull,
                    lease=pull.lease if lease is None else lease,
                    progress_interval=(
                        pull.progress_interval if progress_interval is None else progress_interval
                    ),
                ),
            )
        if retry is not None:
            tuning = replace(tuning, retry=retry)
        if tuning.timeouts is not None:
            manifest = replace(manifest, timeouts=tuning.timeouts)
        self.tuning = tuning
        self.manifest = manifest
        #: Seconds a claimed file stays this process's without a heartbeat.
        self.lease = tuning.pull.lease
        self.credentials = credentials or Credentials.from_environment()
        self.dest = manifest.dest
        #: Where every file of the mirror is written (the state store aside).
        self.destination: Destination = destination or LocalDestination(self.dest)
        self._emit = emit
        self._state_url = state
        self.retry = tuning.retry
        self._interval = tuning.pull.progress_interval
        self.stats = Stats()
        self._plan = Planning(stats=self.stats, emit=emit, destination=self.destination)
        self._started = False
        #: Files planned without a size (the archive gives none): their bytes are unknown.
        self.unsized = 0
        #: What the HTTP client's host gates, breakers and retry waits keep time with.
        self.clock = clock

    # -- public ----------------------------------------------------------------------

    async def run(self) -> Summary:
        """Take part in the pull until every file is verified or failed; return its counts.

        An engine runs once: its counts, errors and statistics belong to that run.
        The counts are the pull's (every process taking part), not this process's.
        """
        self._once()
        sources_ready = self._check_sources()
        await asyncio.to_thread(self._check_dest)
        store = await open_store(self._state_url, self.dest)
        pull: Pull | None = None
        failing: BaseException | None = None
        try:
            pull = await self._join(store)
            async with self._http() as http:
                ctx = self._context(http, Ledger(store, pull.generation))
                sources = [make(ctx) for make in sources_ready]
                try:
                    with collapsed():
                        await self._pipeline(sources, store, http, pull)
                finally:
                    await close_sources(sources)
                    await asyncio.to_thread(ctx.metadata.discard)
            counts = await store.counts(pull.generation)
            problems = await store.problems()
        except BaseException as exc:
            failing = exc
            raise
        finally:
            try:
                if pull is not None:
                    await self._finish(store, pull, failing)
            finally:
                await store.aclose()
        # Problems another member met planning this generation are the pull's too.
        errors = [m for k, m in problems if k == "error"] or self._plan.plan_errors
        refused = [m for k, m in problems if k == "refused"] or self._plan.refused
        return Summary(
            planned=sum(n for n, _ in counts.values()),
            verified=counts[TaskStatus.VERIFIED][0],
            failed=counts[TaskStatus.FAILED][0],
            pending=counts[TaskStatus.PENDING][0] + counts[TaskStatus.RUNNING][0],
            bytes=counts[TaskStatus.VERIFIED][1],
            downloaded=self.stats.received,
            skipped=self.stats.skipped,
            errors=tuple(errors),
            refused=tuple(refused),
            hosts_down=tuple(
                f"{outage}; {n} file{'s' if n != 1 else ''} not downloaded; re-run to retry them"
                for outage, n in self.stats.hosts_down.values()
            ),
        )

    def _http(self) -> Http:
        """The HTTP client of a run (or a plan): the manifest's host limits and timeouts."""
        return Http(
            self.manifest.host_limit,
            retry=self.retry,
            timeouts=self.manifest.timeouts,
            tuning=self.tuning.http,
            clock=self.clock,
        )

    async def _join(self, store: Store) -> Pull:
        member = Member(
            id=f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}",
            host=socket.gethostname(),
            pid=os.getpid(),
        )
        # A process of this pull killed on this host (SIGKILL, OOM) leaves no one to
        # wait for: its files are free now, not after its lease.
        await evict_dead_neighbours(store, member, lease=self.lease)
        generation = await store.join(member, lease=self.lease)
        return Pull(member=member, generation=generation, digest=self._digest())

    def _digest(self) -> str:
        """Names what this process plans: members running the same manifest plan once."""
        what = repr((self.manifest.sources, sorted(self.manifest.endpoints.items())))
        return hashlib.sha1(what.encode()).hexdigest()[:16]

    async def _finish(self, store: Store, pull: Pull, failing: BaseException | None) -> None:
        """Leave the pull (what this process held goes back to pending) and write the
        index; on the way out of a cancelled or failed run too."""
        steps = (
            functools.partial(store.leave, pull.member),
            functools.partial(write_index, store, pull.generation, self.destination),
        )
        for step in steps:
            try:
                await step()
            except MirrorError as exc:
                if failing is None:
                    raise
                # The error that stopped the run is the one to tell; this one follows it,
                # unless it is that same full or read-only disk again.
                if isinstance(failing, DestinationError):
                    logger.warning("%s", exc)
                elif isinstance(failing, MirrorError):
                    failing.add_note(str(exc))

    async def plan_only(self) -> tuple[int, int]:
        """Expand the sources and count files and bytes, downloading nothing.

        The plan goes through the state store, as a run's does: duplicates (a study
        and one of its runs) are dropped there, and memory stays flat however large
        the plan. ``mirror status`` then shows the planned files as pending.
        """
        self._once()
        makers = self._check_sources()
        files = total = 0
        store = await open_store(self._state_url, self.dest)
        try:
            pull = await self._join(store)
            try:
                async with self._http() as http:
                    ctx = self._context(http, Ledger(store, pull.generation))
                    for i, make in enumerate(makers):
                        source = make(ctx)
                        try:
                            async for batch in source.expand():
                                for planned in await store.plan(batch, pull.generation, entry=i):
                                    files += 1
                                    total += planned.task.size or 0
                                    self.unsized += planned.task.size is None
                        except Exception as exc:
                            if not self._plan.source_failed(f"sources[{i}].{source.name}", exc):
                                raise
                        finally:
                            await close_sources([source])
                await self._plan.record_problems(store, pull.generation)
            finally:
                await store.leave(pull.member)
        finally:
            await store.aclose()
        return files, total

    def _check_dest(self) -> None:
        """Refuse a ``dest`` whose ``index.tsv`` cannot be written, before any download."""
        index = self.destination.root / "index.tsv"
        if self.destination.exists(index) and not self.destination.is_file(index):
            raise ManifestError(
                "is not a file; the mirror lists its files there: move it away and re-run",
                file=str(index),
            )

    def _once(self) -> None:
        if self._started:
            raise RuntimeError("an Engine runs once; build a new one to run again")
        self._started = True

    @property
    def plan_errors(self) -> list[str]:
        return list(self._plan.plan_errors)

    @property
    def refused(self) -> list[str]:
        return list(self._plan.refused)

    # -- sources ---------------------------------------------------------------------

    def _context(self, http: Http, pull: PullLedger) -> SourceContext:
        return SourceContext(
            pull=pull,
            http=http,
            endpoints=self.manifest.endpoints,
            metadata=MetadataWriter(self.destination.root / "metadata", dest=self.destination),
            warn=self._plan.warn,
            # Names server-side state (EGA request labels) so a resumed run finds it.
            mirror_id=hashlib.sha1(str(self.dest.resolve()).encode()).hexdigest()[:12],
            tuning=self.tuning,
        )

    def _check_sources(self) -> list[Callable[[SourceContext], Source]]:
        """Build a constructor per source, failing (exit 2) before any request.

        Credentials are looked up here, so a missing token stops the run before
        anything is planned or downloaded.
        """
        makers: list[Callable[[SourceContext], Source]] = []
        missing: list[CredentialsError] = []
        for i, spec in enumerate(self.manifest.sources):
            kind = kind_of(spec)
            if kind is None:
                raise ManifestError(
                    f"{type(spec).__name__} is not the entry of a registered source",
                    file=self.manifest.origin,
                    key=f"sources[{i}]",
                )
            lookup = CredentialLookup(
                credentials=self.credentials,
                endpoints=self.manifest.endpoints,
                where=f"sources[{i}].{kind.key}",
            )
            try:
                makers.append(kind.prepare(spec, lookup))
            except CredentialsError as exc:
                missing.append(exc)
        if missing:
            # Every source's missing credentials at once: one fix, then one re-run.
            raise joined(missing)
        return makers

    # -- the pipeline ----------------------------------------------------------------

    async def _pipeline(self, sources: list[Source], store: Store, http: Http, pull: Pull) -> None:
        n_workers = self.manifest.workers
        # Small: a claimed file waiting here is one no other member can take, which
        # matters at the end of a pull of large files.
        queue: asyncio.Queue[_Item | None] = asyncio.Queue(
            maxsize=self.tuning.pull.queue_size(n_workers)
        )
        downloader = Downloader(
            dest=self.destination,
            http=http,
            store=store,
            retry=self.retry,
            stats=self.stats,
            emit=self._emit,
            transfer=self.tuning.transfer,
            recorded=pull.recorded.add,
        )
        # A full or read-only destination stops every worker; the caller's collapsed()
        # turns the group into that one error.
        async with asyncio.TaskGroup() as outer:
            ticker = outer.create_task(self._tick(pull))
            beat = outer.create_task(
                heartbeat(
                    store, http, pull, lease=self.lease, counts_every=self.tuning.pull.counts_every
                )
            )
            try:
                await pull.admitted.wait()
                async with asyncio.TaskGroup() as tg:
                    for _ in range(n_workers):
                        tg.create_task(self._worker(queue, downloader, pull))
                    await self._dispatch(sources, store, queue, downloader, pull, tg)
                    for _ in range(n_workers):
                        await queue.put(None)
            finally:
                ticker.cancel()
                beat.cancel()
        self._emit(self._progress(pull))

    async def _dispatch(
        self,
        sources: list[Source],
        store: Store,
        queue: asyncio.Queue[_Item | None],
        downloader: Downloader,
        pull: Pull,
        tg: asyncio.TaskGroup,
    ) -> None:
        """Fill the queue from claims until the generation has nothing pending or leased.

        Planning (this process's, when it is its turn) runs beside: it only writes
        to the store, and wakes this loop when a batch lands.
        """
        planner: asyncio.Task[None] | None = None
        poll = min(1.0, max(0.05, self.lease / 8))

        async def my_turn() -> bool:
            # First to plan this manifest in this generation, or its planner died.
            nonlocal planner
            if planner is not None and not planner.done():
                return False
            if not await store.plan_turn(
                pull.member, pull.generation, pull.digest, lease=self.lease
            ):
                return False
            planner = tg.create_task(self._plan.produce(sources, store, downloader, pull))
            return True

        await my_turn()
        while True:
            if queue.full():
                # Every worker is busy and the queue is full: claim when one frees up.
                pull.taken.clear()
                if queue.full():
                    await pull.taken.wait()
                continue
            room = queue.maxsize - queue.qsize()
            claims = await store.claim(pull.member, pull.generation, room, lease=self.lease)
            for claim in claims:
                pull.held[claim.task.key] = claim.fence
                queue.put_nowait((claim.task, self._hooks_for(sources, claim), claim.fence))
            if claims:
                continue
            if planner is not None and not planner.done():
                pull.planned.clear()
                await REAL_CLOCK.wait(pull.planned, poll)
                continue
            # Cleared before the read: a download ending during it wakes the wait below.
            pull.ended.clear()
            progress = await store.progress(pull.generation, lease=self.lease)
            if not progress.planning and self.stats.planning:
                # Another member planned: say what the pull holds.
                counts = await store.counts(pull.generation)
                self.stats.planned = max(self.stats.planned, sum(n for n, _ in counts.values()))
                self.stats.planned_bytes = max(
                    self.stats.planned_bytes, sum(b for _, b in counts.values())
                )
                self._plan.plan_finished()
            if progress.pending:
                continue
            if not progress.planning and not progress.running:
                if await my_turn():
                    continue
                return
            # Others are planning or still hold files (which come back to the queue if
            # their holder dies and its lease runs out): look again shortly, or as soon
            # as a download here ends (the last one ends the run).
            await REAL_CLOCK.wait(pull.ended, poll)

    def _hooks_for(self, sources: list[Source], claim: Claim) -> FileHooks | None:
        """The hooks of the manifest entry that planned the file (another process may
        have planned it: every process builds the same sources)."""
        candidates = [claim.entry] if claim.entry < len(sources) else []
        candidates += range(len(sources))
        for i in candidates:
            if sources[i].name == claim.task.source:
                return sources[i].hooks
        return None

    async def _worker(
        self, queue: asyncio.Queue[_Item | None], downloader: Downloader, pull: Pull
    ) -> None:
        while (item := await queue.get()) is not None:
            pull.taken.set()
            task, hooks, fence = item
            # A task of its own, so a file whose lease was taken over can be stopped
            # without stopping the worker.
            job = asyncio.create_task(downloader.download(task, hooks, fence=fence))
            pull.jobs[task.key] = job
            try:
                await job
            except asyncio.CancelledError:
                if cancelling():
                    raise
                logger.warning(
                    "%s: another process took this file over (this one lost its lease); left to it",
                    task.path,
                )
            finally:
                pull.jobs.pop(task.key, None)
                pull.held.pop(task.key, None)
                pull.recorded.discard(task.key)
                pull.ended.set()

    # -- events ----------------------------------------------------------------------

    async def _tick(self, pull: Pull) -> None:
        while True:
            await asyncio.sleep(self._interval)
            self._emit(self._progress(pull))

    def _progress(self, pull: Pull) -> Progress:
        return progress(
            self.stats,
            pull.counts,
            planning_here=self._plan.planning_here,
            quiet=self.tuning.pull.planning_quiet,
        )
