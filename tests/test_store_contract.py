"""The Store contract, run against every backend: what any number of processes sharing
one pull through the store rely on.

Leases here are short (tenths of a second) where a test waits one out, and long where
a lease must not run out during the test; a test waits only for a lease it set, and
compares against the lease's expiry as the store wrote it.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mirror._models import FileTask, TaskStatus
from mirror._state import Claim, Member, PullProgress, Store, StoredFile, open_store

#: Long enough never to run out during a test.
LONG = 60.0
#: Short enough to wait out.
SHORT = 0.2


@dataclass(frozen=True)
class Backend:
    """A fresh, empty store; ``open`` may be called again for another connection to it
    (another process of the same pull)."""

    name: str
    url: str
    dest: Path

    async def open(self) -> Store:
        return await open_store(self.url, self.dest)


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        url = str(tmp_path / "state.sqlite")
    else:
        # A fresh database on a real server, from tests/postgres.py.
        url = request.getfixturevalue("postgres_url")
    return Backend(request.param, url, tmp_path / "data")


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[Store]:
    opened = await backend.open()
    try:
        yield opened
    finally:
        await opened.aclose()


@pytest.fixture
async def other(backend: Backend) -> AsyncIterator[Store]:
    """A second connection to the same store, as another process would hold."""
    opened = await backend.open()
    try:
        yield opened
    finally:
        await opened.aclose()


def member(name: str) -> Member:
    return Member(id=f"{name}-{os.getpid()}", host="node1", pid=os.getpid())


def task(path: str, *, md5: str = "a" * 32, size: int = 10, **extra: object) -> FileTask:
    return FileTask(
        source="ena",
        accession="ERR000001",
        url=f"https://h/{path}",
        path=path,
        size=size,
        checksum=md5,
        **extra,  # type: ignore[arg-type]
    )


def paths(n: int, prefix: str = "f") -> list[FileTask]:
    return [task(f"{prefix}{i:04d}") for i in range(n)]


async def row(store: Store, key: str) -> StoredFile:
    (found,) = [f async for f in store.files(None) if f.location == key]
    return found


async def wait_out(store: Store, key: str) -> None:
    """Sleep until the lease the store wrote for ``key`` has run out."""
    until = (await row(store, key)).lease_until
    assert until is not None
    await asyncio.sleep(max(0.0, until - time.time()) + 0.05)


async def done(store: Store, claim: Claim) -> bool:
    return await store.complete(
        claim.task.key, claim.fence, md5="b" * 32, size=10, verified_by="md5"
    )


async def drain(store: Store, who: Member, generation: int, n: int) -> list[str]:
    """Claim and complete until nothing is left; the keys this member got."""
    got: list[str] = []
    while claims := await store.claim(who, generation, n, lease=LONG):
        for claim in claims:
            got.append(claim.task.key)
            assert await done(store, claim)
    return got


# -- the work queue --------------------------------------------------------------------


async def test_claims_come_in_planning_order_and_skip_held_and_verified_files(
    store: Store,
) -> None:
    a = member("a")
    generation = await store.join(a, lease=LONG)
    await store.plan([task("z"), task("m"), task("a")], generation)
    await store.plan([task("b")], generation)
    first = await store.claim(a, generation, 2, lease=LONG)
    assert [c.task.key for c in first] == ["z", "m"]
    assert await done(store, first[0])
    rest = await store.claim(a, generation, 5, lease=LONG)
    assert [c.task.key for c in rest] == ["a", "b"]
    assert await store.claim(a, generation, 5, lease=LONG) == []
    assert (await row(store, "m")).status is TaskStatus.RUNNING
    assert (await row(store, "m")).holder == a.id


async def test_concurrent_claimers_on_two_connections_never_share_a_file(
    store: Store, other: Store
) -> None:
    first = member("first")
    generation = await store.join(first, lease=LONG)
    await store.plan(paths(300), generation)
    claimers = [(s, member(f"{s is store}-{i}")) for i in range(4) for s in (store, other)]
    for s, who in claimers:
        assert await s.join(who, lease=LONG) == generation
    got = await asyncio.gather(*(drain(s, who, generation, 3) for s, who in claimers))
    keys = Counter(k for part in got for k in part)
    assert sorted(keys) == [t.key for t in paths(300)]
    assert set(keys.values()) == {1}
    # Every claimer had a share: they really ran side by side.
    assert sum(1 for part in got if part) > 1
    assert (await store.counts(generation))[TaskStatus.VERIFIED] == (300, 3000)


FILES_FOR_PROCESSES = 150

_CLAIMER = """
import asyncio, json, os, sys
from pathlib import Path
from mirror._state import Member, open_store

