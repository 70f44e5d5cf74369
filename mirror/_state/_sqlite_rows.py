"""The SQLite store's rows as the dataclasses of :mod:`mirror._state`, and back.

Also the few lookups a transaction of the store makes between its statements (what is
known of a plan's keys, whether a member's lease is live).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from typing import get_args

from .._exceptions import StateError
from .._models import FileTask, TaskStatus, Verify
from ._base import Claim, StoredFile

__all__ = ["CHUNK", "COLUMNS", "claimed", "live", "lookup_known", "mib", "stored", "task_columns"]

#: The columns of a stored file, in the order :func:`stored` reads them.
COLUMNS = (
    "key, source, accession, url, size, checksum, verify, status, md5, bytes, verified_by,"
    " reason, root, holder, lease_until"
)
#: Keys looked up in one statement (SQLite allows 32,766 parameters).
CHUNK = 500


#: verified_by.
_Known = tuple[str, str | None, int | None, int, str | None, int | None, str | None]


def lookup_known(db: sqlite3.Connection, pull: int, keys: Sequence[str]) -> dict[str, _Known]:
    """What the store knows of ``keys``, by key."""
    known: dict[str, _Known] = {}
    unique = list(dict.fromkeys(keys))
    for start in range(0, len(unique), CHUNK):
        chunk = unique[start : start + CHUNK]
        for key, status, checksum, size, generation, md5, nbytes, verified_by in db.execute(
            "SELECT key, status, checksum, size, generation, md5, bytes, verified_by FROM files"
            f" WHERE pull=? AND key IN ({','.join('?' * len(chunk))})",
            (pull, *chunk),
        ):
            known[key] = (status, checksum, size, generation, md5, nbytes, verified_by)
    return known


def live(db: sqlite3.Connection, pull: int, member: str, lease: float) -> bool:
    row = db.execute(
        "SELECT 1 FROM members WHERE pull=? AND id=? AND heartbeat>=?",
        (pull, member, time.time() - lease),
    ).fetchone()
    return row is not None


def task_columns(task: FileTask) -> tuple[object, ...]:
    """The columns a plan writes, in the order of ``source ... entry``."""
    return (
        task.source,
        task.accession,
        task.url,
        task.size,
        task.checksum,
        task.verify,
        task.root,
        task.mode,
    )


def mib(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB"


def _relative(key: str, root: object) -> str:
    """The task's ``path`` from its key: ``root/path`` with a root of its own."""
    if isinstance(root, str) and key.startswith(root.rstrip("/") + "/"):
        return key[len(root.rstrip("/")) + 1 :]
    return key


def _verify(value: object) -> Verify:
    for known in get_args(Verify):
        if value == known:
            return known  # type: ignore[no-any-return]
    raise StateError(f"unknown verification {value!r} in the state store")


def claimed(row: tuple[object, ...]) -> Claim:
    (_, _, key, source, accession, url, size, checksum, verify, root, mode, entry, fence) = row
    task = FileTask(
        source=str(source),
        accession=str(accession),
        url=str(url),
        path=_relative(str(key), root),
        size=size if isinstance(size, int) else None,
        checksum=checksum if isinstance(checksum, str) else None,
        verify=_verify(verify),
        root=root if isinstance(root, str) else None,
        mode=mode if isinstance(mode, int) else None,
    )
    return Claim(task=task, fence=int(str(fence)) + 1, entry=int(str(entry)))


def stored(row: tuple[object, ...]) -> StoredFile:
    (
        key,
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
        holder,
        lease_until,
    ) = row
    return StoredFile(
        path=_relative(str(key), root),
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
        holder=holder if isinstance(holder, str) else None,
        lease_until=float(lease_until) if isinstance(lease_until, int | float) else None,
    )
