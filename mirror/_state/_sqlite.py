"""SQLite state store (WAL), driven from one dedicated thread so the loop never blocks."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from .._exceptions import StateError
from .._models import FileTask, TaskStatus
from ._base import PlannedFile, StoredFile

__all__ = ["SQLiteStore"]

T = TypeVar("T")
SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    path        TEXT PRIMARY KEY,
    source      TEXT NOT NULL,
    accession   TEXT NOT NULL,
    url         TEXT NOT NULL,
    size        INTEGER,
    checksum    TEXT,
    verify      TEXT NOT NULL,
    status      TEXT NOT NULL DEFAULT 'pending',
    md5         TEXT,
    bytes       INTEGER,
    verified_by TEXT,
    reason      TEXT,
    validator   TEXT,
    root        TEXT,
    run         INTEGER NOT NULL DEFAULT 0,
    updated     REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS files_run ON files (run, status);
CREATE TABLE IF NOT EXISTS problems (
    run     INTEGER NOT NULL,
    kind    TEXT NOT NULL,
    message TEXT NOT NULL,
    at      REAL NOT NULL
);
"""
_COLUMNS = (
    "path, source, accession, url, size, checksum, verify, status, md5, bytes, verified_by,"
    " reason, root"
)


@contextlib.contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    """One write transaction: all of the block's statements land, or none.

    The connection runs in autocommit mode (``isolation_level=None``), where
    ``with db:`` opens no transaction at all and every statement commits alone.
    ``BEGIN IMMEDIATE`` takes the write lock before the first read, so a
    read-then-write (the next run number, a file's earlier status) cannot
    interleave with another process sharing the store.
    """
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