async def main(url: str, dest: str, generation: int) -> None:
    store = await open_store(url, Path(dest))
    me = Member(id=f"proc-{os.getpid()}", host="node1", pid=os.getpid())
    await store.join(me, lease=60)
    print("ready", flush=True)
    sys.stdin.readline()
    got = []
    try:
        while claims := await store.claim(me, generation, 2, lease=60):
            for c in claims:
                got.append(c.task.key)
                if not await store.complete(
                    c.task.key, c.fence, md5="b" * 32, size=10, verified_by="md5"
                ):
                    got.append("LOST " + c.task.key)
    finally:
        await store.leave(me)
        await store.aclose()
    print(json.dumps(got), flush=True)

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


@pytest.mark.slow  # runs the mirror command (and the emulator) in child processes, as a user would
async def test_claimers_in_several_processes_never_share_a_file(
    backend: Backend, store: Store
) -> None:
    lead = member("lead")
    generation = await store.join(lead, lease=LONG)
    # Enough that the three claim side by side for a while (each takes two at a time).
    await store.plan(paths(FILES_FOR_PROCESSES), generation)

    def run() -> list[list[str]]:
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", _CLAIMER, backend.url, str(backend.dest), str(generation)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(3)
        ]
        try:
            for proc in procs:  # every one has joined: start them together
                assert proc.stdout is not None
                assert proc.stdout.readline() == "ready\n"
            for proc in procs:
                assert proc.stdin is not None
                proc.stdin.write("go\n")
                proc.stdin.close()
            # Each writes one short line at its end: no pipe fills while another is read.
            outs = [proc.stdout.read() for proc in procs if proc.stdout is not None]
            for proc in procs:
                proc.wait(timeout=60)
        finally:
            for proc in procs:
                proc.kill()
                proc.wait()
                if proc.stdout is not None:
                    proc.stdout.close()
        assert [proc.returncode for proc in procs] == [0, 0, 0]
        return [json.loads(out) for out in outs]

    got = await asyncio.to_thread(run)
    keys = Counter(k for part in got for k in part)
    assert sorted(keys) == [t.key for t in paths(FILES_FOR_PROCESSES)]
    assert set(keys.values()) == {1}
    assert sum(1 for part in got if part) > 1
    assert (await store.counts(generation))[TaskStatus.VERIFIED] == (
        FILES_FOR_PROCESSES,
        10 * FILES_FOR_PROCESSES,
    )


async def test_an_expired_lease_goes_to_another_member_and_fences_the_first(
    store: Store, other: Store
) -> None:
    a, b = member("a"), member("b")
    generation = await store.join(a, lease=LONG)
    await other.join(b, lease=LONG)
    await store.plan([task("x")], generation)
    (mine,) = await store.claim(a, generation, 1, lease=SHORT)
    # Held: nobody else gets it while the lease runs.
    assert await other.claim(b, generation, 1, lease=LONG) == []
    await wait_out(store, "x")
    (theirs,) = await other.claim(b, generation, 1, lease=LONG)
    assert theirs.task == mine.task
    assert theirs.fence > mine.fence
    # The first holder comes back too late: neither its result nor its failure lands.
    assert not await done(store, mine)
    assert not await store.fail("x", mine.fence, "too late")
    late = await row(store, "x")
    assert (late.status, late.holder, late.md5, late.reason) == (
        TaskStatus.RUNNING,
        b.id,
        None,
        None,
    )
    assert await other.complete("x", theirs.fence, md5="c" * 32, size=10, verified_by="md5")
    landed = await row(store, "x")
    assert (landed.status, landed.md5, landed.holder) == (TaskStatus.VERIFIED, "c" * 32, None)
    # A result lands once: the same claim cannot write it again.
    assert not await store.fail("x", theirs.fence, "twice")
    assert (await row(store, "x")).status is TaskStatus.VERIFIED


