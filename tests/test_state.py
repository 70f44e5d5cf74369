"""The SQLite state store: planning across runs, status transitions, counts."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from mirror._exceptions import StateError
from mirror._models import FileTask, TaskStatus
from mirror._state import open_store


def task(path: str, md5: str = "a" * 32, size: int = 10) -> FileTask:
    return FileTask(
        source="ena",
        accession="ERR000001",
        url=f"http://h/{path}",
        path=path,
        size=size,
        checksum=md5,
    )


async def test_plan_returns_new_files_once_per_run(tmp_path: Path) -> None:
    store = await open_store(None, tmp_path)
    try:
        run = await store.begin_run()
        first = await store.plan([task("a"), task("b")], run)
        assert [p.task.path for p in first] == ["a", "b"]
        # A study and one of its runs plan the same file: the second is dropped.
        assert await store.plan([task("a")], run) == []
        counts = await store.counts(run)
        assert counts[TaskStatus.PENDING] == (2, 20)
    finally:
        await store.aclose()
    assert (tmp_path / ".mirror" / "state.sqlite").is_file()


async def test_verified_survives_a_new_run_unless_the_archive_changed(tmp_path: Path) -> None:
    store = await open_store(None, tmp_path)
    try:
        run = await store.begin_run()
        await store.plan([task("a"), task("b")], run)
        await store.mark_verified("a", md5="a" * 32, size=10, verified_by="md5")
        await store.mark_verified("b", md5="a" * 32, size=10, verified_by="md5")
        run2 = await store.begin_run()
        assert run2 == run + 1
        again = await store.plan([task("a"), task("b", md5="b" * 32)], run2)
        status = {p.task.path: p.status for p in again}
        assert status == {"a": TaskStatus.VERIFIED, "b": TaskStatus.PENDING}
        assert again[0].md5 == "a" * 32
    finally:
        await store.aclose()


async def test_failed_rows_keep_their_reason(tmp_path: Path) -> None:
    store = await open_store(None, tmp_path)
    try:
        run = await store.begin_run()
        await store.plan([task("x/y.gz")], run)
        await store.mark_failed("x/y.gz", "MD5 mismatch")
        rows = [f async for f in store.files(run)]
        assert [(r.path, r.status, r.reason) for r in rows] == [
            ("x/y.gz", TaskStatus.FAILED, "MD5 mismatch")
        ]
        assert await store.last_run() == run
    finally:
        await store.aclose()


async def test_files_pages_through_large_plans(tmp_path: Path) -> None:
    store = await open_store(None, tmp_path)
    try:
        run = await store.begin_run()
        await store.plan([task(f"f{i:05d}") for i in range(4500)], run)
        paths = [f.path async for f in store.files(run)]
        assert len(paths) == 4500
        assert paths == sorted(paths)
    finally:
        await store.aclose()


async def test_validator_round_trip(tmp_path: Path) -> None:
    store = await open_store(f"sqlite:///{tmp_path / 'elsewhere.sqlite'}", tmp_path)
    try:
        run = await store.begin_run()
        await store.plan([task("a")], run)
        assert await store.get_validator("a") is None
        await store.set_validator("a", '"etag-1"')
        assert await store.get_validator("a") == '"etag-1"'
    finally:
        await store.aclose()
    assert (tmp_path / "elsewhere.sqlite").is_file()


async def test_unknown_store_url_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StateError, match="unknown state store URL"):
        await open_store("mysql://x", tmp_path)
    with pytest.raises(StateError, match="PostgreSQL"):
        await open_store("postgresql://db/mirror", tmp_path)


async def test_a_batch_that_fails_midway_leaves_nothing_planned(tmp_path: Path) -> None:
    # SQLite cannot hold the third size: the batch fails at its third row, after two
    # rows were written. One batch is one transaction: none of it may stay.
    store = await open_store(None, tmp_path)
    try:
        run = await store.begin_run()
        with pytest.raises(StateError, match="state store"):
            await store.plan([task("a"), task("b"), task("c", size=2**64)], run)
        assert [f.path async for f in store.files(run)] == []
        assert await store.counts(run) == {status: (0, 0) for status in TaskStatus}
        # The store is still usable: the next batch plans normally.
        assert [p.task.path for p in await store.plan([task("a")], run)] == ["a"]
    finally:
        await store.aclose()


async def test_two_connections_never_start_the_same_run(tmp_path: Path) -> None:
    # begin_run reads the last run number and writes the next: two processes sharing a
    # store must never both read N and both write N + 1.
    first = await open_store(None, tmp_path)
    second = await open_store(None, tmp_path)
    try:
        runs = await asyncio.gather(
            *(store.begin_run() for _ in range(150) for store in (first, second))
        )
    finally:
        await first.aclose()
        await second.aclose()
    assert sorted(runs) == list(range(1, 301))
