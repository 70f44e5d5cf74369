"""The PostgreSQL store's tables: their text, their version, and their creation under an
advisory lock, so that members opening a new database at once create them once.
"""

from __future__ import annotations

from typing import Final

import asyncpg

from .._exceptions import StateUrlError
from ._postgres_connect import NAMED_BY, PostgresUrl

__all__ = ["NOW", "SCHEMA_VERSION", "prepare"]

#: The version of the tables below; a database written by a newer ebi-mirror is refused.
SCHEMA_VERSION: Final = 1
#: Held (for one transaction) while the tables are created, so two members opening a new
#: database at once do not both run CREATE TABLE (PostgreSQL would fail the second).
_SCHEMA_LOCK: Final = 0x6562_692D_6D69_7272  # "ebi-mirr"
#: The server's clock when the statement began: every member compares leases against the
#: same clock, whatever its host's says. statement_timestamp(), not now() (the start of
#: the transaction) nor clock_timestamp() (volatile: "lease_until < clock_timestamp()"
#: cannot use an index, and a claim would read every held file to find expired ones).
NOW: Final = "extract(epoch from statement_timestamp())::float8"

_SCHEMA: Final = f"""
CREATE TABLE IF NOT EXISTS ebi_mirror_meta (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE IF NOT EXISTS ebi_mirror_pulls (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    generation  bigint NOT NULL DEFAULT 0,
    -- the last planning position handed out (ebi_mirror_files.seq)
    seq         bigint NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS ebi_mirror_members (
    pull        bigint NOT NULL,
    id          text NOT NULL,
    host        text NOT NULL,
    pid         integer NOT NULL,
    generation  bigint NOT NULL,
    started     float8 NOT NULL,
    heartbeat   float8 NOT NULL,
    sees        integer NOT NULL DEFAULT 0,
    PRIMARY KEY (pull, id)
);
CREATE TABLE IF NOT EXISTS ebi_mirror_files (
    pull        bigint NOT NULL,
    key         text COLLATE "C" NOT NULL,
    -- planning order: claims hand files out in the order they were planned
    seq         bigint NOT NULL,
    generation  bigint NOT NULL,
    entry       integer NOT NULL,
    source      text NOT NULL,
    accession   text NOT NULL,
    url         text NOT NULL,
    path        text NOT NULL,
    size        bigint,
    checksum    text,
    verify      text NOT NULL,
    root        text,
    mode        integer,
    status      text NOT NULL,
    md5         text,
    bytes       bigint,
    verified_by text,
    reason      text,
    validator   text,
    holder      text,
    lease_until float8,
    fence       bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (pull, key)
);
-- The work queue: the files still to hand out, in planning order; the files being
-- fetched apart, by the end of their lease, so that a claim finds the expired ones
-- without walking past every file held right now.
CREATE INDEX IF NOT EXISTS ebi_mirror_files_pending
    ON ebi_mirror_files (pull, generation, seq) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS ebi_mirror_files_leases
    ON ebi_mirror_files (pull, lease_until) WHERE status = 'running';
CREATE TABLE IF NOT EXISTS ebi_mirror_plans (
    pull        bigint NOT NULL,
    generation  bigint NOT NULL,
    digest      text NOT NULL,
    planner     text NOT NULL,
    done        boolean NOT NULL DEFAULT false,
    PRIMARY KEY (pull, generation, digest)
);
CREATE TABLE IF NOT EXISTS ebi_mirror_once (
    pull        bigint NOT NULL,
    generation  bigint NOT NULL,
    name        text NOT NULL,
    PRIMARY KEY (pull, generation, name)
);
CREATE TABLE IF NOT EXISTS ebi_mirror_problems (
    id          bigserial PRIMARY KEY,
    pull        bigint NOT NULL,
    generation  bigint NOT NULL,
    kind        text NOT NULL,
    message     text NOT NULL,
    at          float8 NOT NULL DEFAULT {NOW}
);
"""


async def prepare(db: asyncpg.Connection, where: PostgresUrl) -> None:
    """Check the schema, creating the tables in a new database.

    A database already at this schema is only read: members may then log in as a
    role that can read and write the tables but not create any.
    """
    if await _version(db, where) != SCHEMA_VERSION:
        async with db.transaction():
            await db.execute("SELECT pg_advisory_xact_lock($1)", _SCHEMA_LOCK)
            if await _version(db, where) is None:  # not made meanwhile
                await db.execute(_SCHEMA)
                await db.execute(
                    "INSERT INTO ebi_mirror_meta VALUES ('schema', $1)",
                    str(SCHEMA_VERSION),
                )


async def _version(db: asyncpg.Connection, where: PostgresUrl) -> int | None:
    """The schema version of the database's tables (None: no tables yet); a newer one
    than this ebi-mirror knows is refused."""
    # pg_class itself, not to_regclass(): that reads the backend's catalog cache,
    # which still says "no such table" after another member created it while this
    # one waited for the schema lock.
    if not await db.fetchval(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class c"
        " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relname = 'ebi_mirror_meta' AND n.nspname = current_schema())"
    ):
        return None
    found = await db.fetchval("SELECT value FROM ebi_mirror_meta WHERE key='schema'")
    if found is None:
        return None
    if int(found) > SCHEMA_VERSION:
        raise StateUrlError(
            f"the state store {where} was written by a newer ebi-mirror "
            f"(schema {found}, this one knows {SCHEMA_VERSION}): upgrade "
            "ebi-mirror on every machine taking part in the pull",
            file=NAMED_BY,
        )
    return int(found)