async def test_unfenced_results_always_land(store: Store) -> None:
    a = member("a")
    generation = await store.join(a, lease=LONG)
    await store.plan([task("x"), task("y")], generation)
    assert await store.fail("x", None, "unsafe name")
    assert await store.complete("y", None, md5="b" * 32, size=10, verified_by="md5")
    assert [(f.location, f.status, f.reason) async for f in store.files(generation)] == [
        ("x", TaskStatus.FAILED, "unsafe name"),
        ("y", TaskStatus.VERIFIED, None),
    ]
    assert await store.claim(a, generation, 5, lease=LONG) == []


async def test_heartbeat_renews_leases_and_names_the_files_taken_over(
    store: Store, other: Store
) -> None:
    a, b = member("a"), member("b")
    generation = await store.join(a, lease=LONG)
    await other.join(b, lease=LONG)
    await store.plan([task("x"), task("y")], generation)
    claims = await store.claim(a, generation, 2, lease=SHORT)
    assert [c.task.key for c in claims] == ["x", "y"]
    await wait_out(store, "y")
    # b takes one expired file; a's heartbeat then renews the other for good.
    (taken,) = await other.claim(b, generation, 1, lease=LONG)
    assert taken.task.key == "x"
    beat = await store.heartbeat(a, lease=LONG, sees=2)
    assert beat.held == frozenset({"y"})
    assert beat.members == 2
    renewed = (await row(store, "y")).lease_until
    assert renewed is not None
    assert renewed > time.time() + LONG / 2
    assert await other.claim(b, generation, 1, lease=LONG) == []
    assert await done(store, claims[1])
    assert not await done(store, claims[0])


async def test_heartbeat_settles_once_every_member_sees_the_count(
    store: Store, other: Store
) -> None:
    a, b = member("a"), member("b")
    await store.join(a, lease=LONG)
    alone = await store.heartbeat(a, lease=LONG, sees=1)
    assert (alone.members, alone.settled) == (1, True)
    await other.join(b, lease=LONG)
    # b joined: a has not applied two members yet, b has not acknowledged them.
    first = await other.heartbeat(b, lease=LONG, sees=2)
    assert (first.members, first.settled) == (2, False)
    seen = await store.heartbeat(a, lease=LONG, sees=2)
    assert (seen.members, seen.settled) == (2, True)
    assert (await other.heartbeat(b, lease=LONG, sees=2)).settled


async def test_leave_puts_back_only_the_files_the_member_held(store: Store, other: Store) -> None:
    a, b = member("a"), member("b")
    generation = await store.join(a, lease=LONG)
    await other.join(b, lease=LONG)
    await store.plan(paths(5), generation)
    mine = await store.claim(a, generation, 3, lease=LONG)
    theirs = await other.claim(b, generation, 1, lease=LONG)
    await store.leave(a)
    assert [m.id for m in await other.members(lease=LONG)] == [b.id]
    counts = await other.counts(generation)
    assert (counts[TaskStatus.PENDING][0], counts[TaskStatus.RUNNING][0]) == (4, 1)
    again = await other.claim(b, generation, 5, lease=LONG)
    assert sorted(c.task.key for c in again) == sorted([c.task.key for c in mine] + ["f0004"])
    assert await done(other, theirs[0])


async def test_members_are_listed_with_what_they_hold(store: Store, other: Store) -> None:
    a, b = member("a"), member("b")
    generation = await store.join(a, lease=LONG)
    await other.join(b, lease=LONG)
    await store.plan(paths(3), generation)
    await store.claim(a, generation, 2, lease=LONG)
    assert await store.plan_turn(b, generation, "manifest", lease=LONG)
    listed = await store.members(lease=LONG)
    assert [(m.id, m.host, m.pid, m.held, m.planning) for m in listed] == [
        (a.id, "node1", os.getpid(), 2, False),
        (b.id, "node1", os.getpid(), 0, True),
    ]
    assert all(m.started <= m.heartbeat <= time.time() for m in listed)


async def test_a_member_that_stopped_heartbeating_is_not_listed(store: Store) -> None:
    a, b = member("a"), member("b")
    await store.join(a, lease=SHORT)
    await store.join(b, lease=SHORT)
    await asyncio.sleep(SHORT + 0.05)
    await store.heartbeat(b, lease=SHORT, sees=1)
    assert [m.id for m in await store.members(lease=SHORT)] == [b.id]


