"""The SQLite state store: where it lives, stores written by earlier versions, errors.

What every backend promises is in test_store_contract.py.
"""

from __future__ import annotations

import os
import sqlite3
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
    write_schema_1(
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


async def test_a_closed_store_says_so(tmp_path: Path) -> None:
    store = await open_store(None, tmp_path)
    await store.aclose()
    with pytest.raises(StateError, match="is closed"):
        await store.generation()
