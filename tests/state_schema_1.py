"""Stores as ebi-mirror wrote them before a pull could be shared (schema 1), for the
tests that open one with the current version."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Row1", "downgrade_to_schema_1", "write_schema_1"]

_SCHEMA_1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE files (
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
CREATE INDEX files_run ON files (run, status);
CREATE TABLE problems (
    run     INTEGER NOT NULL,
    kind    TEXT NOT NULL,
    message TEXT NOT NULL,
    at      REAL NOT NULL
);
"""


@dataclass(frozen=True)
class Row1:
    """A ``files`` row of schema 1: ``path`` was the key (``root/path`` with a root,
    or the path alone in stores written before ``rooted_keys``)."""

    path: str
    status: str
    run: int
    size: int = 10
    checksum: str = "a" * 32
    md5: str | None = None
    bytes: int | None = None
    verified_by: str | None = None
    reason: str | None = None
    validator: str | None = None
    root: str | None = None
    verify: str = "md5"


def write_schema_1(
    path: Path,
    rows: Sequence[Row1],
    *,
    run: int,
    problems: Sequence[tuple[int, str, str]] = (),
    rooted_keys: bool = True,
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path)
    try:
        with db:
            db.executescript(_SCHEMA_1)
            db.execute("INSERT INTO meta VALUES ('schema', '1')")
            db.execute("INSERT INTO meta VALUES ('run', ?)", (str(run),))
            if rooted_keys:
                db.execute("INSERT INTO meta VALUES ('rooted_keys', '1')")
            db.executemany(
                "INSERT INTO files (path, source, accession, url, size, checksum, verify,"
                " status, md5, bytes, verified_by, reason, validator, root, run, updated)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                [
                    (
                        r.path,
                        "ena",
                        "ERR000001",
                        f"https://h/{r.path}",
                        r.size,
                        r.checksum,
                        r.verify,
                        r.status,
                        r.md5,
                        r.bytes,
                        r.verified_by,
                        r.reason,
                        r.validator,
                        r.root,
                        r.run,
                        time.time(),
                    )
                    for r in rows
                ],
            )
            db.executemany(
                "INSERT INTO problems VALUES (?,?,?,?)",
                [(g, kind, message, time.time()) for g, kind, message in problems],
            )
    finally:
        db.close()


def downgrade_to_schema_1(path: Path, *, rooted_keys: bool = True) -> None:
    """Rewrite the (closed) store at ``path`` as schema 1 would have held its one pull;
    without ``rooted_keys``, as versions before them keyed files under a root."""
    db = sqlite3.connect(path)
    try:
        (run,) = db.execute("SELECT MAX(generation) FROM pulls").fetchone()
        rows = [
            Row1(
                key if rooted_keys or root is None else key[len(root.rstrip("/")) + 1 :],
                status,
                generation,
                size=size,
                checksum=checksum,
                md5=md5,
                bytes=nbytes,
                verified_by=verified_by,
                reason=reason,
                validator=validator,
                root=root,
                verify=verify,
            )
            for (
                key,
                status,
                generation,
                size,
                checksum,
                md5,
                nbytes,
                verified_by,
                reason,
                validator,
                root,
                verify,
            ) in db.execute(
                "SELECT key, status, generation, size, checksum, md5, bytes, verified_by,"
                " reason, validator, root, verify FROM files ORDER BY seq"
            )
        ]
    finally:
        db.close()
    for leftover in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        leftover.unlink(missing_ok=True)
    write_schema_1(path, rows, run=int(run), rooted_keys=rooted_keys)
