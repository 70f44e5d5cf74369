"""The SQLite state store: where it lives, stores written by earlier versions, errors.

What every backend promises is in test_store_contract.py.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from mirror._exceptions import StateError
from mirror._models import FileTask, TaskStatus
from mirror._state import Member, open_store
from mirror._state._sqlite import SCHEMA_VERSION, SQLiteStore

from .state_schema_1 import Row1, write_schema_1

LONG = 60.0


def task(path: str, md5: str = "a" * 32, size: int = 10, root: str | None = None) -> FileTask:
    return FileTask(
        source="ena",
        accession="ERR000001",
        url=f"https://h/{path}",
        path=path,
        size=size,
        checksum=md5,
        root=root,
    )


def member(name: str) -> Member:
    return Member(id=name, host="node1", pid=os.getpid())


async def test_the_default_store_lives_in_the_mirror(tmp_path: Path) -> None:
    store = await open_store(None, tmp_path)
    try:
        assert isinstance(store, SQLiteStore)
        generation = await store.join(member("a"), lease=LONG)
        assert [p.task.path for p in await store.plan([task("a")], generation)] == ["a"]
    finally:
        await store.aclose()
    assert (tmp_path / ".mirror" / "state.sqlite").is_file()
    # The mirror moved elsewhere is still the same pull.
    (tmp_path / "moved").mkdir()
    os.rename(tmp_path / ".mirror", tmp_path / "moved" / ".mirror")
    moved = await open_store(None, tmp_path / "moved")
    try:
        assert [f.path async for f in moved.files(None)] == ["a"]
    finally:
        await moved.aclose()


async def test_a_store_named_by_url_lives_there(tmp_path: Path) -> None:
    store = await open_store(f"sqlite:///{tmp_path / 'elsewhere.sqlite'}", tmp_path / "d")
    try:
        generation = await store.join(member("a"), lease=LONG)
        await store.plan([task("a")], generation)
    finally:
        await store.aclose()
    assert (tmp_path / "elsewhere.sqlite").is_file()
    assert not (tmp_path / "d" / ".mirror").exists()


async def test_unknown_store_url_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StateError, match="unknown state store URL"):
        await open_store("mysql://x", tmp_path)


async def test_a_schema_1_store_keeps_its_runs_and_verified_files(tmp_path: Path) -> None:
    await asyncio.to_thread(
        write_schema_1,
        tmp_path / ".mirror" / "state.sqlite",
        [
            Row1("a", "verified", 3, md5="b" * 32, bytes=10, verified_by="md5"),
            Row1("b", "failed", 3, reason="MD5 mismatch"),
            Row1("c", "pending", 2, validator='{"etag": "1"}'),
            Row1("d", "verified", 1, md5="c" * 32, bytes=9, verified_by="size"),
            # Written before files under a root were keyed by root/path.
            Row1("aa/bb", "verified", 3, md5="d" * 32, bytes=10, verified_by="md5", root="/c/"),
        ],
        run=3,
        problems=[(2, "error", "old: gone"), (3, "refused", "sources[1].ega: 401")],
        rooted_keys=False,
    )
    store = await open_store(None, tmp_path)
    try:
        assert await store.generation() == 3
        counts = await store.counts(3)
        assert (counts[TaskStatus.VERIFIED], counts[TaskStatus.FAILED]) == ((2, 20), (1, 10))
        assert (await store.counts(None))[TaskStatus.VERIFIED] == (3, 29)
        assert [(f.location, f.status) async for f in store.files(3, with_verified=True)] == [
            ("/c/aa/bb", TaskStatus.VERIFIED),
            ("a", TaskStatus.VERIFIED),
            ("b", TaskStatus.FAILED),
            ("d", TaskStatus.VERIFIED),
        ]
        assert await store.problems() == [("refused", "sources[1].ega: 401")]
        assert await store.get_validator("c") == '{"etag": "1"}'
        # The next run: what was verified stays verified, the rest is fetched.
        me = member("a")
        generation = await store.join(me, lease=LONG)
        assert generation == 4
        planned = await store.plan(
            [task("a"), task("b"), task("c"), task("d"), task("aa/bb", root="/c")], generation
        )
        assert [(p.task.key, p.status, p.md5) for p in planned] == [
            ("a", TaskStatus.VERIFIED, "b" * 32),
            ("b", TaskStatus.PENDING, None),
            ("c", TaskStatus.PENDING, None),
            ("d", TaskStatus.VERIFIED, "c" * 32),
            ("/c/aa/bb", TaskStatus.VERIFIED, "d" * 32),
        ]
        claims = await store.claim(me, generation, 10, lease=LONG)
        assert [c.task.key for c in claims] == ["b", "c"]
    finally:
        await store.aclose()
    # Migrated once: opened again, nothing changes.
    again = await open_store(None, tmp_path)
    try:
        assert await again.generation() == 4
        assert (await again.counts(None))[TaskStatus.VERIFIED] == (3, 29)
    finally:
        await again.aclose()


async def test_a_store_of_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / ".mirror" / "state.sqlite"
    await (await open_store(None, tmp_path)).aclose()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value=? WHERE key='schema'", (str(SCHEMA_VERSION + 1),))
    db.close()
    with pytest.raises(StateError) as caught:
        await open_store(None, tmp_path)
    assert str(caught.value) == (
        f"state store {path} was written by a newer ebi-mirror "
        f"(schema {SCHEMA_VERSION + 1}); upgrade ebi-mirror"
    )


async def test_a_full_disk_says_where_and_how_much_is_free(tmp_path: Path) -> None:
    path = tmp_path / ".mirror" / "state.sqlite"
    store = SQLiteStore(path)
    await store.open()
    try:
        generation = await store.join(member("a"), lease=LONG)

        def limit(db: sqlite3.Connection) -> None:
            (count,) = db.execute("PRAGMA page_count").fetchone()
            db.execute(f"PRAGMA max_page_count={count}")

        await store._call(limit)
        with pytest.raises(StateError) as caught:
            await store.plan([task(f"f{i:05d}") for i in range(2000)], generation)
        message = str(caught.value)
        assert message.startswith(f"state store {path}: the disk is full ("), message
        assert message.endswith(
            f" MiB free on {path.parent}); free some space and re-run to resume"
        ), message
        assert "\n" not in message
        # Nothing of the batch landed; what fits still does.
        assert [f async for f in store.files(None)] == []
    finally:
        await store.aclose()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs."""
    where = tmp_path / "disk"
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


