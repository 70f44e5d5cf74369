"""Planning: the sources' files into the store, and what planning met.

One member of a pull plans a manifest (the store's ``plan_turn`` says which). Its
producers, one per source, expand their entries in batches into the store, which drops
what the pull planned already; the dispatcher claims from there. A file verified by an
earlier run and still on disk is settled here with no request. A source that stops (the
archive refuses a query, say) is recorded as a problem of the pull, and the other
sources and the downloads already planned carry on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from ._dest import Destination
from ._download import Downloader, Stats
from ._exceptions import CredentialsError, EmptyEntry, Fatal, expected_errors
from ._models import Event, FileVerified, PlanFinished, TaskStatus, WarningEvent
from ._pull import Pull
from ._seam import FileHooks, Source
from ._state import PlannedFile, Store

__all__ = ["Planning"]

logger = logging.getLogger(__name__)


class Planning:
    """The plan's side of a run: the producers, the plan's counts and its problems."""

    def __init__(
        self, *, stats: Stats, emit: Callable[[Event], None], destination: Destination
    ) -> None:
        self.stats = stats
        self._emit = emit
        self.destination = destination
        #: Sources that could not be planned, a line each; credentials refused apart.
        self.plan_errors: list[str] = []
        self.refused: list[str] = []
        #: Whether this process is the one planning (the others wait for the store).
        self.planning_here = False

    def warn(self, message: str) -> None:
        logger.warning("%s", message)
        self._emit(WarningEvent(message=message))

    async def record_problems(self, store: Store, generation: int) -> None:
        """Keep each source that could not be planned, so ``mirror status`` and the other
        members can tell."""
        for kind, lines in (("refused", self.refused), ("error", self.plan_errors)):
            for line in lines:
                await store.record_problem(generation, kind, line)

    def source_failed(self, name: str, exc: Exception) -> bool:
        """Record a source that stopped with expected errors; ``False`` for anything else.

        A source's own task groups hand over an ``ExceptionGroup``: each error in it
        is one line naming the source. Credentials refused count as ``refused``.
        """
        errors = expected_errors(exc)
        # A state store that cannot be written (a full disk) stops the run, not a source.
        if errors is None or any(isinstance(e, Fatal) for e in errors):
            return False
        # Producers running side by side often meet the same refusal: say it once.
        for error in {str(e): e for e in errors}.values():
            line = f"{name}: {error}"
            if isinstance(error, CredentialsError):
                self.refused.append(line)
            else:
                self.plan_errors.append(line)
            # An entry that matched nothing did not stop: it is all there was.
            stopped = "" if isinstance(error, EmptyEntry) else "planning stopped: "
            self.warn(f"{name}: {stopped}{error}")
        return True

    async def produce(
        self, sources: list[Source], store: Store, downloader: Downloader, pull: Pull
    ) -> None:
        self.stats.planning = self.planning_here = True

        async def one(i: int, source: Source) -> None:
            hooks = source.hooks
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
                if not self.source_failed(f"sources[{i}].{source.name}", exc):
                    raise

        async with asyncio.TaskGroup() as tg:
            for i, source in enumerate(sources):
                tg.create_task(one(i, source))
        # Before the plan is done: a member that sees it done also sees its problems.
        await self.record_problems(store, pull.generation)
        await store.plan_done(pull.member, pull.generation, pull.digest)
        self.planning_here = False
        self.plan_finished()
        pull.planned.set()

    def plan_finished(self) -> None:
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
            self.warn(
                f"{task.path}: verified earlier but missing or changed on disk; fetching it again"
            )
            await store.mark_pending(task.key)

    def _sizes_on_disk(self, plan: list[PlannedFile]) -> dict[str, int | None]:
        """Sizes of the files the store says are verified (blocking: run in a thread)."""
        files = self.destination
        return {
            p.task.key: files.size(files.final(p.task.path, p.task.root))
            for p in plan
            if p.status is TaskStatus.VERIFIED
        }
