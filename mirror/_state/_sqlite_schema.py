"""The SQLite store's tables: their text, their creation, and the move from schema 1.

A schema-1 store held one pull numbered by runs; opening it with this ebi-mirror moves
its files and problems into the current tables, where runs become generations of that pull.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

from .._exceptions import StateError

__all__ = ["SCHEMA_VERSION", "prepare"]

SCHEMA_VERSION = 2
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS pulls (
    id          INTEGER PRIMARY KEY,
    key         TEXT NOT NULL UNIQUE,
    generation  INTEGER NOT NULL DEFAULT 0,
    -- The last planning position handed out: files are claimed in planning order.
    seq         INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS files (
    id          INTEGER PRIMARY KEY,
    pull        INTEGER NOT NULL REFERENCES pulls (id),
    key         TEXT NOT NULL,
    source      TEXT NOT NULL,
    accession   TEXT NOT NULL,
    url         TEXT NOT NULL,
    size        INTEGER,
    checksum    TEXT,
    verify      TEXT NOT NULL,
    root        TEXT,
    mode        INTEGER,
    entry       INTEGER NOT NULL DEFAULT 0,
    status      TEXT NOT NULL DEFAULT 'pending',
    md5         TEXT,
    bytes       INTEGER,
    verified_by TEXT,
    reason      TEXT,
    validator   TEXT,
    generation  INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    holder      TEXT,
    lease_until REAL,
    fence       INTEGER NOT NULL DEFAULT 0,
    updated     REAL NOT NULL,
    UNIQUE (pull, key)
);
-- The work queue: a claim reads the pending (and running) rows of one generation in
-- planning order without touching the verified ones.
CREATE INDEX IF NOT EXISTS files_queue ON files (pull, generation, status, seq);
-- Expired leases, found without reading every running row.
CREATE INDEX IF NOT EXISTS files_lease ON files (pull, generation, lease_until)
    WHERE status = 'running';
CREATE INDEX IF NOT EXISTS files_holder ON files (pull, holder) WHERE holder IS NOT NULL;
CREATE TABLE IF NOT EXISTS members (
    pull        INTEGER NOT NULL,
    id          TEXT NOT NULL,
    host        TEXT NOT NULL,
    pid         INTEGER NOT NULL,
    generation  INTEGER NOT NULL,
    started     REAL NOT NULL,
    heartbeat   REAL NOT NULL,
    sees        INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (pull, id)
);
CREATE TABLE IF NOT EXISTS plans (
    pull        INTEGER NOT NULL,
    generation  INTEGER NOT NULL,
    digest      TEXT NOT NULL,
    planner     TEXT NOT NULL,
    done        INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (pull, generation, digest)
);
CREATE TABLE IF NOT EXISTS marks (
    pull        INTEGER NOT NULL,
    generation  INTEGER NOT NULL,
    name        TEXT NOT NULL,
    PRIMARY KEY (pull, generation, name)
);
CREATE TABLE IF NOT EXISTS problems (
    pull        INTEGER NOT NULL,
    generation  INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    message     TEXT NOT NULL,
    at          REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS problems_generation ON problems (pull, generation);
-- Files and bytes by generation and status, kept by the triggers below: the members
-- read them every few seconds, and counting 300,000 rows each time would not do.
CREATE TABLE IF NOT EXISTS tallies (
    pull        INTEGER NOT NULL,
    generation  INTEGER NOT NULL,
    status      TEXT NOT NULL,
    files       INTEGER NOT NULL,
    bytes       INTEGER NOT NULL,
    PRIMARY KEY (pull, generation, status)
) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS files_tally_insert AFTER INSERT ON files BEGIN
    INSERT INTO tallies VALUES
        (NEW.pull, NEW.generation, NEW.status, 1, COALESCE(NEW.bytes, NEW.size, 0))
    ON CONFLICT DO UPDATE SET files = files + 1, bytes = bytes + excluded.bytes;
END;
CREATE TRIGGER IF NOT EXISTS files_tally_update
AFTER UPDATE OF pull, generation, status, bytes, size ON files BEGIN
    UPDATE tallies SET files = files - 1, bytes = bytes - COALESCE(OLD.bytes, OLD.size, 0)
        WHERE pull = OLD.pull AND generation = OLD.generation AND status = OLD.status;
    INSERT INTO tallies VALUES
        (NEW.pull, NEW.generation, NEW.status, 1, COALESCE(NEW.bytes, NEW.size, 0))
    ON CONFLICT DO UPDATE SET files = files + 1, bytes = bytes + excluded.bytes;
END;
CREATE TRIGGER IF NOT EXISTS files_tally_delete AFTER DELETE ON files BEGIN
    UPDATE tallies SET files = files - 1, bytes = bytes - COALESCE(OLD.bytes, OLD.size, 0)
        WHERE pull = OLD.pull AND generation = OLD.generation AND status = OLD.status;
END;
"""