async def test_a_store_on_a_full_disk_can_still_be_read(small_disk: Path) -> None:
    dest = small_disk / "data"
    store = await open_store(None, dest)
    try:
        generation = await store.join(member("a"), lease=LONG)
        await store.plan([task(f"f{i}") for i in range(20)], generation)
    finally:
        await store.aclose()
    # A download filled the disk: what is left is the room SQLite needs to open a
    # store (its shared-memory index), nothing to write in it.
    fill = os.open(small_disk / "fill", os.O_WRONLY | os.O_CREAT)
    try:
        while os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize > 32 * 1024:
            os.write(fill, bytes(4096))
    finally:
        os.close(fill)
    again = await open_store(None, dest)  # `mirror status` still says where the pull stands
    try:
        assert (await again.counts(None))[TaskStatus.PENDING] == (20, 200)
        assert [m.id for m in await again.members(lease=LONG)] == ["a"]
    finally:
        await again.aclose()


async def test_a_closed_store_says_so(tmp_path: Path) -> None:
    store = await open_store(None, tmp_path)
    await store.aclose()
    with pytest.raises(StateError, match="is closed"):
        await store.generation()


def counted(path: Path) -> dict[tuple[int, str], tuple[int, int]]:
    """Files and bytes by generation and status, counted from the rows themselves."""
    with sqlite3.connect(path) as db:
        rows = db.execute(
            "SELECT generation, status, COUNT(*), SUM(COALESCE(bytes, size, 0)) FROM files"
            " GROUP BY generation, status"
        ).fetchall()
    db.close()
    return {(g, s): (n, b) for g, s, n, b in rows}


async def kept(store: SQLiteStore) -> dict[tuple[int, str], tuple[int, int]]:
    """The same, as the store keeps it for counts() and progress()."""

    def read(db: sqlite3.Connection) -> dict[tuple[int, str], tuple[int, int]]:
        rows = db.execute(
            "SELECT generation, status, files, bytes FROM tallies WHERE files != 0 OR bytes != 0"
        ).fetchall()
        return {(g, s): (n, b) for g, s, n, b in rows}

    return await store._call(read)