# -- generations and planning ------------------------------------------------------------


async def test_join_starts_a_generation_only_when_no_other_member_is_live(
    store: Store, other: Store
) -> None:
    a, b, c, d = member("a"), member("b"), member("c"), member("d")
    assert await store.generation() == 0
    assert await store.join(a, lease=LONG) == 1
    assert await other.join(b, lease=LONG) == 1
    await store.leave(a)
    assert await store.join(c, lease=LONG) == 1  # b is still live
    await other.leave(b)
    await store.leave(c)
    assert await other.join(d, lease=SHORT) == 2
    # d stops heartbeating: the next member finds nobody live.
    await asyncio.sleep(SHORT + 0.05)
    assert await store.join(a, lease=SHORT) == 3
    assert await other.generation() == 3


async def test_members_joining_together_share_one_generation(store: Store, other: Store) -> None:
    # Each join reads whether anyone is live and may start a generation: two
    # connections must never both see nobody and both start one.
    joined = await asyncio.gather(
        *(
            s.join(member(f"m{i}-{s is store}"), lease=LONG)
            for i in range(40)
            for s in (store, other)
        )
    )
    assert set(joined) == {1}


async def test_one_member_plans_the_others_wait_a_dead_planner_is_taken_over(
    store: Store, other: Store
) -> None:
    a, b, c = member("a"), member("b"), member("c")
    generation = await store.join(a, lease=LONG)
    await other.join(b, lease=LONG)
    assert await store.plan_turn(a, generation, "m1", lease=LONG)
    assert not await other.plan_turn(b, generation, "m1", lease=LONG)
    # Another manifest is planned on its own.
    assert await other.plan_turn(b, generation, "m2", lease=LONG)
    assert (await store.progress(generation, lease=LONG)).planning
    await store.plan_done(a, generation, "m1")
    await other.plan_done(b, generation, "m2")
    assert not (await store.progress(generation, lease=LONG)).planning
    assert not await other.plan_turn(b, generation, "m1", lease=LONG)
    assert not await store.plan_turn(a, generation, "m2", lease=LONG)
    # a plans m3 and stops heartbeating before it is done: c takes the plan over.
    assert await store.plan_turn(a, generation, "m3", lease=SHORT)
    await other.join(c, lease=LONG)
    assert not await other.plan_turn(c, generation, "m3", lease=LONG)
    await asyncio.sleep(SHORT + 0.05)
    assert not (await store.progress(generation, lease=SHORT)).planning
    assert await other.plan_turn(c, generation, "m3", lease=SHORT)
    assert not await store.plan_turn(b, generation, "m3", lease=LONG)


async def test_progress_counts_what_is_left(store: Store) -> None:
    a = member("a")
    generation = await store.join(a, lease=LONG)
    assert await store.plan_turn(a, generation, "m", lease=LONG)
    await store.plan(paths(4), generation)
    (first,) = await store.claim(a, generation, 1, lease=LONG)
    assert await store.progress(generation, lease=LONG) == PullProgress(
        pending=3, running=1, planning=True
    )
    assert await done(store, first)
    await store.plan_done(a, generation, "m")
    progress = await store.progress(generation, lease=LONG)
    assert (progress.pending, progress.running, progress.planning) == (3, 0, False)


async def test_plan_is_idempotent(store: Store, other: Store) -> None:
    a = member("a")
    generation = await store.join(a, lease=LONG)
    first = await store.plan(paths(3), generation)
    assert [(p.task.key, p.status) for p in first] == [
        (t.key, TaskStatus.PENDING) for t in paths(3)
    ]
    before = await store.counts(generation)
    # Again, from another connection, with one new file among them.
    again = await other.plan([*paths(3), task("new")], generation)
    assert [p.task.key for p in again] == ["new"]
    assert await other.plan(paths(3), generation) == []
    after = await store.counts(generation)
    assert after[TaskStatus.PENDING] == (before[TaskStatus.PENDING][0] + 1, 40)
    assert [c.task.key for c in await store.claim(a, generation, 10, lease=LONG)] == [
        *(t.key for t in paths(3)),
        "new",
    ]


