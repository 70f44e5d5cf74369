"""The PostgreSQL store's statements and its reads.

:class:`PostgresBase` runs one statement on one of the store's connections, its errors
in one line, and reads what ``mirror status``, the index and ``mirror verify`` show;
:class:`~mirror._state._postgres.PostgresStore` adds opening, the members, planning and
the work queue.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Final

import asyncpg

from .._exceptions import StateError
from .._models import TaskStatus
from ._base import StoredFile
from ._postgres_connect import DB_ERRORS, Connections, PostgresUrl, one_line

__all__ = ["PostgresBase"]

_PAGE: Final = 2000

_ROW: Final = (
    "key, path, source, accession, url, size, checksum, verify, status, md5, bytes,"
    " verified_by, reason, root, holder, lease_until"
)


def _successor(prefix: str) -> str | None:
    """The least string greater than every string that starts with ``prefix`` (in code
    point order, which is UTF-8 byte order); None when there is none."""
    while prefix:
        last = ord(prefix[-1])
        if last < 0x10FFFF:
            following = last + 1
            if 0xD800 <= following <= 0xDFFF:  # surrogates are no characters of UTF-8
                following = 0xE000
            return prefix[:-1] + chr(following)
        prefix = prefix[:-1]
    return None


class PostgresBase:
    """Statements on the store's connections, and the pull's reads."""

    _db: Connections
    _where: PostgresUrl
    _id: int

    # -- helpers ---------------------------------------------------------------------

    def _error(self, exc: BaseException) -> StateError:
        return StateError(f"state store {self._where}: {one_line(exc)}")

    async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        try:
            async with self._db.acquire() as db:
                return await db.fetch(sql, *args)
        except DB_ERRORS as exc:
            raise self._error(exc) from None

    async def _fetchval(self, sql: str, *args: Any) -> Any:
        try:
            async with self._db.acquire() as db:
                return await db.fetchval(sql, *args)
        except DB_ERRORS as exc:
            raise self._error(exc) from None

    async def _execute(self, sql: str, *args: Any) -> str:
        try:
            async with self._db.acquire() as db:
                return await db.execute(sql, *args)
        except DB_ERRORS as exc:
            raise self._error(exc) from None

    # -- reading -----------------------------------------------------------------------

    async def generation(self) -> int:
        found = await self._fetchval(
            "SELECT generation FROM ebi_mirror_pulls WHERE id=$1", self._id
        )
        return int(found or 0)

    async def counts(self, generation: int | None) -> dict[TaskStatus, tuple[int, int]]:
        rows = await self._fetch(
            "SELECT status, count(*) AS n, COALESCE(sum(COALESCE(bytes, size)), 0) AS b"
            " FROM ebi_mirror_files WHERE pull=$1 AND ($2::int8 IS NULL OR generation=$2)"
            " GROUP BY status",
            self._id,
            generation,
        )
        out = {status: (0, 0) for status in TaskStatus}
        for r in rows:
            out[TaskStatus(r["status"])] = (int(r["n"]), int(r["b"]))
        return out

    async def tally(self, generation: int, prefix: str) -> dict[TaskStatus, int]:
        # A range of the primary key (byte order, COLLATE "C"): the keys that start with
        # the prefix, and no others, lie between it and its successor.
        upper = _successor(prefix)
        sql = (
            "SELECT status, count(*) AS n FROM ebi_mirror_files WHERE pull=$1"
            " AND generation=$2 AND key >= $3 AND starts_with(key, $3)"
        )
        if upper is None:
            rows = await self._fetch(sql + " GROUP BY status", self._id, generation, prefix)
        else:
            rows = await self._fetch(
                sql + " AND key < $4 GROUP BY status", self._id, generation, prefix, upper
            )
        out = dict.fromkeys(TaskStatus, 0)
        for r in rows:
            out[TaskStatus(r["status"])] = int(r["n"])
        return out

    async def files(
        self,
        generation: int | None,
        *,
        with_verified: bool = False,
        status: TaskStatus | None = None,
    ) -> AsyncIterator[StoredFile]:
        after = ""
        while True:
            try:
                async with self._db.acquire() as db, db.transaction():
                    # Each page walks the primary key from where the last one ended. A
                    # plan that sorts (what the planner picks from the statistics of a
                    # table that just grew by a whole plan) would read and sort the
                    # whole rest of the pull for every page.
                    await db.execute("SET LOCAL enable_sort = off")
                    rows = await db.fetch(
                        f"SELECT {_ROW} FROM ebi_mirror_files WHERE pull=$1"
                        " AND ($2::int8 IS NULL OR generation=$2 OR ($5 AND status='verified'))"
                        f" AND ($3::text IS NULL OR status=$3) AND key > $4 ORDER BY key"
                        f" LIMIT {_PAGE}",
                        self._id,
                        generation,
                        status.value if status is not None else None,
                        after,
                        with_verified,
                    )
            except DB_ERRORS as exc:
                raise self._error(exc) from None
            for r in rows:
                yield StoredFile(
                    path=r["path"],
                    source=r["source"],
                    accession=r["accession"],
                    url=r["url"],
                    size=r["size"],
                    checksum=r["checksum"],
                    verify=r["verify"],
                    status=TaskStatus(r["status"]),
                    md5=r["md5"],
                    bytes=r["bytes"],
                    verified_by=r["verified_by"],
                    reason=r["reason"],
                    root=r["root"],
                    holder=r["holder"],
                    lease_until=r["lease_until"],
                )
            if len(rows) < _PAGE:
                return
            after = rows[-1]["key"]
