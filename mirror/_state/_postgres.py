"""PostgreSQL state store: one database shared by the members of many pulls on many hosts.

asyncpg speaks PostgreSQL's binary protocol from the event loop itself (no thread
hop per statement, prepared statements cached per connection), so a claim costs one
round trip. Every time is the server's clock (``statement_timestamp()``): members on hosts
whose clocks disagree still agree on whose lease has expired.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .._exceptions import StateError, StateUrlError
from .._models import FileTask, TaskStatus
from ._base import (
    Claim,
    Member,
    PlannedFile,
    PullProgress,
    pull_key,
)
from ._postgres_connect import (
    DB_ERRORS,
    NAMED_BY,
    Connections,
    PostgresUrl,
    connect,
    one_line,
    parse_url,
)
from ._postgres_members import PostgresMembers
from ._postgres_schema import NOW, SCHEMA_VERSION, prepare

__all__ = ["SCHEMA_VERSION", "PostgresStore", "PostgresUrl", "open_postgres", "parse_url"]


@dataclass(frozen=True, slots=True)
class _Completion:
    key: str
    fence: int | None
    md5: str
    size: int
    verified_by: str
    done: asyncio.Future[bool]


async def open_postgres(url: str, dest: Path) -> PostgresStore:
    """Open (creating its tables on first use) the store at ``url`` for the pull at ``dest``."""
    connections, where = await connect(url)
    store = PostgresStore(connections, where, pull_key(dest))
    try:
        await store.open()
    except BaseException:
        await connections.close()
        raise
    return store


class PostgresStore(PostgresMembers):
    """The :class:`~mirror._state.Store` in a PostgreSQL database (``--state postgresql://``).

    One database holds any number of pulls, each named by its ``dest`` (:func:`pull_key`);
    every table is prefixed ``ebi_mirror_``. Each method is one statement or one short
    transaction, so a member that dies mid-call leaves nothing half-done.
    """

    def __init__(self, connections: Connections, where: PostgresUrl, pull: str) -> None:
        self._db = connections
        self._where = where
        self.pull = pull
        self._id = 0
        self._completions: list[_Completion] = []
        self._completer: asyncio.Task[None] | None = None

    # -- opening -------------------------------------------------------------------

    async def open(self) -> None:
        """Check the schema (creating the tables in a new database) and find the pull.

        A database already at this schema is only read: members may then log in as a
        role that can read and write the tables but not create any.
        """
        try:
            async with self._db.acquire() as db:
                await prepare(db, self._where)
                found = await db.fetchval(
                    "SELECT id FROM ebi_mirror_pulls WHERE name=$1", self.pull
                )
                if found is None:
                    await db.execute(
                        "INSERT INTO ebi_mirror_pulls (name) VALUES ($1) ON CONFLICT DO NOTHING",
                        self.pull,
                    )
                    found = await db.fetchval(
                        "SELECT id FROM ebi_mirror_pulls WHERE name=$1", self.pull
                    )
                self._id = int(found)
        except DB_ERRORS as exc:
            raise StateUrlError(
                f"cannot open the state store {self._where}: {one_line(exc)}", file=NAMED_BY
            ) from None

    async def aclose(self) -> None:
        if self._completer is not None:
            # Completions already asked for are written before the connections close.
            await asyncio.shield(self._completer)
        await self._db.close()

    # -- planning --------------------------------------------------------------------

    async def plan_turn(
        self, member: Member, generation: int, digest: str, *, lease: float
    ) -> bool:
        # One statement: insert the turn, or take it over from a planner that is no
        # longer live (or is this member asking again); the row lock orders two askers.
        row = await self._fetchval(
            "INSERT INTO ebi_mirror_plans AS p (pull, generation, digest, planner)"
            " VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (pull, generation, digest) DO UPDATE SET planner=EXCLUDED.planner"
            " WHERE NOT p.done AND (p.planner=EXCLUDED.planner OR NOT EXISTS ("
            "  SELECT 1 FROM ebi_mirror_members m WHERE m.pull=p.pull AND m.id=p.planner"
            f"  AND m.heartbeat >= {NOW} - $5))"
            " RETURNING 1",
            self._id,
            generation,
            digest,
            member.id,
            lease,
        )
        return row is not None

    async def plan_done(self, member: Member, generation: int, digest: str) -> None:
        await self._execute(
            "UPDATE ebi_mirror_plans SET done=true WHERE pull=$1 AND generation=$2 AND digest=$3",
            self._id,
            generation,
            digest,
        )

    async def plan(
        self, tasks: Sequence[FileTask], generation: int, *, entry: int = 0
    ) -> list[PlannedFile]:
        first: dict[str, FileTask] = {}
        for task in tasks:
            first.setdefault(task.key, task)
        if not first:
            return []
        batch = list(first.values())
        # One statement for the whole batch: the rows arrive as arrays, the upsert decides
        # per row. A row already planned in this generation is left alone (and not
        # returned). The batch takes the next len(batch) planning positions of the pull
        # (the pull's row lock orders two planners), in the order of the tasks.
        rows = await self._fetch(
            "WITH base AS (UPDATE ebi_mirror_pulls SET seq=seq + $14 WHERE id=$1"
            "  RETURNING seq - $14 AS seq)"
            " INSERT INTO ebi_mirror_files AS f (pull, key, seq, generation, entry, source,"
            " accession, url, path, size, checksum, verify, root, mode, status)"
            " SELECT $1, u.key, base.seq + u.ord, $2, $3, u.source, u.accession, u.url, u.path,"
            " u.size, u.checksum, u.verify, u.root, u.mode, 'pending' FROM base,"
            " unnest($4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::int8[],"
            " $10::text[], $11::text[], $12::text[], $13::int4[]) WITH ORDINALITY"
            " AS u(key, source, accession, url, path, size, checksum, verify, root, mode, ord)"
            " ON CONFLICT (pull, key) DO UPDATE SET"
            " seq=EXCLUDED.seq, generation=EXCLUDED.generation, entry=EXCLUDED.entry,"
            " source=EXCLUDED.source, accession=EXCLUDED.accession, url=EXCLUDED.url,"
            " path=EXCLUDED.path, size=EXCLUDED.size, checksum=EXCLUDED.checksum,"
            " verify=EXCLUDED.verify, root=EXCLUDED.root, mode=EXCLUDED.mode,"
            # A verified file stays verified while the archive describes the same file.
            " status=CASE WHEN f.status='verified' AND (f.checksum IS DISTINCT FROM"
            "  EXCLUDED.checksum OR (EXCLUDED.size IS NOT NULL AND f.size IS DISTINCT FROM"
            "  EXCLUDED.size)) THEN 'pending' WHEN f.status='failed' THEN 'pending'"
            "  ELSE f.status END,"
            " verified_by=CASE WHEN f.status='verified' AND f.checksum IS NOT DISTINCT FROM"
            "  EXCLUDED.checksum AND (EXCLUDED.size IS NULL OR f.size IS NOT DISTINCT FROM"
            "  EXCLUDED.size) THEN f.verified_by END,"
            " reason=NULL"
            " WHERE f.generation <> EXCLUDED.generation"
            " RETURNING key, status, md5, bytes, verified_by",
            self._id,
            generation,
            entry,
            [t.key for t in batch],
            [t.source for t in batch],
            [t.accession for t in batch],
            [t.url for t in batch],
            [t.path for t in batch],
            [t.size for t in batch],
            [t.checksum for t in batch],
            [t.verify for t in batch],
            [t.root for t in batch],
            [t.mode for t in batch],
            len(batch),
        )
        planned = {r["key"]: r for r in rows}
        out: list[PlannedFile] = []
        for task in batch:
            r = planned.get(task.key)
            if r is None:
                continue
            status = TaskStatus(r["status"])
            out.append(
                PlannedFile(
                    task=task,
                    status=status,
                    md5=r["md5"],
                    bytes=r["bytes"],
                    verified_by=r["verified_by"] if status is TaskStatus.VERIFIED else None,
                )
            )
        return out

    async def progress(self, generation: int, *, lease: float) -> PullProgress:
        # Each count from its own partial index: a member asks when its claim came back
        # empty, when few files (if any) are pending, whatever the pull's size.
        (row,) = await self._fetch(
            "SELECT (SELECT count(*) FROM ebi_mirror_files WHERE pull=$1 AND generation=$2"
            "  AND status='pending') AS pending,"
            " (SELECT count(*) FROM ebi_mirror_files WHERE pull=$1 AND generation=$2"
            "  AND status='running') AS running,"
            " EXISTS (SELECT 1 FROM ebi_mirror_plans p JOIN ebi_mirror_members m"
            "  ON m.pull=p.pull AND m.id=p.planner WHERE p.pull=$1 AND p.generation=$2"
            f"  AND NOT p.done AND m.heartbeat >= {NOW} - $3) AS planning",
            self._id,
            generation,
            lease,
        )
        return PullProgress(
            pending=int(row["pending"]), running=int(row["running"]), planning=row["planning"]
        )

    # -- the work queue ----------------------------------------------------------------

    async def claim(self, member: Member, generation: int, n: int, *, lease: float) -> list[Claim]:
        if n <= 0:
            return []
        # SKIP LOCKED: concurrent claimers each take other rows instead of queueing on
        # the same first ones. The first n pending files and the first n whose lease
        # expired are locked, and the first n of those taken (the others are let go
        # when the statement ends). ARRAY(...) runs the pick once, before the update; as
        # a plain "key IN (subquery)" PostgreSQL may run it again per row, each run
        # skipping the rows the last one locked (a claim of 3 took all 500 files). The
        # update then finds the picked rows by primary key, whatever n the plan assumed.
        rows = await self._fetch(
            f"UPDATE ebi_mirror_files SET status='running', holder=$3,"
            f" lease_until={NOW} + $5, fence=fence + 1"
            " WHERE pull=$1 AND key = ANY(ARRAY(SELECT key FROM ("
            "  SELECT key, seq FROM (SELECT key, seq FROM ebi_mirror_files WHERE pull=$1"
            "   AND generation=$2 AND status='pending'"
            "   ORDER BY seq LIMIT $4 FOR UPDATE SKIP LOCKED) AS pending"
            "  UNION ALL"
            "  SELECT key, seq FROM (SELECT key, seq FROM ebi_mirror_files WHERE pull=$1"
            f"   AND generation=$2 AND status='running' AND lease_until < {NOW}"
            "   ORDER BY seq LIMIT $4 FOR UPDATE SKIP LOCKED) AS expired"
            " ) AS free ORDER BY seq LIMIT $4))"
            " RETURNING seq, fence, entry, source, accession, url, path, size, checksum,"
            " verify, root, mode",
            self._id,
            generation,
            member.id,
            n,
            lease,
        )
        return [
            Claim(
                task=FileTask(
                    source=r["source"],
                    accession=r["accession"],
                    url=r["url"],
                    path=r["path"],
                    size=r["size"],
                    checksum=r["checksum"],
                    verify=r["verify"],
                    root=r["root"],
                    mode=r["mode"],
                ),
                fence=r["fence"],
                entry=r["entry"],
            )
            for r in sorted(rows, key=lambda r: int(r["seq"]))
        ]

    async def complete(
        self, key: str, fence: int | None, *, md5: str, size: int, verified_by: str
    ) -> bool:
        # Completions that arrive while one statement is being written go together in the
        # next: many workers finishing small files at once cost a round trip per batch,
        # not per file, and a lone completion waits for nothing.
        done = asyncio.get_running_loop().create_future()
        self._completions.append(_Completion(key, fence, md5, size, verified_by, done))
        if self._completer is None or self._completer.done():
            self._completer = asyncio.create_task(self._complete_queued())
        return bool(await done)

    async def _complete_queued(self) -> None:
        items: list[_Completion] = []
        try:
            while self._completions:
                batch: dict[str, _Completion] = {}
                later: list[_Completion] = []
                for item in self._completions:
                    # One statement updates a row once: a second completion of the same
                    # key (the old holder and the new) goes in the next statement.
                    if item.key in batch:
                        later.append(item)
                    else:
                        batch[item.key] = item
                self._completions = later
                items = list(batch.values())
                try:
                    written = await self._complete_rows(items)
                except StateError as exc:
                    for c in items:
                        if not c.done.done():
                            c.done.set_exception(exc)
                    continue
                for c in items:
                    if not c.done.done():  # its caller may have been cancelled meanwhile
                        c.done.set_result(c.key in written)
        finally:
            # Cancelled (the loop is shutting down): no caller waits for ever.
            for c in [*items, *self._completions]:
                if not c.done.done():
                    c.done.cancel()

    async def _complete_rows(self, items: Sequence[_Completion]) -> set[str]:
        rows = await self._fetch(
            "UPDATE ebi_mirror_files f SET status='verified', md5=u.md5, bytes=u.size,"
            " verified_by=u.verified_by, reason=NULL, validator=NULL, holder=NULL,"
            " lease_until=NULL FROM unnest($2::text[], $3::int8[], $4::text[], $5::int8[],"
            " $6::text[]) AS u(key, fence, md5, size, verified_by)"
            " WHERE f.pull=$1 AND f.key=u.key"
            " AND (u.fence IS NULL OR (f.status='running' AND f.fence=u.fence))"
            " RETURNING f.key",
            self._id,
            [c.key for c in items],
            [c.fence for c in items],
            [c.md5 for c in items],
            [c.size for c in items],
            [c.verified_by for c in items],
        )
        return {str(r["key"]) for r in rows}

    async def fail(self, key: str, fence: int | None, reason: str) -> bool:
        done = await self._execute(
            "UPDATE ebi_mirror_files SET status='failed', reason=$3, holder=NULL,"
            " lease_until=NULL WHERE pull=$1 AND key=$2"
            " AND ($4::int8 IS NULL OR (status='running' AND fence=$4))",
            self._id,
            key,
            reason,
            fence,
        )
        return done != "UPDATE 0"

    async def mark_pending(self, key: str) -> None:
        # A file someone is fetching right now is already on its way back.
        await self._execute(
            "UPDATE ebi_mirror_files SET status='pending', md5=NULL, bytes=NULL,"
            " verified_by=NULL WHERE pull=$1 AND key=$2 AND status<>'running'",
            self._id,
            key,
        )

    async def get_validator(self, key: str) -> str | None:
        found = await self._fetchval(
            "SELECT validator FROM ebi_mirror_files WHERE pull=$1 AND key=$2", self._id, key
        )
        return str(found) if found is not None else None

    async def set_validator(self, key: str, validator: str | None) -> None:
        await self._execute(
            "UPDATE ebi_mirror_files SET validator=$3 WHERE pull=$1 AND key=$2",
            self._id,
            key,
            validator,
        )

    # -- pull-wide bookkeeping -----------------------------------------------------------

    async def once(self, generation: int, name: str) -> bool:
        found = await self._fetchval(
            "INSERT INTO ebi_mirror_once (pull, generation, name) VALUES ($1, $2, $3)"
            " ON CONFLICT DO NOTHING RETURNING 1",
            self._id,
            generation,
            name,
        )
        return found is not None

    async def record_problem(self, generation: int, kind: str, message: str) -> None:
        await self._execute(
            "INSERT INTO ebi_mirror_problems (pull, generation, kind, message)"
            " VALUES ($1, $2, $3, $4)",
            self._id,
            generation,
            kind,
            message,
        )

    async def problems(self) -> list[tuple[str, str]]:
        rows = await self._fetch(
            # The latest generation that planned anything or met a problem: a problem a
            # later plan no longer met is history, not the pull's state.
            "SELECT kind, message FROM ebi_mirror_problems WHERE pull=$1 AND generation = ("
            " SELECT max(g) FROM (SELECT max(generation) AS g FROM ebi_mirror_files"
            "  WHERE pull=$1 UNION ALL SELECT max(generation) FROM ebi_mirror_problems"
            "  WHERE pull=$1 UNION ALL SELECT max(generation) FROM ebi_mirror_plans"
            "  WHERE pull=$1) AS latest) ORDER BY id",
            self._id,
        )
        return [(str(r["kind"]), str(r["message"])) for r in rows]
