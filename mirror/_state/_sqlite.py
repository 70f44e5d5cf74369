"""SQLite state store (WAL), driven from one dedicated thread so the loop never blocks.

Several processes on one host share a pull through one file: every read-then-write
runs in a ``BEGIN IMMEDIATE`` transaction, which takes SQLite's single write lock
before its first read, so two claimers can never both see a file pending. A network
filesystem does not give SQLite working locks: pulls across machines need PostgreSQL.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .._exceptions import StateError
from .._models import FileTask, TaskStatus
from . import _sqlite_reads as reads
from ._base import (
    Claim,
    Heartbeat,
    Member,
    MemberInfo,
    PlannedFile,
    PullProgress,
)
from ._sqlite_base import SQLiteBase, patiently, transaction
from ._sqlite_rows import claimed, live, lookup_known, task_columns
from ._sqlite_schema import SCHEMA_VERSION, prepare

__all__ = ["SCHEMA_VERSION", "SQLiteStore"]


class SQLiteStore(SQLiteBase):
    """The default :class:`~mirror._state.Store`: ``dest/.mirror/state.sqlite``.

    Every statement runs on one thread of its own (sqlite3 connections are bound to
    their thread), so the event loop only ever awaits a future. WAL with
    ``synchronous=NORMAL``: a commit survives a killed process; a power loss may
    lose the last commits, never corrupt the file (sqlite.org/wal.html). Losing a
    ``verified`` mark costs one re-download of that file, never a wrong file.

    One file may hold several pulls (``--state`` shared by mirrors); ``pull`` names
    this store's.
    """

    def __init__(self, path: Path, *, pull: str = ".") -> None:
        self.path = path
        self.pull = pull
        self._pull_id = 0
        self._db = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mirror-sqlite")
        self._queued = []
        self._writer = None

    async def open(self) -> None:
        def connect() -> None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
                try:
                    db.execute("PRAGMA journal_mode=WAL")
                    db.execute("PRAGMA synchronous=NORMAL")
                    # A lock another process holds is waited for by patiently.
                    db.execute("PRAGMA busy_timeout=0")
                    # Two processes opening one new store must not both create or migrate it.
                    self._pull_id = patiently(self._prepare, db)
                except BaseException:
                    db.close()
                    raise
            except (sqlite3.Error, OSError) as exc:
                raise StateError(self._describe(exc, "cannot open state store")) from exc
            self._db = db

        await asyncio.get_running_loop().run_in_executor(self._thread, connect)

    def _prepare(self, db: sqlite3.Connection) -> int:
        with transaction(db):
            return prepare(db, self.path, self.pull)

    async def aclose(self) -> None:
        def close() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        try:
            # Writes already asked for land before the connection closes.
            await self._flush()
            await asyncio.get_running_loop().run_in_executor(self._thread, close)
        finally:
            self._thread.shutdown(wait=False)

    # -- members -------------------------------------------------------------------

    async def join(self, member: Member, *, lease: float) -> int:
        pull = self._pull_id

        def join(db: sqlite3.Connection) -> int:
            now = time.time()
            (generation,) = db.execute(
                "SELECT generation FROM pulls WHERE id=?", (pull,)
            ).fetchone()
            (others,) = db.execute(
                "SELECT COUNT(*) FROM members WHERE pull=? AND id!=? AND heartbeat>=?",
                (pull, member.id, now - lease),
            ).fetchone()
            if not others:
                generation += 1
                db.execute("UPDATE pulls SET generation=? WHERE id=?", (generation, pull))
                # Members that stopped heartbeating long ago are history now.
                db.execute("DELETE FROM members WHERE pull=? AND heartbeat<?", (pull, now - lease))
            db.execute(
                "INSERT OR REPLACE INTO members (pull, id, host, pid, generation, started,"
                " heartbeat, sees) VALUES (?,?,?,?,?,?,?,0)",
                (pull, member.id, member.host, member.pid, generation, now, now),
            )
            return int(generation)

        return await self._write(join)

    async def heartbeat(self, member: Member, *, lease: float, sees: int) -> Heartbeat:
        pull = self._pull_id

        def beat(db: sqlite3.Connection) -> Heartbeat:
            now = time.time()
            updated = db.execute(
                "UPDATE members SET heartbeat=?, sees=? WHERE pull=? AND id=?",
                (now, sees, pull, member.id),
            ).rowcount
            if not updated:  # forgotten (it was dead long enough for a new generation)
                (generation,) = db.execute(
                    "SELECT generation FROM pulls WHERE id=?", (pull,)
                ).fetchone()
                db.execute(
                    "INSERT INTO members (pull, id, host, pid, generation, started, heartbeat,"
                    " sees) VALUES (?,?,?,?,?,?,?,?)",
                    (pull, member.id, member.host, member.pid, generation, now, now, sees),
                )
            db.execute(
                "UPDATE files SET lease_until=? WHERE pull=? AND holder=? AND status='running'",
                (now + lease, pull, member.id),
            )
            held = frozenset(
                str(key)
                for (key,) in db.execute(
                    "SELECT key FROM files WHERE pull=? AND holder=? AND status='running'",
                    (pull, member.id),
                )
            )
            live = db.execute(
                "SELECT id, sees FROM members WHERE pull=? AND heartbeat>=?",
                (pull, now - lease),
            ).fetchall()
            settled = all(s >= len(live) for i, s in live if i != member.id)
            return Heartbeat(members=len(live), held=held, settled=settled)

        return await self._write(beat)

    async def leave(self, member: Member) -> None:
        pull = self._pull_id

        def leave(db: sqlite3.Connection) -> None:
            db.execute(
                "UPDATE files SET status='pending', holder=NULL, lease_until=NULL, updated=?"
                " WHERE pull=? AND holder=? AND status='running'",
                (time.time(), pull, member.id),
            )
            db.execute("DELETE FROM members WHERE pull=? AND id=?", (pull, member.id))

        await self._write(leave)

    async def members(self, *, lease: float) -> list[MemberInfo]:
        pull = self._pull_id
        return await self._call(lambda db: reads.members(db, pull, lease))

    # -- planning ------------------------------------------------------------------

    async def plan_turn(
        self, member: Member, generation: int, digest: str, *, lease: float
    ) -> bool:
        pull = self._pull_id

        def turn(db: sqlite3.Connection) -> bool:
            row = db.execute(
                "SELECT planner, done FROM plans WHERE pull=? AND generation=? AND digest=?",
                (pull, generation, digest),
            ).fetchone()
            if row is None:
                db.execute(
                    "INSERT INTO plans (pull, generation, digest, planner) VALUES (?,?,?,?)",
                    (pull, generation, digest, member.id),
                )
                return True
            planner, done = row
            if done:
                return False
            if planner != member.id and live(db, pull, str(planner), lease):
                return False
            db.execute(
                "UPDATE plans SET planner=? WHERE pull=? AND generation=? AND digest=?",
                (member.id, pull, generation, digest),
            )
            return True

        return await self._write(turn)

    async def plan_done(self, member: Member, generation: int, digest: str) -> None:
        pull = self._pull_id

        def done(db: sqlite3.Connection) -> None:
            db.execute(
                "UPDATE plans SET done=1 WHERE pull=? AND generation=? AND digest=?",
                (pull, generation, digest),
            )

        await self._write(done)

    async def plan(
        self, tasks: Sequence[FileTask], generation: int, *, entry: int = 0
    ) -> list[PlannedFile]:
        pull = self._pull_id

        def plan(db: sqlite3.Connection) -> list[PlannedFile]:
            now = time.time()
            known = lookup_known(db, pull, [t.key for t in tasks])
            (seq,) = db.execute("SELECT seq FROM pulls WHERE id=?", (pull,)).fetchone()
            out: list[PlannedFile] = []
            inserts: list[tuple[object, ...]] = []
            keeps: list[tuple[object, ...]] = []
            resets: list[tuple[object, ...]] = []
            for task in tasks:
                key = task.key
                row = known.get(key)
                if row is not None and row[3] == generation:
                    continue  # planned twice in one generation (a study and one of its runs)
                seq += 1
                # A second task of the key in this batch is planned in this generation.
                known[key] = ("pending", None, None, generation, None, None, None)
                if row is None:
                    inserts.append((pull, key, *task_columns(task), entry, generation, seq, now))
                    out.append(
                        PlannedFile(task=task, status=TaskStatus.PENDING, md5=None, bytes=None)
                    )
                    continue
                status, checksum, size, _, md5, nbytes, verified_by = row
                described = (*task_columns(task), entry, generation, seq, now, pull, key)
                if status == TaskStatus.FAILED or (
                    status == TaskStatus.VERIFIED
                    and (checksum != task.checksum or (task.size is not None and size != task.size))
                ):
                    # Failed earlier: try again. Verified, but the archive now describes
                    # a different file: fetch it again.
                    resets.append(described)
                    out.append(
                        PlannedFile(task=task, status=TaskStatus.PENDING, md5=None, bytes=None)
                    )
                    continue
                # Verified and unchanged, pending, or running (its holder keeps it).
                keeps.append(described)
                verified = status == TaskStatus.VERIFIED
                out.append(
                    PlannedFile(
                        task=task,
                        status=TaskStatus(status),
                        md5=md5 if verified else None,
                        bytes=nbytes if verified else None,
                        verified_by=verified_by if verified else None,
                    )
                )
            db.executemany(
                "INSERT INTO files (pull, key, source, accession, url, size, checksum, verify,"
                " root, mode, entry, generation, seq, updated)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                inserts,
            )
            described_columns = (
                "source=?, accession=?, url=?, size=?, checksum=?, verify=?, root=?, mode=?,"
                " entry=?, generation=?, seq=?, updated=?"
            )
            db.executemany(f"UPDATE files SET {described_columns} WHERE pull=? AND key=?", keeps)
            db.executemany(
                # The validator stays: it describes the .part a failed fetch left to resume.
                f"UPDATE files SET {described_columns}, status='pending', md5=NULL, bytes=NULL,"
                " verified_by=NULL, reason=NULL WHERE pull=? AND key=?",
                resets,
            )
            db.execute("UPDATE pulls SET seq=? WHERE id=?", (seq, pull))
            return out

        return await self._write(plan)

    async def progress(self, generation: int, *, lease: float) -> PullProgress:
        pull = self._pull_id

        def progress(db: sqlite3.Connection) -> PullProgress:
            counts = dict(
                db.execute(
                    "SELECT status, files FROM tallies WHERE pull=? AND generation=?"
                    " AND status IN ('pending', 'running')",
                    (pull, generation),
                ).fetchall()
            )
            (planning,) = db.execute(
                "SELECT EXISTS (SELECT 1 FROM plans p JOIN members m"
                " ON m.pull=p.pull AND m.id=p.planner"
                " WHERE p.pull=? AND p.generation=? AND NOT p.done AND m.heartbeat>=?)",
                (pull, generation, time.time() - lease),
            ).fetchone()
            return PullProgress(
                pending=int(counts.get("pending", 0)),
                running=int(counts.get("running", 0)),
                planning=bool(planning),
            )

        return await self._call(progress)

    # -- the work queue -------------------------------------------------------------

    async def claim(self, member: Member, generation: int, n: int, *, lease: float) -> list[Claim]:
        pull = self._pull_id

        def claim(db: sqlite3.Connection) -> list[Claim]:
            if n <= 0:
                return []
            now = time.time()
            select = (
                "SELECT id, seq, key, source, accession, url, size, checksum, verify, root,"
                " mode, entry, fence FROM files WHERE pull=? AND generation=?"
            )
            rows = db.execute(
                select + " AND status='pending' ORDER BY seq LIMIT ?", (pull, generation, n)
            ).fetchall()
            # Literal statuses: a partial index is used only for the term it names.
            rows += db.execute(
                select + " AND status='running' AND lease_until<? ORDER BY seq LIMIT ?",
                (pull, generation, now, n),
            ).fetchall()
            rows = sorted(rows, key=lambda r: int(r[1]))[:n]
            db.executemany(
                "UPDATE files SET status='running', holder=?, lease_until=?, fence=fence+1,"
                " updated=? WHERE id=?",
                [(member.id, now + lease, now, r[0]) for r in rows],
            )
            return [claimed(r) for r in rows]

        return await self._shared(claim)

    async def complete(
        self, key: str, fence: int | None, *, md5: str, size: int, verified_by: str
    ) -> bool:
        pull = self._pull_id

        def complete(db: sqlite3.Connection) -> bool:
            sql = (
                "UPDATE files SET status='verified', md5=?, bytes=?, verified_by=?, reason=NULL,"
                " validator=NULL, holder=NULL, lease_until=NULL, updated=? WHERE pull=? AND key=?"
            )
            args: tuple[object, ...] = (md5, size, verified_by, time.time(), pull, key)
            if fence is not None:
                sql += " AND status='running' AND fence=?"
                args += (fence,)
            return db.execute(sql, args).rowcount > 0

        return await self._shared(complete)

    async def fail(self, key: str, fence: int | None, reason: str) -> bool:
        pull = self._pull_id

        def fail(db: sqlite3.Connection) -> bool:
            sql = (
                "UPDATE files SET status='failed', reason=?, holder=NULL, lease_until=NULL,"
                " updated=? WHERE pull=? AND key=?"
            )
            args: tuple[object, ...] = (reason, time.time(), pull, key)
            if fence is not None:
                sql += " AND status='running' AND fence=?"
                args += (fence,)
            return db.execute(sql, args).rowcount > 0

        return await self._shared(fail)

    async def mark_pending(self, key: str) -> None:
        pull = self._pull_id

        def pending(db: sqlite3.Connection) -> None:
            # A file someone is fetching right now is already on its way back.
            db.execute(
                "UPDATE files SET status='pending', md5=NULL, bytes=NULL, verified_by=NULL,"
                " updated=? WHERE pull=? AND key=? AND status!='running'",
                (time.time(), pull, key),
            )

        await self._write(pending)

    async def get_validator(self, key: str) -> str | None:
        pull = self._pull_id

        def get(db: sqlite3.Connection) -> str | None:
            row = db.execute(
                "SELECT validator FROM files WHERE pull=? AND key=?", (pull, key)
            ).fetchone()
            return row[0] if row else None

        return await self._call(get)

    async def set_validator(self, key: str, validator: str | None) -> None:
        pull = self._pull_id

        def put(db: sqlite3.Connection) -> None:
            db.execute(
                "UPDATE files SET validator=? WHERE pull=? AND key=?", (validator, pull, key)
            )

        await self._shared(put)

    # -- pull-wide bookkeeping ---------------------------------------------------------

    async def once(self, generation: int, name: str) -> bool:
        pull = self._pull_id

        def once(db: sqlite3.Connection) -> bool:
            return (
                db.execute(
                    "INSERT OR IGNORE INTO marks (pull, generation, name) VALUES (?,?,?)",
                    (pull, generation, name),
                ).rowcount
                > 0
            )

        return await self._write(once)

    async def record_problem(self, generation: int, kind: str, message: str) -> None:
        pull = self._pull_id

        def record(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO problems (pull, generation, kind, message, at) VALUES (?,?,?,?,?)",
                (pull, generation, kind, message, time.time()),
            )

        await self._write(record)

    async def problems(self) -> list[tuple[str, str]]:
        pull = self._pull_id
        return await self._call(lambda db: reads.problems(db, pull))