async def test_a_plan_that_fails_midway_leaves_nothing_planned(store: Store) -> None:
    generation = await store.join(member("a"), lease=LONG)
    # No backend stores a size past 2**63: the batch fails at its third row.
    with pytest.raises(Exception, match="state store"):
        await store.plan([task("a"), task("b"), task("c", size=2**64)], generation)
    assert [f async for f in store.files(generation)] == []
    assert [p.task.key for p in await store.plan([task("a")], generation)] == ["a"]


async def next_generation(store: Store, who: Member) -> int:
    await store.leave(who)
    return await store.join(who, lease=LONG)


async def test_verified_files_stay_verified_unless_the_archive_changed_them(
    store: Store,
) -> None:
    a = member("a")
    generation = await store.join(a, lease=LONG)
    await store.plan([task("same"), task("md5"), task("size"), task("earlier")], generation)
    for claim in await store.claim(a, generation, 4, lease=LONG):
        assert await done(store, claim)
    second = await next_generation(store, a)
    assert second == generation + 1
    again = await store.plan(
        [task("same"), task("md5", md5="c" * 32), task("size", size=11)], second
    )
    assert [(p.task.key, p.status) for p in again] == [
        ("same", TaskStatus.VERIFIED),
        ("md5", TaskStatus.PENDING),
        ("size", TaskStatus.PENDING),
    ]
    assert (again[0].md5, again[0].bytes, again[0].verified_by) == ("b" * 32, 10, "md5")
    assert [c.task.key for c in await store.claim(a, second, 5, lease=LONG)] == ["md5", "size"]
    counts = await store.counts(second)
    assert (counts[TaskStatus.VERIFIED][0], counts[TaskStatus.RUNNING][0]) == (1, 2)
    # The file this generation did not plan is still verified and on disk.
    assert [f.location async for f in store.files(second, with_verified=True)] == [
        "earlier",
        "md5",
        "same",
        "size",
    ]
    assert [f.location async for f in store.files(second)] == ["md5", "same", "size"]


async def test_failed_files_come_back_in_the_next_generation(store: Store) -> None:
    a = member("a")
    generation = await store.join(a, lease=LONG)
    await store.plan([task("x"), task("y")], generation)
    claims = await store.claim(a, generation, 2, lease=LONG)
    assert await store.fail("x", claims[0].fence, "MD5 mismatch")
    assert await done(store, claims[1])
    # Planned again in the same generation: nothing changes.
    assert await store.plan([task("x")], generation) == []
    assert (await row(store, "x")).status is TaskStatus.FAILED
    second = await next_generation(store, a)
    again = await store.plan([task("x"), task("y")], second)
    assert [(p.task.key, p.status) for p in again] == [
        ("x", TaskStatus.PENDING),
        ("y", TaskStatus.VERIFIED),
    ]
    (retry,) = await store.claim(a, second, 5, lease=LONG)
    assert retry.task.key == "x"


async def test_a_failed_file_keeps_its_validator_to_resume_from(store: Store) -> None:
    a = member("a")
    generation = await store.join(a, lease=LONG)
    await store.plan([task("x")], generation)
    (claim,) = await store.claim(a, generation, 1, lease=LONG)
    await store.set_validator("x", '{"etag": "1"}')
    assert await store.fail("x", claim.fence, "connection dropped mid-body")
    second = await next_generation(store, a)
    assert [p.status for p in await store.plan([task("x")], second)] == [TaskStatus.PENDING]
    # The .part the failed fetch left is resumed, not fetched again from byte 0.
    assert await store.get_validator("x") == '{"etag": "1"}'
    (retry,) = await store.claim(a, second, 1, lease=LONG)
    assert (await row(store, "x")).reason is None
    assert await done(store, retry)
    assert await store.get_validator("x") is None


async def test_a_running_file_keeps_its_holder_when_a_new_generation_plans_it(
    store: Store, other: Store
) -> None:
    slow, late = member("slow"), member("late")
    generation = await store.join(slow, lease=SHORT)
    await store.plan([task("x"), task("y")], generation)
    (held,) = await store.claim(slow, generation, 1, lease=LONG)
    # slow's heartbeat runs out (its file lease does not): late starts a new generation.
    await asyncio.sleep(SHORT + 0.05)
    second = await other.join(late, lease=SHORT)
    assert second == generation + 1
    again = await other.plan([task("x"), task("y")], second)
    assert [(p.task.key, p.status) for p in again] == [
        ("x", TaskStatus.RUNNING),
        ("y", TaskStatus.PENDING),
    ]
    assert (await row(other, "x")).holder == slow.id
    assert [c.task.key for c in await other.claim(late, second, 5, lease=LONG)] == ["y"]
    # The slow member still holds its claim and its result lands.
    assert await done(store, held)
    assert (await other.counts(second))[TaskStatus.VERIFIED] == (1, 10)


