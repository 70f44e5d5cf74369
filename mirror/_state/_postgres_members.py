"""PostgreSQL state store, members: who takes part in a pull, their heartbeats and leases.

Every time is the server's clock (``NOW``), so members on hosts whose clocks disagree
still agree on whose lease has expired.
"""

from __future__ import annotations

from ._base import Heartbeat, Member, MemberInfo
from ._postgres_base import PostgresBase
from ._postgres_connect import DB_ERRORS
from ._postgres_schema import NOW

__all__ = ["PostgresMembers"]


class PostgresMembers(PostgresBase):
    """Joining and leaving a pull, heartbeats, and the list of members."""

    async def join(self, member: Member, *, lease: float) -> int:
        try:
            async with self._db.acquire() as db, db.transaction():
                # The pull's row is the lock: two members joining an idle pull at once
                # must not both start a generation.
                generation: int = await db.fetchval(
                    "SELECT generation FROM ebi_mirror_pulls WHERE id=$1 FOR UPDATE", self._id
                )
                others = await db.fetchval(
                    f"SELECT count(*) FROM ebi_mirror_members WHERE pull=$1 AND id<>$2"
                    f" AND heartbeat >= {NOW} - $3",
                    self._id,
                    member.id,
                    lease,
                )
                if not others:
                    generation += 1
                    await db.execute(
                        "UPDATE ebi_mirror_pulls SET generation=$2 WHERE id=$1",
                        self._id,
                        generation,
                    )
                    # Members that stopped heartbeating before this generation are history.
                    await db.execute(
                        f"DELETE FROM ebi_mirror_members WHERE pull=$1 AND heartbeat < {NOW} - $2",
                        self._id,
                        lease,
                    )
                await db.execute(
                    f"INSERT INTO ebi_mirror_members (pull, id, host, pid, generation, started,"
                    f" heartbeat) VALUES ($1, $2, $3, $4, $5, {NOW}, {NOW})"
                    " ON CONFLICT (pull, id) DO UPDATE SET generation=EXCLUDED.generation,"
                    " heartbeat=EXCLUDED.heartbeat",
                    self._id,
                    member.id,
                    member.host,
                    member.pid,
                    generation,
                )
                return generation
        except DB_ERRORS as exc:
            raise self._error(exc) from None

    async def heartbeat(self, member: Member, *, lease: float, sees: int) -> Heartbeat:
        try:
            async with self._db.acquire() as db, db.transaction():
                found = await db.fetchval(
                    f"UPDATE ebi_mirror_members SET heartbeat={NOW}, sees=$3"
                    " WHERE pull=$1 AND id=$2 RETURNING 1",
                    self._id,
                    member.id,
                    sees,
                )
                if found is None:
                    # Forgotten (it left, or was taken for dead): it is back, in the
                    # pull's current generation.
                    await db.execute(
                        f"INSERT INTO ebi_mirror_members (pull, id, host, pid, generation,"
                        f" started, heartbeat, sees) SELECT $1, $2, $3, $4, generation,"
                        f" {NOW}, {NOW}, $5 FROM ebi_mirror_pulls WHERE id=$1"
                        " ON CONFLICT DO NOTHING",
                        self._id,
                        member.id,
                        member.host,
                        member.pid,
                        sees,
                    )
                held = await db.fetch(
                    f"UPDATE ebi_mirror_files SET lease_until={NOW} + $3"
                    " WHERE pull=$1 AND holder=$2 AND status='running' RETURNING key",
                    self._id,
                    member.id,
                    lease,
                )
                live = await db.fetch(
                    f"SELECT id, sees FROM ebi_mirror_members WHERE pull=$1"
                    f" AND (id=$2 OR heartbeat >= {NOW} - $3)",
                    self._id,
                    member.id,
                    lease,
                )
        except DB_ERRORS as exc:
            raise self._error(exc) from None
        count = len(live)
        return Heartbeat(
            members=count,
            held=frozenset(str(r["key"]) for r in held),
            settled=all(r["sees"] >= count for r in live if r["id"] != member.id),
        )

    async def leave(self, member: Member) -> None:
        try:
            async with self._db.acquire() as db, db.transaction():
                # The member's row first, as heartbeat() locks them: a heartbeat still on
                # its way when the member leaves must not deadlock with it.
                await db.execute(
                    "DELETE FROM ebi_mirror_members WHERE pull=$1 AND id=$2", self._id, member.id
                )
                await db.execute(
                    "UPDATE ebi_mirror_files SET status='pending', holder=NULL, lease_until=NULL"
                    " WHERE pull=$1 AND holder=$2 AND status='running'",
                    self._id,
                    member.id,
                )
        except DB_ERRORS as exc:
            raise self._error(exc) from None

    async def members(self, *, lease: float) -> list[MemberInfo]:
        rows = await self._fetch(
            "SELECT m.id, m.host, m.pid, m.started, m.heartbeat,"
            " (SELECT count(*) FROM ebi_mirror_files f WHERE f.pull=m.pull AND f.holder=m.id"
            "  AND f.status='running') AS held,"
            " EXISTS (SELECT 1 FROM ebi_mirror_plans p WHERE p.pull=m.pull AND p.planner=m.id"
            "  AND NOT p.done) AS planning"
            f" FROM ebi_mirror_members m WHERE m.pull=$1 AND m.heartbeat >= {NOW} - $2"
            " ORDER BY m.started, m.id",
            self._id,
            lease,
        )
        return [
            MemberInfo(
                id=r["id"],
                host=r["host"],
                pid=r["pid"],
                started=r["started"],
                heartbeat=r["heartbeat"],
                held=r["held"],
                planning=r["planning"],
            )
            for r in rows
        ]
