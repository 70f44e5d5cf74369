"""The SQLite store's connection and its reads.

One dedicated thread runs every statement, so the event loop never blocks on SQLite;
a statement that meets another process's lock is tried again, and a write runs in one
``BEGIN IMMEDIATE`` transaction. :class:`SQLiteBase` also reads what ``mirror status``,
the index and ``mirror verify`` show; :class:`~mirror._state._sqlite.SQLiteStore` adds
opening, the members, planning and the work queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sqlite3
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from .._exceptions import StateError
from .._models import TaskStatus
from . import _sqlite_reads as reads
from ._base import StoredFile
from ._sqlite_reads import BUSY_TIMEOUT, patiently
from ._sqlite_rows import mib, stored

__all__ = ["BUSY_TIMEOUT", "SQLiteBase", "patiently", "transaction"]

T = TypeVar("T")
_PAGE = 2000


def _locked(exc: BaseException) -> bool:
    """Whether ``exc`` is another process's lock outlasting :data:`BUSY_TIMEOUT`."""
    code = getattr(exc.__cause__, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


@contextlib.contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[None]:
    """One write transaction: all of the block's statements land, or none.

    The connection runs in autocommit mode (``isolation_level=None``), where
    ``with db:`` opens no transaction at all and every statement commits alone.
    ``BEGIN IMMEDIATE`` takes the write lock before the first read, so a
    read-then-write (a file's status, the next generation) cannot interleave with
    another process sharing the store.
    """
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


class SQLiteBase:
    """Statements on the store's one thread, and the pull's reads."""

    path: Path
    _pull_id: int
    _db: sqlite3.Connection | None
    _thread: ThreadPoolExecutor
    #: Writes waiting for the next shared transaction, and the task that writes them.
    _queued: list[tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any]]]
    _writer: asyncio.Task[None] | None

    async def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._db is None:
            raise StateError(f"state store {self.path} is closed")

        def run() -> T:
            if self._db is None:
                raise StateError(f"state store {self.path} is closed")
            try:
                return patiently(fn, self._db)
            # OverflowError: an integer SQLite cannot store (a size past 2**63).
            except (sqlite3.Error, OverflowError) as exc:
                raise StateError(self._describe(exc)) from exc

        return await asyncio.get_running_loop().run_in_executor(self._thread, run)

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in one ``BEGIN IMMEDIATE`` transaction."""

        def write(db: sqlite3.Connection) -> T:
            with transaction(db):
                return fn(db)

        return await self._call(write)

    async def _shared(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in a write transaction with the other writes asked for meanwhile.

        Many workers finishing small files at once then cost one commit per batch,
        not one each, and a lone write waits for nothing. Each ``fn`` sees the rows as
        the ones before it in the batch left them, as if each ran alone in turn.
        """
        done: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queued.append((fn, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_queued())
        return await done

    async def _write_queued(self) -> None:
        batch: list[tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any]]] = []
        try:
            while self._queued:
                batch, self._queued = self._queued, []
                fns = [fn for fn, _ in batch]

                def all_of(
                    db: sqlite3.Connection, fns: list[Callable[[sqlite3.Connection], Any]] = fns
                ) -> list[Any]:
                    return [fn(db) for fn in fns]

                try:
                    results = await self._write(all_of)
                except Exception as exc:
                    if len(batch) == 1 or _locked(exc):
                        # Alone, or the store stayed locked: trying again tells nothing new.
                        for _, done in batch:
                            if not done.done():
                                done.set_exception(exc)
                        continue
                    # One of them failed and took the batch with it: each alone again,
                    # so each caller hears its own outcome.
                    for fn, done in batch:
                        try:
                            result = await self._write(fn)
                        except Exception as exc:
                            if not done.done():
                                done.set_exception(exc)
                        else:
                            if not done.done():
                                done.set_result(result)
                    continue
                for (_, done), result in zip(batch, results, strict=True):
                    if not done.done():  # its caller may have been cancelled meanwhile
                        done.set_result(result)
        finally:
            # Cancelled (the loop is shutting down): no caller waits for ever.
            for _, done in [*batch, *self._queued]:
                if not done.done():
                    done.cancel()

    async def _flush(self) -> None:
        """Wait until the writes already asked for are written."""
        if self._writer is not None and not self._writer.done():
            await asyncio.shield(self._writer)

    def _describe(self, exc: BaseException, doing: str = "state store") -> str:
        """One line for a failed statement; a full disk says where and how much is left."""
        if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
            try:
                free = f"{mib(shutil.disk_usage(self.path.parent).free)} free"
            except OSError:
                free = "free space unknown"
            return (
                f"{doing} {self.path}: the disk is full ({free} on {self.path.parent}); "
                "free some space and re-run to resume"
            )
        return f"{doing} {self.path}: {exc}"

    # -- reading ---------------------------------------------------------------------

    async def generation(self) -> int:
        pull = self._pull_id

        def generation(db: sqlite3.Connection) -> int:
            row = db.execute("SELECT generation FROM pulls WHERE id=?", (pull,)).fetchone()
            return int(row[0]) if row else 0

        return await self._call(generation)

    async def counts(self, generation: int | None) -> dict[TaskStatus, tuple[int, int]]:
        pull = self._pull_id
        return await self._call(lambda db: reads.counts(db, pull, generation))

    async def tally(self, generation: int, prefix: str) -> dict[TaskStatus, int]:
        pull = self._pull_id

        def tally(db: sqlite3.Connection) -> dict[TaskStatus, int]:
            out = dict.fromkeys(TaskStatus, 0)
            # The keys under the prefix are one range of the (pull, key) index: keys
            # compare as UTF-8 bytes, in code point order. substr, not LIKE: a key may
            # hold '%' or '_'.
            sql = (
                "SELECT status, COUNT(*) FROM files WHERE pull=? AND key>=?"
                " AND substr(key, 1, ?)=? AND generation=?"
            )
            args: tuple[object, ...] = (pull, prefix, len(prefix), prefix, generation)
            if prefix and ord(prefix[-1]) < sys.maxunicode:
                sql += " AND key<?"
                args += (prefix[:-1] + chr(ord(prefix[-1]) + 1),)
            for status, n in db.execute(sql + " GROUP BY status", args):
                out[TaskStatus(status)] = int(n)
            return out

        return await self._call(tally)

    async def files(
        self,
        generation: int | None,
        *,
        with_verified: bool = False,
        status: TaskStatus | None = None,
    ) -> AsyncIterator[StoredFile]:
        where = reads.files_where(
            self._pull_id, generation, with_verified=with_verified, status=status
        )
        after = ""
        while True:

            def page(db: sqlite3.Connection, after: str = after) -> list[tuple[object, ...]]:
                return reads.files_page(db, where, after, _PAGE)

            rows = await self._call(page)
            if not rows:
                return
            for row in rows:
                yield stored(row)
            after = str(rows[-1][0])