async def test_a_generation_hands_out_only_the_files_it_planned(store: Store) -> None:
    a = member("a")
    first = await store.join(a, lease=LONG)
    await store.plan([task("kept"), task("dropped")], first)
    second = await next_generation(store, a)
    await store.plan([task("kept")], second)
    assert [c.task.key for c in await store.claim(a, second, 5, lease=LONG)] == ["kept"]
    assert await store.claim(a, second, 5, lease=LONG) == []
    progress = await store.progress(second, lease=LONG)
    assert (progress.pending, progress.running) == (0, 1)
    assert [c.task.key for c in await store.claim(a, first, 5, lease=LONG)] == ["dropped"]


async def test_a_claim_rebuilds_the_task_as_planned(store: Store, tmp_path: Path) -> None:
    a = member("a")
    generation = await store.join(a, lease=LONG)
    cache = str(tmp_path / "hts-ref")
    planned = [
        task("aa/bb/0123", root=cache, mode=0o444, verify="size"),
        task("reads/x.fastq.gz", md5="d" * 32, size=2**40),
        FileTask(source="ega", accession="EGAF01", url="https://ega/f", path="e/f.cip"),
    ]
    await store.plan(planned[:2], generation, entry=3)
    await store.plan(planned[2:], generation, entry=0)
    claims = await store.claim(a, generation, 5, lease=LONG)
    assert [c.task for c in claims] == planned
    assert [c.entry for c in claims] == [3, 3, 0]
    assert claims[0].task.key == f"{cache}/aa/bb/0123"
    assert [f.location async for f in store.files(generation)] == sorted(t.key for t in planned)
    stored = await row(store, claims[0].task.key)
    assert (stored.path, stored.root, stored.verify) == ("aa/bb/0123", cache, "size")


async def test_validators_round_trip(store: Store) -> None:
    generation = await store.join(member("a"), lease=LONG)
    await store.plan([task("a")], generation)
    assert await store.get_validator("a") is None
    await store.set_validator("a", '{"etag": "1"}')
    assert await store.get_validator("a") == '{"etag": "1"}'
    await store.set_validator("a", None)
    assert await store.get_validator("a") is None


async def test_mark_pending_sends_a_verified_file_back_to_the_queue(store: Store) -> None:
    a = member("a")
    generation = await store.join(a, lease=LONG)
    await store.plan([task("a")], generation)
    (claim,) = await store.claim(a, generation, 1, lease=LONG)
    assert await done(store, claim)
    await store.mark_pending("a")
    (again,) = await store.claim(a, generation, 1, lease=LONG)
    assert again.task.key == "a"
    assert again.fence > claim.fence


# -- reading -------------------------------------------------------------------------------