def prepare(db: sqlite3.Connection, path: Path, pull: str) -> int:
    """Create or migrate the schema (inside the caller's transaction); the pull's id."""
    has_meta = db.execute(
        "SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'"
    ).fetchone()
    row = db.execute("SELECT value FROM meta WHERE key='schema'").fetchone() if has_meta else None
    version = int(row[0]) if row else None
    if version is not None and version > SCHEMA_VERSION:
        raise StateError(
            f"state store {path} was written by a newer ebi-mirror "
            f"(schema {version}); upgrade ebi-mirror"
        )
    old_run = 0
    if version == 1:
        old_run = _rename_schema_1(db)
    tallied = db.execute(
        "SELECT 1 FROM sqlite_master WHERE type='table' AND name='tallies'"
    ).fetchone()
    for statement in _statements(_SCHEMA):
        db.execute(statement)
    if not tallied:  # a store written before the tallies were kept
        db.execute(
            "INSERT INTO tallies SELECT pull, generation, status, COUNT(*),"
            " SUM(COALESCE(bytes, size, 0)) FROM files GROUP BY pull, generation, status"
        )
    db.execute(
        "INSERT INTO pulls (key) SELECT ?1 WHERE NOT EXISTS (SELECT 1 FROM pulls WHERE key=?1)",
        (pull,),
    )
    (pull_id,) = db.execute("SELECT id FROM pulls WHERE key=?", (pull,)).fetchone()
    if version == 1:
        _copy_schema_1(db, int(pull_id), old_run)
    if version != SCHEMA_VERSION:
        # Only then: opening a store as it is writes nothing (a full disk must not stop
        # `mirror status` from reading it).
        db.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
    return int(pull_id)


def _statements(script: str) -> Iterator[str]:
    """The statements of ``script``, a trigger's body kept whole."""
    statement = ""
    for part in script.split(";"):
        statement += part + ";"
        if sqlite3.complete_statement(statement):
            if statement.strip(" \n;"):
                yield statement
            statement = ""


def _rename_schema_1(db: sqlite3.Connection) -> int:
    """Move a schema-1 store's tables aside; its last run number."""
    columns = {r[1] for r in db.execute("PRAGMA table_info(files)")}
    if "root" not in columns:  # stores written before the reference cache
        db.execute("ALTER TABLE files ADD COLUMN root TEXT")
    # A file under a root of its own is keyed by root/path (FileTask.key); stores
    # written before keyed it by the path alone.
    if db.execute("SELECT 1 FROM meta WHERE key='rooted_keys'").fetchone() is None:
        db.execute(
            "UPDATE files SET path = rtrim(root, '/') || '/' || path"
            " WHERE root IS NOT NULL AND substr(path, 1, 1) != '/'"
        )
    db.execute("DELETE FROM meta WHERE key='rooted_keys'")
    row = db.execute("SELECT value FROM meta WHERE key='run'").fetchone()
    db.execute("DELETE FROM meta WHERE key='run'")
    db.execute("DROP INDEX IF EXISTS files_run")
    db.execute("ALTER TABLE files RENAME TO files_1")
    db.execute("ALTER TABLE problems RENAME TO problems_1")
    return int(row[0]) if row else 0


def _copy_schema_1(db: sqlite3.Connection, pull: int, run: int) -> None:
    """A schema-1 store held one pull, numbered by runs: its runs become generations."""
    db.execute(
        "INSERT INTO files (pull, key, source, accession, url, size, checksum, verify, root,"
        " status, md5, bytes, verified_by, reason, validator, generation, seq, updated)"
        " SELECT ?, path, source, accession, url, size, checksum, verify, root,"
        # Nothing was running under a lease then: a file mid-download resumes.
        " CASE status WHEN 'running' THEN 'pending' ELSE status END,"
        " md5, bytes, verified_by, reason, validator, run, rowid, updated"
        " FROM files_1 ORDER BY rowid",
        (pull,),
    )
    db.execute(
        "INSERT INTO problems (pull, generation, kind, message, at)"
        " SELECT ?, run, kind, message, at FROM problems_1 ORDER BY rowid",
        (pull,),
    )
    db.execute(
        "UPDATE pulls SET generation=?, seq=(SELECT COALESCE(MAX(rowid), 0) FROM files_1)"
        " WHERE id=?",
        (run, pull),
    )
    db.execute("DROP TABLE files_1")
    db.execute("DROP TABLE problems_1")