async def test_counts_kept_by_the_store_follow_every_change(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    store = SQLiteStore(path)
    await store.open()
    try:
        a, b = member("a"), member("b")
        first = await store.join(a, lease=LONG)
        await store.plan([task(f"f{i}", size=10 + i) for i in range(8)], first)
        claims = await store.claim(a, first, 6, lease=LONG)
        assert await store.complete("f0", claims[0].fence, md5="b" * 32, size=3, verified_by="md5")
        assert await store.complete("f1", claims[1].fence, md5="b" * 32, size=4, verified_by="md5")
        assert await store.fail("f2", claims[2].fence, "MD5 mismatch")
        await store.join(b, lease=LONG)
        (taken,) = await store.claim(b, first, 1, lease=0.01)
        await store.leave(a)
        await store.mark_pending("f0")
        assert await kept(store) == counted(path)
        # b stops heartbeating: once its lease is out, a starts the next generation.
        await asyncio.sleep(0.05)
        second = await store.join(a, lease=0.02)
        assert second == first + 1
        await store.plan(
            [task("f0", size=10), task("f1", md5="c" * 32, size=11), task("f2", size=12)],
            second,
        )
        await store.plan([task(f"g{i}") for i in range(3)], second)
        await store.claim(a, second, 4, lease=LONG)
        assert await store.complete(taken.task.key, None, md5="d" * 32, size=1, verified_by="md5")
        assert await kept(store) == counted(path)
        counts = await store.counts(second)
        assert sum(n for n, _ in counts.values()) == 6
    finally:
        await store.aclose()


async def test_a_store_without_kept_counts_gets_them_on_opening(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    store = SQLiteStore(path)
    await store.open()
    try:
        generation = await store.join(member("a"), lease=LONG)
        await store.plan([task("a"), task("b", size=5)], generation)
    finally:
        await store.aclose()
    with sqlite3.connect(path) as db:
        db.execute("DROP TABLE tallies")
        for trigger in ("insert", "update", "delete"):
            db.execute(f"DROP TRIGGER files_tally_{trigger}")
    db.close()
    again = SQLiteStore(path)
    await again.open()
    try:
        assert (await again.counts(generation))[TaskStatus.PENDING] == (2, 15)
        assert await kept(again) == counted(path)
    finally:
        await again.aclose()


async def transactions(store: SQLiteStore) -> list[str]:
    """Every write transaction the store begins from now on (one entry each)."""
    begun: list[str] = []

    def trace(db: sqlite3.Connection) -> None:
        db.set_trace_callback(lambda sql: begun.append(sql) if sql == "BEGIN IMMEDIATE" else None)

    await store._call(trace)
    return begun


async def test_completions_that_arrive_together_share_one_transaction(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "state.sqlite")
    await store.open()
    try:
        a = member("a")
        generation = await store.join(a, lease=LONG)
        await store.plan([task(f"f{i}") for i in range(40)], generation)
        claims = await store.claim(a, generation, 40, lease=LONG)
        begun = await transactions(store)
        fences = [c.fence for c in claims]
        # One of them is no longer this process's: its fence is stale.
        fences[7] -= 1
        done = await asyncio.gather(
            *(
                store.complete(c.task.key, fence, md5="a" * 32, size=10, verified_by="md5")
                for c, fence in zip(claims, fences, strict=True)
            )
        )
        assert done == [i != 7 for i in range(40)]
        # Many workers finishing at once write one transaction, or a few, not one each.
        assert 1 <= len(begun) <= 3
        counts = await store.counts(generation)
        assert counts[TaskStatus.VERIFIED] == (39, 390)
        assert counts[TaskStatus.RUNNING] == (1, 10)
    finally:
        await store.aclose()


async def test_one_write_that_fails_leaves_the_others_of_its_transaction(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "state.sqlite")
    await store.open()
    try:
        a = member("a")
        generation = await store.join(a, lease=LONG)
        await store.plan([task(f"f{i}") for i in range(5)], generation)
        claims = await store.claim(a, generation, 5, lease=LONG)
        # A size SQLite cannot store fails its own completion only.
        sizes = [10, 10, 2**64, 10, 10]
        done = await asyncio.gather(
            *(
                store.complete(c.task.key, c.fence, md5="a" * 32, size=size, verified_by="md5")
                for c, size in zip(claims, sizes, strict=True)
            ),
            return_exceptions=True,
        )
        assert [d if isinstance(d, bool) else type(d) for d in done] == [
            True,
            True,
            StateError,
            True,
            True,
        ]
        assert (await store.counts(generation))[TaskStatus.VERIFIED] == (4, 40)
    finally:
        await store.aclose()


async def test_a_completion_asked_for_before_closing_is_written(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    store = SQLiteStore(path)
    await store.open()
    a = member("a")
    generation = await store.join(a, lease=LONG)
    await store.plan([task("a")], generation)
    (claim,) = await store.claim(a, generation, 1, lease=LONG)
    pending = asyncio.ensure_future(
        store.complete(claim.task.key, claim.fence, md5="a" * 32, size=10, verified_by="md5")
    )
    await asyncio.sleep(0)
    await store.aclose()
    assert await pending
    assert counted(path)[(generation, "verified")] == (1, 10)