class SQLiteStore:
    """The default :class:`~mirror._state.Store`: ``dest/.mirror/state.sqlite``.

    Every statement runs on one thread of its own (sqlite3 connections are bound to
    their thread), so the event loop only ever awaits a future. WAL with
    ``synchronous=NORMAL``: a commit survives a killed process; a power loss may
    lose the last commits, never corrupt the file (sqlite.org/wal.html). Losing a
    ``verified`` mark costs one re-download of that file, never a wrong file.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mirror-sqlite")

    async def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def run() -> T:
            if self._db is None:
                raise StateError(f"state store {self.path} is closed")
            try:
                return fn(self._db)
            # OverflowError: an integer SQLite cannot store (a size past 2**63).
            except (sqlite3.Error, OverflowError) as exc:
                raise StateError(self._describe(exc)) from exc

        return await asyncio.get_running_loop().run_in_executor(self._thread, run)

    def _describe(self, exc: BaseException, doing: str = "state store") -> str:
        """One line for a failed statement; a full disk says where and how much is left."""
        if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
            try:
                free = f"{_mib(shutil.disk_usage(self.path.parent).free)} free"
            except OSError:
                free = "free space unknown"
            return (
                f"{doing} {self.path}: the disk is full ({free} on {self.path.parent}); "
                "free some space and re-run to resume"
            )
        return f"{doing} {self.path}: {exc}"

    async def open(self) -> None:
        def connect() -> None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                db.execute("PRAGMA busy_timeout=10000")
                # Two processes opening one new store must not both create or migrate it.
                with _transaction(db):
                    for statement in _SCHEMA.split(";"):
                        if statement.strip():
                            db.execute(statement)
                    columns = {r[1] for r in db.execute("PRAGMA table_info(files)")}
                    if "root" not in columns:  # stores written before the reference cache
                        db.execute("ALTER TABLE files ADD COLUMN root TEXT")
                    # A file under a root of its own is keyed by root/path (FileTask.key);
                    # stores written before keyed it by the path alone: re-key them once.
                    if db.execute("SELECT 1 FROM meta WHERE key='rooted_keys'").fetchone() is None:
                        db.execute(
                            "UPDATE files SET path = rtrim(root, '/') || '/' || path"
                            " WHERE root IS NOT NULL AND substr(path, 1, 1) != '/'"
                        )
                        db.execute("INSERT INTO meta VALUES ('rooted_keys', '1')")
                    row = db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
                    if row is None:
                        db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
                    elif int(row[0]) > SCHEMA_VERSION:
                        raise StateError(
                            f"state store {self.path} was written by a newer ebi-mirror "
                            f"(schema {row[0]}); upgrade ebi-mirror"
                        )
            except (sqlite3.Error, OSError) as exc:
                raise StateError(self._describe(exc, "cannot open state store")) from exc
            self._db = db

        await asyncio.get_running_loop().run_in_executor(self._thread, connect)

    async def aclose(self) -> None:
        def close() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        try:
            await asyncio.get_running_loop().run_in_executor(self._thread, close)
        finally:
            self._thread.shutdown(wait=False)

    async def begin_run(self) -> int:
        def begin(db: sqlite3.Connection) -> int:
            with _transaction(db):
                row = db.execute("SELECT value FROM meta WHERE key='run'").fetchone()
                run = int(row[0]) + 1 if row else 1
                db.execute("INSERT OR REPLACE INTO meta VALUES ('run', ?)", (str(run),))
            return run

        return await self._call(begin)

    async def last_run(self) -> int:
        def last(db: sqlite3.Connection) -> int:
            row = db.execute("SELECT value FROM meta WHERE key='run'").fetchone()
            return int(row[0]) if row else 0

        return await self._call(last)

    async def plan(self, tasks: Sequence[FileTask], run: int) -> list[PlannedFile]:
        def plan(db: sqlite3.Connection) -> list[PlannedFile]:
            now = time.time()
            out: list[PlannedFile] = []
            with _transaction(db):
                for task in tasks:
                    row = db.execute(
                        "SELECT status, checksum, size, run, md5, bytes, verified_by FROM files"
                        " WHERE path=?",
                        (task.key,),
                    ).fetchone()
                    if row is None:
                        db.execute(
                            "INSERT INTO files (path, source, accession, url, size, checksum,"
                            " verify, root, run, updated) VALUES (?,?,?,?,?,?,?,?,?,?)",
                            (
                                task.key,
                                task.source,
                                task.accession,
                                task.url,
                                task.size,
                                task.checksum,
                                task.verify,
                                task.root,
                                run,
                                now,
                            ),
                        )
                        out.append(
                            PlannedFile(task=task, status=TaskStatus.PENDING, md5=None, bytes=None)
                        )
                        continue
                    status, checksum, size, seen_run, md5, nbytes, verified_by = row
                    if seen_run == run:
                        continue  # planned twice in one run (a study and one of its runs)
                    status = TaskStatus(status)
                    if status is TaskStatus.VERIFIED and (
                        checksum != task.checksum or (task.size is not None and size != task.size)
                    ):
                        # The archive now describes a different file: fetch it again.
                        status = TaskStatus.PENDING
                    db.execute(
                        "UPDATE files SET source=?, accession=?, url=?, size=?, checksum=?,"
                        " verify=?, root=?, run=?, status=?, updated=? WHERE path=?",
                        (
                            task.source,
                            task.accession,
                            task.url,
                            task.size,
                            task.checksum,
                            task.verify,
                            task.root,
                            run,
                            status.value,
                            now,
                            task.key,
                        ),
                    )
                    out.append(
                        PlannedFile(
                            task=task,
                            status=status,
                            md5=md5,
                            bytes=nbytes,
                            verified_by=verified_by if status is TaskStatus.VERIFIED else None,
                        )
                    )
            return out

        return await self._call(plan)

    async def _update(self, sql: str, args: tuple[object, ...]) -> None:
        def update(db: sqlite3.Connection) -> None:
            with _transaction(db):
                db.execute(sql, args)

        await self._call(update)

    async def mark_verified(self, path: str, *, md5: str, size: int, verified_by: str) -> None:
        await self._update(
            "UPDATE files SET status='verified', md5=?, bytes=?, verified_by=?, reason=NULL,"
            " validator=NULL, updated=? WHERE path=?",
            (md5, size, verified_by, time.time(), path),
        )

    async def mark_failed(self, path: str, reason: str) -> None:
        await self._update(
            "UPDATE files SET status='failed', reason=?, updated=? WHERE path=?",
            (reason, time.time(), path),
        )

    async def mark_pending(self, path: str) -> None:
        await self._update(
            "UPDATE files SET status='pending', md5=NULL, verified_by=NULL, updated=? WHERE path=?",
            (time.time(), path),
        )

    async def get_validator(self, path: str) -> str | None:
        def get(db: sqlite3.Connection) -> str | None:
            row = db.execute("SELECT validator FROM files WHERE path=?", (path,)).fetchone()
            return row[0] if row else None

        return await self._call(get)

    async def set_validator(self, path: str, validator: str | None) -> None:
        await self._update("UPDATE files SET validator=? WHERE path=?", (validator, path))

    async def counts(self, run: int | None) -> dict[TaskStatus, tuple[int, int]]:
        def counts(db: sqlite3.Connection) -> dict[TaskStatus, tuple[int, int]]:
            out = {status: (0, 0) for status in TaskStatus}
            sql = "SELECT status, COUNT(*), COALESCE(SUM(COALESCE(bytes, size)), 0) FROM files"
            if run is None:
                rows = db.execute(sql + " GROUP BY status")
            else:
                rows = db.execute(sql + " WHERE run=? GROUP BY status", (run,))
            for status, n, nbytes in rows:
                out[TaskStatus(status)] = (n, nbytes)
            return out

        return await self._call(counts)

    async def record_problem(self, run: int, kind: str, message: str) -> None:
        await self._update(
            "INSERT INTO problems (run, kind, message, at) VALUES (?,?,?,?)",
            (run, kind, message, time.time()),
        )

    async def problems(self) -> list[tuple[str, str]]:
        def problems(db: sqlite3.Connection) -> list[tuple[str, str]]:
            rows = db.execute(
                # The latest run that planned anything or met a problem: a problem
                # that a later plan no longer met is history, not the pull's state.
                "SELECT kind, message FROM problems WHERE run = (SELECT MAX(r) FROM"
                " (SELECT MAX(run) AS r FROM files UNION ALL SELECT MAX(run) FROM problems))"
                " ORDER BY rowid"
            ).fetchall()
            return [(str(k), str(m)) for k, m in rows]

        return await self._call(problems)

    async def files(
        self, run: int | None, *, with_verified: bool = False
    ) -> AsyncIterator[StoredFile]:
        if run is None:
            where = "(run=? OR 1)"
        else:
            where = "(run=? OR status='verified')" if with_verified else "run=?"
        after = ""
        while True:

            def page(db: sqlite3.Connection, after: str = after) -> list[tuple[object, ...]]:
                return db.execute(
                    f"SELECT {_COLUMNS} FROM files WHERE {where} AND path>? ORDER BY path"
                    " LIMIT 2000",
                    (run or 0, after),
                ).fetchall()

            rows = await self._call(page)
            if not rows:
                return
            for row in rows:
                yield _stored(row)
            after = str(rows[-1][0])


def _mib(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB"


def _stored(row: tuple[object, ...]) -> StoredFile:
    (
        path,
        source,
        accession,
        url,
        size,
        checksum,
        verify,
        status,
        md5,
        nbytes,
        verified_by,
        reason,
        root,
    ) = row
    relative = str(path)  # the ``path`` column holds FileTask.key: root/path with a root
    if isinstance(root, str) and relative.startswith(root.rstrip("/") + "/"):
        relative = relative[len(root.rstrip("/")) + 1 :]
    return StoredFile(
        path=relative,
        source=str(source),
        accession=str(accession),
        url=str(url),
        size=size if isinstance(size, int) else None,
        checksum=checksum if isinstance(checksum, str) else None,
        verify=str(verify),
        status=TaskStatus(str(status)),
        md5=md5 if isinstance(md5, str) else None,
        bytes=nbytes if isinstance(nbytes, int) else None,
        verified_by=verified_by if isinstance(verified_by, str) else None,
        reason=reason if isinstance(reason, str) else None,
        root=root if isinstance(root, str) else None,
    )
