"""This process's part in a pull: membership, the heartbeat, the pull as sources see it.

Every process that runs a manifest against one state store and ``dest`` is a member of
the same pull. A member joins (the store hands it the pull's generation), claims files
(the dispatcher in :mod:`mirror._engine`), keeps its claims alive with a heartbeat and
leaves: what it held goes back to pending. A member that dies without leaving loses its
files when its lease runs out, or at once when a member on the same host sees that its
process is gone.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from ._http import WINDOW, Http
from ._models import TaskStatus
from ._state import Member, Store, gone

__all__ = ["Ledger", "Pull", "evict_dead_neighbours", "heartbeat"]

logger = logging.getLogger(__name__)


@dataclass(kw_only=True, slots=True)
class Pull:
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
    #: A worker finished a file (verified, failed or given up): the pull may be done.
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    #: Live members of the pull at the last heartbeat (this one included).
    members: int = 1
    #: The pull's counts by status, refreshed by the heartbeat while others take part.
    counts: dict[TaskStatus, tuple[int, int]] | None = None


class Ledger:
    """The pull as a source sees it: the store, bound to this generation."""

    def __init__(self, store: Store, generation: int) -> None:
        self._store = store
        self._generation = generation

    async def tally(self, prefix: str) -> dict[TaskStatus, int]:
        return await self._store.tally(self._generation, prefix)

    async def once(self, name: str) -> bool:
        return await self._store.once(self._generation, name)


async def evict_dead_neighbours(store: Store, me: Member, *, lease: float) -> None:
    """Release the files of members on this host whose process is gone.

    Members are told apart by host name; processes on one host name are taken to
    share one PID namespace (containers sharing a host name and a store do not).
    """
    for m in await store.members(lease=lease):
        if m.host == me.host and m.pid != me.pid and gone(m.host, m.pid):
            logger.info(
                "process %d on this host left the pull without a word: its %d files are free",
                m.pid,
                m.held,
            )
            await store.leave(Member(id=m.id, host=m.host, pid=m.pid))


async def heartbeat(
    store: Store, http: Http, pull: Pull, *, lease: float, counts_every: float
) -> None:
    """The member's heartbeat: renew leases, share the hosts, stop lost files.

    A newcomer is admitted (starts requests) only once every other member has
    applied the new member count, and a window later: the requests they made
    at their old share in the last second count against the new one.
    """
    interval = max(0.05, min(lease / 4, 2.0))
    sees = 0
    refresh = 0.0
    while True:
        # Only files claimed before this heartbeat can be missing from its answer.
        claimed = set(pull.held)
        beat = await store.heartbeat(pull.member, lease=lease, sees=sees)
        if beat.members != sees:
            # A place among the live members (by id), so that members whose share
            # of a host is under one request a second take turns.
            ids = sorted(m.id for m in await store.members(lease=lease))
            rank = ids.index(pull.member.id) if pull.member.id in ids else None
            if len(ids) != beat.members:
                # The members changed between the two reads: no turns until they change
                # again (only shares under one request a second take turns at all).
                rank = None
            http.share(beat.members, rank if rank is not None and rank < beat.members else None)
            sees = beat.members
            pull.members = beat.members
            continue  # tell the others at once
        if beat.members > 1:
            await evict_dead_neighbours(store, pull.member, lease=lease)
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
            pull.counts = await store.counts(pull.generation)
            refresh = time.monotonic() + counts_every
        await asyncio.sleep(interval if pull.admitted.is_set() else interval / 4)