async def test_counts_tally_and_files_by_generation_and_status(store: Store) -> None:
    a = member("a")
    first = await store.join(a, lease=LONG)
    await store.plan([task("old/kept", size=7), task("old/gone", size=5)], first)
    for claim in await store.claim(a, first, 2, lease=LONG):
        assert await store.complete(
            claim.task.key, claim.fence, md5="b" * 32, size=claim.task.size or 0, verified_by="md5"
        )
    second = await next_generation(store, a)
    await store.plan(
        [task("old/kept", size=7), task("d/x", size=100), task("d/y", size=200), task("e/z")],
        second,
    )
    claims = await store.claim(a, second, 3, lease=LONG)
    assert [c.task.key for c in claims] == ["d/x", "d/y", "e/z"]
    assert await store.complete("d/x", claims[0].fence, md5="b" * 32, size=90, verified_by="md5")
    assert await store.fail("d/y", claims[1].fence, "MD5 mismatch")

    counts = await store.counts(second)
    assert counts == {
        TaskStatus.PENDING: (0, 0),
        TaskStatus.RUNNING: (1, 10),
        TaskStatus.VERIFIED: (2, 97),  # the received size where known, else the planned one
        TaskStatus.FAILED: (1, 200),
    }
    assert (await store.counts(first))[TaskStatus.VERIFIED] == (1, 5)
    assert (await store.counts(None))[TaskStatus.VERIFIED] == (3, 102)
    assert await store.tally(second, "d/") == {
        TaskStatus.PENDING: 0,
        TaskStatus.RUNNING: 0,
        TaskStatus.VERIFIED: 1,
        TaskStatus.FAILED: 1,
    }
    assert (await store.tally(second, "old/"))[TaskStatus.VERIFIED] == 1
    assert (await store.tally(first, "old/"))[TaskStatus.VERIFIED] == 1
    assert [f.location async for f in store.files(second, status=TaskStatus.FAILED)] == ["d/y"]
    assert [
        (f.location, f.status) async for f in store.files(None, status=TaskStatus.VERIFIED)
    ] == [
        ("d/x", TaskStatus.VERIFIED),
        ("old/gone", TaskStatus.VERIFIED),
        ("old/kept", TaskStatus.VERIFIED),
    ]
    assert [f.location async for f in store.files(second, with_verified=True)] == [
        "d/x",
        "d/y",
        "e/z",
        "old/gone",
        "old/kept",
    ]
    (failed,) = [f async for f in store.files(None, status=TaskStatus.FAILED)]
    assert (failed.reason, failed.size, failed.md5) == ("MD5 mismatch", 200, None)
    (running,) = [f async for f in store.files(second, status=TaskStatus.RUNNING)]
    assert running.holder == a.id


async def test_files_pages_through_large_plans(store: Store) -> None:
    generation = await store.join(member("a"), lease=LONG)
    await store.plan(paths(4500), generation)
    listed = [f.location async for f in store.files(generation)]
    assert listed == [t.key for t in paths(4500)]


# -- pull-wide bookkeeping -----------------------------------------------------------------


async def test_once_is_true_for_one_caller_per_generation(store: Store, other: Store) -> None:
    a = member("a")
    generation = await store.join(a, lease=LONG)
    answers = await asyncio.gather(
        *(s.once(generation, "ega-request-label") for _ in range(20) for s in (store, other))
    )
    assert answers.count(True) == 1
    assert await store.once(generation, "another")
    second = await next_generation(store, a)
    assert await other.once(second, "ega-request-label")
    assert not await store.once(second, "ega-request-label")


async def test_problems_are_those_of_the_latest_generation(store: Store, other: Store) -> None:
    a = member("a")
    first = await store.join(a, lease=LONG)
    await store.record_problem(first, "error", "sources[0].ena: timed out")
    assert await other.problems() == [("error", "sources[0].ena: timed out")]
    second = await next_generation(store, a)
    await store.record_problem(second, "refused", "sources[1].ega: 401")
    await other.record_problem(second, "error", "sources[2].mgnify: 500")
    assert await store.problems() == [
        ("refused", "sources[1].ega: 401"),
        ("error", "sources[2].mgnify: 500"),
    ]
    # A later generation that planned without meeting any: the pull has none now.
    third = await next_generation(store, a)
    assert await store.plan_turn(a, third, "m", lease=LONG)
    await store.plan([task("x")], third)
    await store.plan_done(a, third, "m")
    assert await other.problems() == []


async def test_pulls_sharing_a_store_do_not_see_each_other(backend: Backend) -> None:
    # One store named by --state serves several mirrors: each dest is a pull of its own.
    one = await open_store(backend.url, backend.dest / "one")
    two = await open_store(backend.url, backend.dest / "two")
    try:
        a, b = member("a"), member("b")
        g1 = await one.join(a, lease=LONG)
        g2 = await two.join(b, lease=LONG)
        assert (g1, g2) == (1, 1)
        await one.plan([task("x")], g1)
        await two.plan([task("x"), task("y")], g2)
        assert [c.task.key for c in await one.claim(a, g1, 5, lease=LONG)] == ["x"]
        assert [c.task.key for c in await two.claim(b, g2, 5, lease=LONG)] == ["x", "y"]
        assert [m.id for m in await two.members(lease=LONG)] == [b.id]
        assert (await one.counts(None))[TaskStatus.RUNNING] == (1, 10)
        assert await one.once(g1, "label")
        assert await two.once(g2, "label")
    finally:
        await one.aclose()
        await two.aclose()
