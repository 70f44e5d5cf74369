"""The member's heartbeat stops files taken over by another member, and only those."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mirror._config import HostLimit
from mirror._http import Http
from mirror._models import FileTask
from mirror._pull import Pull, heartbeat
from mirror._state import Member, Store, open_store

#: Short, so that the heartbeat beats often (every quarter of it); long enough that
#: no lease runs out during a test.
LEASE = 2.0


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await open_store(str(tmp_path / "state.sqlite"), tmp_path / "data")
    try:
        yield opened
    finally:
        await opened.aclose()


def _task(path: str) -> FileTask:
    return FileTask(
        source="ena", accession="ERR000001", url=f"https://h/{path}", path=path, size=1,
        checksum="a" * 32,
    )  # fmt: skip


async def _forever() -> None:
    await asyncio.Event().wait()


async def _beat_once(store: Store, pull: Pull) -> None:
    """Run the heartbeat until its first full beat (it admits the member), then stop it."""
    async with Http(lambda host: HostLimit()) as http:
        beating = asyncio.create_task(heartbeat(store, http, pull, lease=LEASE, counts_every=60.0))
        await pull.admitted.wait()
        beating.cancel()
        with pytest.raises(asyncio.CancelledError):
            await beating


@pytest.mark.parametrize("recorded", [True, False], ids=["finishing", "taken-over"])
async def test_a_file_whose_result_this_member_wrote_is_not_stopped(
    store: Store, recorded: bool
) -> None:
    me = Member(id=f"me-{os.getpid()}", host="node1", pid=os.getpid())
    generation = await store.join(me, lease=LEASE)
    await store.plan([_task("a.fastq.gz")], generation)
    (claim,) = await store.claim(me, generation, 1, lease=LEASE)
    pull = Pull(member=me, generation=generation, digest="d")
    pull.held[claim.task.key] = claim.fence
    # The download's last steps (its event, the source's hooks) after the store has
    # its result: the file is no longer held, and must not be stopped.
    job = asyncio.create_task(_forever())
    pull.jobs[claim.task.key] = job
    if recorded:
        assert await store.complete(
            claim.task.key, claim.fence, md5="a" * 32, size=1, verified_by="md5"
        )
        pull.recorded.add(claim.task.key)
    else:
        # Another member's claim after this one's lease: the file was taken over.
        await store.leave(me)
        generation = await store.join(me, lease=LEASE)
    await _beat_once(store, pull)
    await asyncio.sleep(0)
    assert job.cancelled() is not recorded
    job.cancel()
