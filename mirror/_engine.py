"""The engine: sources → store → bounded queue → workers → verified files.

Shutdown protocol (written once, here):

1. Producers (one per source) expand their manifest entry in batches; each batch
   goes through the store (which drops what this run already planned and tells us
   what is verified) and the rest into a bounded queue. The bound is what keeps
   memory flat: a producer waits while workers are busy, so a 100,000-run study
   is never held in memory, and downloads start with the first batch.
2. When every producer is done, the pipeline puts one ``None`` per worker into the
   queue; a worker that takes ``None`` returns. (No ``Queue.shutdown`` before 3.13.)
3. On cancellation (SIGINT, SIGTERM, or the caller's), the task group cancels
   producers and workers wherever they are. Nothing needs undoing in the store: a
   file is only ever marked ``verified`` after its rename, a download in flight
   keeps its ``.part`` file and resumes next run. ``index.tsv`` is then written
   from the store, and the cancellation propagates.

A source that fails (the archive rejects a query, say) is reported and counted;
the other sources and the downloads already planned carry on.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ._config import CramRefsSpec, EgaSpec, EnaSpec, EnterobaseSpec, Manifest, MgnifySpec
from ._credentials import Credentials, Secret
from ._download import Downloader, Stats
from ._exceptions import (
    CredentialsError,
    DestinationError,
    EmptyEntry,
    ManifestError,
    MirrorError,
    StateError,
    collapsed,
    expected_errors,
    joined,
)
from ._http import WINDOW, Http
from ._index import write_index
from ._metadata import MetadataWriter
from ._meter import eta
from ._models import (
    ActiveFile,
    Event,
    FileTask,
    FileVerified,
    PlanFinished,
    Progress,
    Summary,
    TaskStatus,
    WarningEvent,
)
from ._paths import final_path
from ._retry import RetryPolicy
from ._state import Claim, Member, PlannedFile, Store, gone, open_store
from .sources import FileHooks, PullLedger, Source, SourceContext
from .sources.cram import CramRefSource
from .sources.ega import EgaLogin, EgaTicketSource
from .sources.ega_data import EgaDataSource
from .sources.ena import EnaSource
from .sources.enterobase import EnterobaseSource
from .sources.mgnify import MgnifySource

__all__ = ["Engine"]

#: A queued download: the task, its source's hooks (if it has any), its claim's fence.
_Item = tuple[FileTask, "FileHooks | None", int]

logger = logging.getLogger(__name__)

PROGRESS_INTERVAL = 0.5
#: Seconds a claimed file stays its holder's without a heartbeat (``--lease``).
LEASE = 60.0
#: Seconds between refreshes of the pull's counts while several members take part.
COUNTS_EVERY = 5.0
#: Planning that adds no file for this many seconds is shown as waiting.
PLANNING_QUIET = 5.0


class Engine:
    """One run of a manifest. Build it, then ``await engine.run()`` once."""

    def __init__(
        self,
        manifest: Manifest,
        *,
        emit: Callable[[Event], None] = lambda e: None,
        state: str | None = None,
        retry: RetryPolicy | None = None,
        progress_interval: float = PROGRESS_INTERVAL,
        credentials: Credentials | None = None,
        lease: float = LEASE,
    ) -> None:
        if lease <= 0:
            raise ValueError("lease must be positive")
        self.manifest = manifest
        #: Seconds a claimed file stays this process's without a heartbeat.
        self.lease = lease
        #: Live members of the pull at the last heartbeat (this one included).
        self.members = 1
        #: Whether this process is the one planning (the others wait for the store).
        self._planning_here = False
        #: The pull's counts by status, refreshed by the heartbeat while others take part.
        self._pull_counts: dict[TaskStatus, tuple[int, int]] | None = None
        self.credentials = credentials or Credentials.from_environment()
        self.dest = manifest.dest
        self._emit = emit
        self._state_url = state
        self.retry = retry or RetryPolicy()
        self._interval = progress_interval
        self.stats = Stats()
        self._plan_errors: list[str] = []
        self._refused: list[str] = []
        self._started = False
        #: Files planned without a size (the archive gives none): their bytes are unknown.
        self.unsized = 0

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
        pull: _Pull | None = None
        failing: BaseException | None = None
        try:
            pull = await self._join(store)
            async with Http(
                self.manifest.host_limit, retry=self.retry, timeouts=self.manifest.timeouts
            ) as http:
                ctx = self._context(http, _Ledger(store, pull.generation))
                try:
                    with collapsed():
                        await self._pipeline(
                            [make(ctx) for make in sources_ready], store, http, pull
                        )
                finally:
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
        errors = [m for k, m in problems if k == "error"] or self._plan_errors
        refused = [m for k, m in problems if k == "refused"] or self._refused
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

    async def _join(self, store: Store) -> _Pull:
        member = Member(
            id=f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}",
            host=socket.gethostname(),
            pid=os.getpid(),
        )
        # A process of this pull killed on this host (SIGKILL, OOM) leaves no one to
        # wait for: its files are free now, not after its lease.
        await self._evict_dead_neighbours(store, member)
        generation = await store.join(member, lease=self.lease)
        return _Pull(member=member, generation=generation, digest=self._digest())

    async def _evict_dead_neighbours(self, store: Store, me: Member) -> None:
        """Release the files of members on this host whose process is gone.

        Members are told apart by host name; processes on one host name are taken to
        share one PID namespace (containers sharing a host name and a store do not).
        """
        for m in await store.members(lease=self.lease):
            if m.host == me.host and m.pid != me.pid and gone(m.host, m.pid):
                logger.info(
                    "process %d on this host left the pull without a word: its %d files are free",
                    m.pid,
                    m.held,
                )
                await store.leave(Member(id=m.id, host=m.host, pid=m.pid))

    def _digest(self) -> str:
        """Names what this process plans: members running the same manifest plan once."""
        what = repr((self.manifest.sources, sorted(self.manifest.endpoints.items())))
        return hashlib.sha1(what.encode()).hexdigest()[:16]

    async def _finish(self, store: Store, pull: _Pull, failing: BaseException | None) -> None:
        """Leave the pull (what this process held goes back to pending) and write the
        index; on the way out of a cancelled or failed run too."""
        steps = (
            functools.partial(store.leave, pull.member),
            functools.partial(write_index, store, pull.generation, self.dest),
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
                async with Http(
                    self.manifest.host_limit, retry=self.retry, timeouts=self.manifest.timeouts
                ) as http:
                    ctx = self._context(http, _Ledger(store, pull.generation))
                    for i, make in enumerate(makers):
                        source = make(ctx)
                        try:
                            async for batch in source.expand():
                                for planned in await store.plan(batch, pull.generation, entry=i):
                                    files += 1
                                    total += planned.task.size or 0
                                    self.unsized += planned.task.size is None
                        except Exception as exc:
                            if not self._source_failed(f"sources[{i}].{source.name}", exc):
                                raise
                await self._record_problems(store, pull.generation)
            finally:
                await store.leave(pull.member)
        finally:
            await store.aclose()
        return files, total

    def _check_dest(self) -> None:
        """Refuse a ``dest`` whose ``index.tsv`` cannot be written, before any download."""
        index = self.dest / "index.tsv"
        if index.is_dir() or (index.exists() and not index.is_file()):
            raise ManifestError(
                "is not a file; the mirror lists its files there: move it away and re-run",
                file=str(index),
            )

    async def _record_problems(self, store: Store, generation: int) -> None:
        """Keep each source that could not be planned, so ``mirror status`` and the other
        members can tell."""
        for kind, lines in (("refused", self._refused), ("error", self._plan_errors)):
            for line in lines:
                await store.record_problem(generation, kind, line)

    def _once(self) -> None:
        if self._started:
            raise RuntimeError("an Engine runs once; build a new one to run again")
        self._started = True

    def _source_failed(self, name: str, exc: Exception) -> bool:
        """Record a source that stopped with expected errors; ``False`` for anything else.

        A source's own task groups hand over an ``ExceptionGroup``: each error in it
        is one line naming the source. Credentials refused count as ``refused``.
        """
        errors = expected_errors(exc)
        # A state store that cannot be written (a full disk) stops the run, not a source.
        if errors is None or any(isinstance(e, StateError) for e in errors):
            return False
        # Producers running side by side often meet the same refusal: say it once.
        for error in {str(e): e for e in errors}.values():
            line = f"{name}: {error}"
            if isinstance(error, CredentialsError):
                self._refused.append(line)
            else:
                self._plan_errors.append(line)
            # An entry that matched nothing did not stop: it is all there was.
            stopped = "" if isinstance(error, EmptyEntry) else "planning stopped: "
            self._warn(f"{name}: {stopped}{error}")
        return True

    @property
    def plan_errors(self) -> list[str]:
        return list(self._plan_errors)

    @property
    def refused(self) -> list[str]:
        return list(self._refused)

    # -- sources ---------------------------------------------------------------------

    def _context(self, http: Http, pull: PullLedger) -> SourceContext:
        return SourceContext(
            pull=pull,
            http=http,
            endpoints=self.manifest.endpoints,
            metadata=MetadataWriter(self.dest / "metadata"),
            warn=self._warn,
            # Names server-side state (EGA request labels) so a resumed run finds it.
            mirror_id=hashlib.sha1(str(self.dest.resolve()).encode()).hexdigest()[:12],
        )

    def _check_sources(self) -> list[Callable[[SourceContext], Source]]:
        """Build a constructor per source, failing (exit 2) before any request.

        Credentials are looked up here, so a missing token stops the run before
        anything is planned or downloaded.
        """
        makers: list[Callable[[SourceContext], Source]] = []
        missing: list[CredentialsError] = []
        for i, spec in enumerate(self.manifest.sources):
            try:
                if isinstance(spec, EnaSpec):
                    makers.append(functools.partial(EnaSource, spec))
                elif isinstance(spec, MgnifySpec):
                    makers.append(functools.partial(MgnifySource, spec))
                elif isinstance(spec, EnterobaseSpec):
                    token = self._enterobase_token(i)
                    makers.append(functools.partial(_enterobase, spec, token))
                elif isinstance(spec, EgaSpec):
                    makers.append(functools.partial(_ega, spec, self._ega_login(i, spec)))
                elif isinstance(spec, CramRefsSpec):
                    makers.append(functools.partial(CramRefSource, spec))
            except CredentialsError as exc:
                missing.append(exc)
        if missing:
            # Every source's missing credentials at once: one fix, then one re-run.
            raise joined(missing)
        return makers

    def _ega_login(self, index: int, spec: EgaSpec) -> EgaLogin:
        creds = self.credentials
        user, password = creds.get("EGA_USERNAME"), creds.get("EGA_PASSWORD")
        if user is None or password is None:
            key = "ega_access" if spec.protocol == "tickets" else "ega_auth"
            found = creds.for_host(self.manifest.endpoints[key])
            if found is not None and found[0] and found[1]:
                user, password = user or found[0], password or found[1]
        missing = [n for n, v in (("EGA_USERNAME", user), ("EGA_PASSWORD", password)) if not v]
        rekey = creds.get("EGA_REKEY")
        if spec.protocol == "tickets" and rekey is None:
            missing.append("EGA_REKEY")
        if missing or user is None or password is None:
            raise CredentialsError(
                f"sources[{index}].ega: {' and '.join(missing)} not set. EGA needs your account "
                "(EGA_USERNAME, EGA_PASSWORD, or a ~/.netrc entry for its host)"
                + (
                    " and, for tickets, the re-encryption key EGA_REKEY"
                    if spec.protocol == "tickets"
                    else ""
                )
            )
        return EgaLogin(
            username=user.value,
            password=password,
            rekey=rekey,
            client_id=creds.get("EGA_CLIENT_ID"),
            client_secret=creds.get("EGA_CLIENT_SECRET"),
        )

    def _enterobase_token(self, index: int) -> Secret:
        token = self.credentials.get("ENTEROBASE_TOKEN")
        if token is None:
            found = self.credentials.for_host(self.manifest.endpoints["enterobase"])
            token = found[0] if found and found[0] else None
        if token is None:
            raise CredentialsError(
                f"sources[{index}].enterobase: ENTEROBASE_TOKEN is not set. EnteroBase needs "
                "an API token (ask the EnteroBase team for API access to the database); put "
                "it in ENTEROBASE_TOKEN, or as the login of a ~/.netrc entry for its host"
            )
        return token

    # -- the pipeline ----------------------------------------------------------------

    async def _pipeline(self, sources: list[Source], store: Store, http: Http, pull: _Pull) -> None:
        n_workers = self.manifest.workers
        # Small: a claimed file waiting here is one no other member can take, which
        # matters at the end of a pull of large files.
        queue: asyncio.Queue[_Item | None] = asyncio.Queue(maxsize=max(2, n_workers // 4))
        downloader = Downloader(
            dest=self.dest,
            http=http,
            store=store,
            retry=self.retry,
            stats=self.stats,
            emit=self._emit,
        )
        # A full or read-only destination stops every worker; the caller's collapsed()
        # turns the group into that one error.
        async with asyncio.TaskGroup() as outer:
            ticker = outer.create_task(self._tick())
            beat = outer.create_task(self._beat(store, http, pull))
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
        self._emit(self._progress())

    async def _dispatch(
        self,
        sources: list[Source],
        store: Store,
        queue: asyncio.Queue[_Item | None],
        downloader: Downloader,
        pull: _Pull,
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
            planner = tg.create_task(self._produce(sources, store, downloader, pull))
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
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(pull.planned.wait(), poll)
                continue
            progress = await store.progress(pull.generation, lease=self.lease)
            if not progress.planning and self.stats.planning:
                # Another member planned: say what the pull holds.
                counts = await store.counts(pull.generation)
                self.stats.planned = max(self.stats.planned, sum(n for n, _ in counts.values()))
                self.stats.planned_bytes = max(
                    self.stats.planned_bytes, sum(b for _, b in counts.values())
                )
                self._plan_finished()
            if progress.pending:
                continue
            if not progress.planning and not progress.running:
                if await my_turn():
                    continue
                return
            # Others are planning or still hold files (which come back to the queue if
            # their holder dies and its lease runs out): look again shortly.
            await asyncio.sleep(poll)

    def _hooks_for(self, sources: list[Source], claim: Claim) -> FileHooks | None:
        """The hooks of the manifest entry that planned the file (another process may
        have planned it: every process builds the same sources)."""
        candidates = [claim.entry] if claim.entry < len(sources) else []
        candidates += range(len(sources))
        for i in candidates:
            if sources[i].name == claim.task.source:
                hooks: FileHooks | None = getattr(sources[i], "hooks", None)
                return hooks
        return None

    async def _produce(
        self, sources: list[Source], store: Store, downloader: Downloader, pull: _Pull
    ) -> None:
        self.stats.planning = self._planning_here = True

        async def one(i: int, source: Source) -> None:
            hooks: FileHooks | None = getattr(source, "hooks", None)
            try:
                async for batch in source.expand():
                    plan = await store.plan(batch, pull.generation, entry=i)
                    # One trip to a thread for every size a batch needs checked.
                    sizes = await asyncio.to_thread(self._sizes_on_disk, plan)
                    for planned in plan:
                        await self._planned(
                            planned, store, downloader, hooks, sizes.get(planned.task.key)
                        )
                    pull.planned.set()
            except Exception as exc:
                # The other sources and the downloads already planned carry on.
                if not self._source_failed(f"sources[{i}].{source.name}", exc):
                    raise

        async with asyncio.TaskGroup() as tg:
            for i, source in enumerate(sources):
                tg.create_task(one(i, source))
        # Before the plan is done: a member that sees it done also sees its problems.
        await self._record_problems(store, pull.generation)
        await store.plan_done(pull.member, pull.generation, pull.digest)
        self._planning_here = False
        self._plan_finished()
        pull.planned.set()

    def _plan_finished(self) -> None:
        if self.stats.planning is False:
            return
        self.stats.planning = False
        self._emit(
            PlanFinished(
                files=self.stats.planned,
                bytes=self.stats.planned_bytes,
                unsized=self.stats.unsized,
            )
        )

    async def _planned(
        self,
        planned: PlannedFile,
        store: Store,
        downloader: Downloader,
        hooks: FileHooks | None,
        size: int | None,
    ) -> None:
        """Account for one newly planned file; settle what needs no download."""
        task = planned.task
        self.stats.planned += 1
        self.stats.planned_bytes += task.size or 0
        self.stats.unsized += task.size is None
        if task.error is not None:
            await downloader.fail(task, task.error, hooks)
            return
        if planned.status is TaskStatus.VERIFIED:
            if size is not None and size == planned.bytes:
                # Verified in an earlier run and still there: no request at all.
                self.stats.verified += 1
                self.stats.skipped += 1
                self.stats.done_bytes += size
                self._emit(
                    FileVerified(
                        path=task.path,
                        bytes=size,
                        md5=planned.md5 or "",
                        verified_by=planned.verified_by or "",
                        skipped=True,
                    )
                )
                if hooks is not None:
                    await hooks.settled(task, True)
                return
            self._warn(
                f"{task.path}: verified earlier but missing or changed on disk; fetching it again"
            )
            await store.mark_pending(task.key)

    def _sizes_on_disk(self, plan: list[PlannedFile]) -> dict[str, int | None]:
        """Sizes of the files the store says are verified (blocking: run in a thread)."""
        return {
            p.task.key: _size_of(final_path(self.dest, p.task.path, p.task.root))
            for p in plan
            if p.status is TaskStatus.VERIFIED
        }

    async def _worker(
        self, queue: asyncio.Queue[_Item | None], downloader: Downloader, pull: _Pull
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
                if _cancelling():
                    raise
                logger.warning(
                    "%s: another process took this file over (this one lost its lease); left to it",
                    task.path,
                )
            finally:
                pull.jobs.pop(task.key, None)
                pull.held.pop(task.key, None)

    async def _beat(self, store: Store, http: Http, pull: _Pull) -> None:
        """The member's heartbeat: renew leases, share the hosts, stop lost files.

        A newcomer is admitted (starts requests) only once every other member has
        applied the new member count, and a window later: the requests they made
        at their old share in the last second count against the new one.
        """
        interval = max(0.05, min(self.lease / 4, 2.0))
        sees = 0
        refresh = 0.0
        while True:
            # Only files claimed before this heartbeat can be missing from its answer.
            claimed = set(pull.held)
            beat = await store.heartbeat(pull.member, lease=self.lease, sees=sees)
            if beat.members != sees:
                # A place among the live members (by id), so that members whose share
                # of a host is under one request a second take turns.
                ids = sorted(m.id for m in await store.members(lease=self.lease))
                rank = ids.index(pull.member.id) if pull.member.id in ids else None
                if rank is not None and len(ids) != beat.members:
                    rank = None  # the members changed in between: the next beat retries
                http.share(beat.members, rank if rank is not None and rank < beat.members else None)
                sees = beat.members
                self.members = beat.members
                continue  # tell the others at once
            if beat.members > 1:
                await self._evict_dead_neighbours(store, pull.member)
            for key in claimed - beat.held:
                if key in pull.jobs:
                    pull.jobs[key].cancel()
            if not pull.admitted.is_set() and beat.settled:
                if beat.members > 1:
                    await asyncio.sleep(WINDOW)
                pull.admitted.set()
            if beat.members > 1 and time.monotonic() >= refresh:
                # The pull's counts for the progress display: a whole-pull read, so
                # not every beat (hundreds of ms at 300,000 files on PostgreSQL).
                self._pull_counts = await store.counts(pull.generation)
                refresh = time.monotonic() + COUNTS_EVERY
            await asyncio.sleep(interval if pull.admitted.is_set() else interval / 4)

    # -- events ----------------------------------------------------------------------

    def _warn(self, message: str) -> None:
        logger.warning("%s", message)
        self._emit(WarningEvent(message=message))

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            self._emit(self._progress())

    def _progress(self) -> Progress:
        s = self.stats
        done = s.done_bytes + sum(int(e[0] or 0) for e in s.active.values())
        rate = s.rate()
        now = time.monotonic()
        waits: dict[str, list[float]] = {}
        for until, why in list(s.waiting.values()):
            waits.setdefault(why, []).append(until - now)
        waiting = [
            f"{why}, retry in {max(0.0, min(left)):.0f} s"
            + (f" ({len(left)} files)" if len(left) > 1 else "")
            for why, left in waits.items()
        ]
        idle = s.planning_idle()
        if idle >= PLANNING_QUIET and self._planning_here:
            waiting.append(f"planning: no new files for {idle:.0f} s, waiting for the archives")
        planned, verified, failed = s.planned, s.verified, s.failed
        total, failed_bytes = s.planned_bytes, s.failed_bytes
        if self._pull_counts is not None:
            # Several members: the pull's counts, as of the last heartbeat.
            c = self._pull_counts
            planned = sum(n for n, _ in c.values())
            verified, failed = c[TaskStatus.VERIFIED][0], c[TaskStatus.FAILED][0]
            total, failed_bytes = sum(b for _, b in c.values()), c[TaskStatus.FAILED][1]
            done = c[TaskStatus.VERIFIED][1] + sum(int(e[0] or 0) for e in s.active.values())
        return Progress(
            planned=planned,
            planning=s.planning,
            verified=verified,
            failed=failed,
            bytes_done=done,
            bytes_total=total,
            rate=rate,
            eta=eta(total - failed_bytes - done, rate),
            unsized=s.unsized,
            waiting=tuple(waiting),
            active=tuple(
                ActiveFile(
                    path=p,
                    done=int(e[0] or 0),
                    size=e[1],
                    waiting=s.waiting[p][1] if p in s.waiting else None,
                )
                for p, e in list(s.active.items())[:20]
            ),
        )


@dataclass(kw_only=True, slots=True)
class _Pull:
    """This process's part in the pull, shared by the dispatcher, workers and heartbeat."""

    member: Member
    generation: int
    digest: str
    #: Files claimed and not yet finished here: key -> the claim's fence.
    held: dict[str, int] = field(default_factory=dict)
    #: The download of each file being fetched, to stop one whose lease was lost.
    jobs: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    #: Set once the other members share the hosts with this one: requests may start.
    admitted: asyncio.Event = field(default_factory=asyncio.Event)
    #: A planning batch landed in the store (this process's): claim again.
    planned: asyncio.Event = field(default_factory=asyncio.Event)
    #: A worker took an item from the queue: there is room to claim.
    taken: asyncio.Event = field(default_factory=asyncio.Event)


class _Ledger:
    """The pull as a source sees it: the store, bound to this generation."""

    def __init__(self, store: Store, generation: int) -> None:
        self._store = store
        self._generation = generation

    async def tally(self, prefix: str) -> dict[TaskStatus, int]:
        return await self._store.tally(self._generation, prefix)

    async def once(self, name: str) -> bool:
        return await self._store.once(self._generation, name)


def _cancelling() -> bool:
    """Whether the current task itself is being cancelled (not something it awaited)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _ega(spec: EgaSpec, login: EgaLogin, ctx: SourceContext) -> Source:
    if spec.protocol == "tickets":
        return EgaTicketSource(spec.datasets, spec.files, ctx, login)
    return EgaDataSource(spec.datasets, spec.files, ctx, login)


def _enterobase(spec: EnterobaseSpec, token: Secret, ctx: SourceContext) -> Source:
    return EnterobaseSource(spec, ctx, token)


def _size_of(path: Path) -> int | None:
    with contextlib.suppress(OSError):
        return path.stat().st_size
    return None
