"""The SQLite store's reads, as plain functions of a connection and a pull's id.

The store runs them on its thread (:class:`~mirror._state._sqlite_base.SQLiteBase`), and
:func:`read_status` runs them directly: ``mirror status`` then opens the file read-only
and imports neither asyncio nor a thread pool, which would take longer than the reads.
Nothing here imports asyncio.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from .._models import TaskStatus
from ._base import MemberInfo, StoredFile
from ._sqlite_rows import COLUMNS, stored
from ._sqlite_schema import SCHEMA_VERSION

__all__ = [
    "BUSY_TIMEOUT",
    "StatusReads",
    "counts",
    "files_page",
    "members",
    "patiently",
    "problems",
    "read_status",
]

T = TypeVar("T")

#: How long a statement waits for a lock another process holds before giving up.
BUSY_TIMEOUT = 30.0


def patiently(fn: Callable[[sqlite3.Connection], T], db: sqlite3.Connection) -> T:
    """Run ``fn`` (one transaction, or reads), again while another process holds the lock.

    SQLite's own busy handler sleeps 1, 2, 5, 10... ms between tries: with several
    processes claiming, a waiter would sleep through many short transactions of the
    others. Trying again after a tenth of a millisecond, then less often, keeps the
    waits close to the transactions' own length.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT
    pause = 0.0001
    while True:
        try:
            return fn(db)
        except sqlite3.OperationalError as exc:
            code = getattr(exc, "sqlite_errorcode", None)
            if code is None or code & 0xFF not in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                raise
            if time.monotonic() >= deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 1.5, 0.005)


def counts(
    db: sqlite3.Connection, pull: int, generation: int | None
) -> dict[TaskStatus, tuple[int, int]]:
    """Files and bytes by status: of ``generation``, or of the whole pull (``None``)."""
    out = {status: (0, 0) for status in TaskStatus}
    sql = "SELECT status, SUM(files), SUM(bytes) FROM tallies WHERE pull=?"
    if generation is None:
        rows = db.execute(sql + " GROUP BY status", (pull,))
    else:
        rows = db.execute(sql + " AND generation=? GROUP BY status", (pull, generation))
    for status, n, nbytes in rows:
        out[TaskStatus(status)] = (int(n), int(nbytes))
    return out


def files_where(
    pull: int,
    generation: int | None,
    *,
    with_verified: bool = False,
    status: TaskStatus | None = None,
) -> tuple[str, tuple[object, ...]]:
    """The ``WHERE`` clause of :func:`files_page` and its parameters."""
    where = "pull=?"
    args: tuple[object, ...] = (pull,)
    if generation is not None:
        if with_verified:
            where += " AND (generation=? OR status='verified')"
        else:
            where += " AND generation=?"
        args += (generation,)
    if status is not None:
        where += " AND status=?"
        args += (status.value,)
    return where, args


def files_page(
    db: sqlite3.Connection, where: tuple[str, tuple[object, ...]], after: str, limit: int
) -> list[tuple[object, ...]]:
    """The next ``limit`` rows of files matching ``where`` (:func:`files_where`), by key."""
    sql, args = where
    return db.execute(
        f"SELECT {COLUMNS} FROM files WHERE {sql} AND key>? ORDER BY key LIMIT {int(limit)}",
        (*args, after),
    ).fetchall()


def members(db: sqlite3.Connection, pull: int, lease: float) -> list[MemberInfo]:
    """The members whose heartbeat is within ``lease``, with what each holds."""
    rows = db.execute(
        "SELECT m.id, m.host, m.pid, m.started, m.heartbeat,"
        " (SELECT COUNT(*) FROM files f WHERE f.pull=m.pull AND f.holder=m.id"
        "  AND f.status='running'),"
        " EXISTS (SELECT 1 FROM plans p WHERE p.pull=m.pull AND p.planner=m.id"
        "  AND NOT p.done)"
        " FROM members m WHERE m.pull=? AND m.heartbeat>=? ORDER BY m.started, m.id",
        (pull, time.time() - lease),
    ).fetchall()
    return [
        MemberInfo(
            id=str(i),
            host=str(h),
            pid=int(p),
            started=float(s),
            heartbeat=float(b),
            held=int(n),
            planning=bool(planning),
        )
        for i, h, p, s, b, n, planning in rows
    ]


def problems(db: sqlite3.Connection, pull: int) -> list[tuple[str, str]]:
    """The pull's problems (kind, message) of its latest generation."""
    rows = db.execute(
        # The latest generation that planned anything or met a problem: a problem
        # that a later plan no longer met is history, not the pull's state.
        "SELECT kind, message FROM problems WHERE pull=?1 AND generation = (SELECT"
        " MAX(g) FROM (SELECT MAX(generation) AS g FROM files WHERE pull=?1"
        " UNION ALL SELECT MAX(generation) FROM problems WHERE pull=?1"
        " UNION ALL SELECT MAX(generation) FROM plans WHERE pull=?1))"
        " ORDER BY rowid",
        (pull,),
    ).fetchall()
    return [(str(k), str(m)) for k, m in rows]


@dataclass(frozen=True)
class StatusReads:
    """What ``mirror status`` shows of a pull, read at one moment."""

    counts: dict[TaskStatus, tuple[int, int]]
    failed: list[StoredFile]
    problems: list[tuple[str, str]]
    members: list[MemberInfo]
    running: list[StoredFile]


def read_status(path: Path, pull: str, *, lease: float) -> StatusReads | None:
    """The pull's status from the store at ``path``, opened read-only.

    ``None`` when this cannot answer as the store itself would: a store that opening
    would create or migrate first, a pull it does not hold, or any error (the store,
    opened as usual, then says what is wrong in its own words).
    """
    try:
        db = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True, isolation_level=None)
    except sqlite3.Error:
        return None
    try:
        db.execute("PRAGMA busy_timeout=0")  # a lock is waited for by patiently
        return patiently(lambda db: _read(db, pull, lease), db)
    except sqlite3.Error:
        return None
    finally:
        db.close()


def _read(db: sqlite3.Connection, key: str, lease: float) -> StatusReads | None:
    # One read transaction: every figure is of the same moment, while writers go on.
    db.execute("BEGIN")
    try:
        tables = {
            name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
        if not {"meta", "pulls", "tallies"} <= tables:
            return None
        version = db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        if version is None or version[0] != str(SCHEMA_VERSION):
            return None
        row = db.execute("SELECT id FROM pulls WHERE key=?", (key,)).fetchone()
        if row is None:
            return None
        pull = int(row[0])
        return StatusReads(
            counts=counts(db, pull, None),
            failed=list(_files(db, pull, TaskStatus.FAILED)),
            problems=problems(db, pull),
            members=members(db, pull, lease),
            running=list(_files(db, pull, TaskStatus.RUNNING)),
        )
    finally:
        if db.in_transaction:
            db.execute("COMMIT")


def _files(db: sqlite3.Connection, pull: int, status: TaskStatus) -> Iterator[StoredFile]:
    where = files_where(pull, None, status=status)
    after = ""
    while rows := files_page(db, where, after, 2000):
        yield from (stored(row) for row in rows)
        after = str(rows[-1][0])
