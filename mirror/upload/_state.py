"""What was uploaded where: a small SQLite file, so a killed upload resumes and a re-run
sends nothing.

One row per ``(host, user, remote path)``: the local file it came from, that file's
size and modification time when it was sent (a changed file is sent again from the
start), its MD5 once every byte is in the area, and ``partial``/``done``. No password,
no token: only the login name, to keep two accounts' areas apart.

Default location: ``$XDG_STATE_HOME/ebi-mirror/uploads.sqlite`` (``~/.local/state/…``
when unset), or ``--state PATH`` / ``MIRROR_UPLOAD_STATE``. Each call is one short
statement; callers run them off the event loop (``asyncio.to_thread``).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .._exceptions import StateError, StateUrlError

__all__ = ["Record", "RecordKey", "UploadState", "default_state_path"]

Status = Literal["partial", "done"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS uploads (
    host TEXT NOT NULL,          -- host:port of the upload area
    user TEXT NOT NULL,          -- the login name (never a password)
    remote TEXT NOT NULL,        -- path in the area, relative to its root
    local TEXT NOT NULL,         -- absolute path of the local file
    size INTEGER NOT NULL,       -- its size when sent
    mtime_ns INTEGER NOT NULL,   -- its modification time when sent
    md5 TEXT,                    -- once every byte is in the area
    status TEXT NOT NULL,        -- partial | done
    updated REAL NOT NULL,
    PRIMARY KEY (host, user, remote)
)
"""


def default_state_path() -> Path:
    """``$MIRROR_UPLOAD_STATE``, else ``$XDG_STATE_HOME/ebi-mirror/uploads.sqlite``."""
    if given := os.environ.get("MIRROR_UPLOAD_STATE"):
        return Path(given).expanduser()
    base = os.environ.get("XDG_STATE_HOME") or "~/.local/state"
    return Path(base).expanduser() / "ebi-mirror" / "uploads.sqlite"


@dataclass(frozen=True, kw_only=True, slots=True)
class RecordKey:
    host: str
    user: str
    remote: str


@dataclass(frozen=True, kw_only=True, slots=True)
class Record:
    local: str
    size: int
    mtime_ns: int
    md5: str | None
    status: Status


class UploadState:
    """The upload records; thread-safe (each call holds the one connection's lock)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA busy_timeout = 10000")
            self._db.execute(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise StateUrlError(
                f"cannot open the upload state {path}: {exc}",
                file=str(path),
                hint="give another file with --state PATH (or MIRROR_UPLOAD_STATE)",
            ) from exc
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _guard(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                yield self._db
            except sqlite3.Error as exc:
                raise StateError(f"upload state {self.path}: {exc}") from exc

    def get(self, key: RecordKey) -> Record | None:
        with self._guard() as db:
            row = db.execute(
                "SELECT local, size, mtime_ns, md5, status FROM uploads "
                "WHERE host = ? AND user = ? AND remote = ?",
                (key.host, key.user, key.remote),
            ).fetchone()
        if row is None:
            return None
        local, size, mtime_ns, md5, status = row
        return Record(
            local=local,
            size=size,
            mtime_ns=mtime_ns,
            md5=md5,
            status="done" if status == "done" else "partial",
        )

    def put(self, key: RecordKey, record: Record) -> None:
        with self._guard() as db:
            db.execute(
                "INSERT INTO uploads (host, user, remote, local, size, mtime_ns, md5, status,"
                " updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (host, user, remote)"
                " DO UPDATE SET local = excluded.local, size = excluded.size,"
                " mtime_ns = excluded.mtime_ns, md5 = excluded.md5, status = excluded.status,"
                " updated = excluded.updated",
                (
                    key.host,
                    key.user,
                    key.remote,
                    record.local,
                    record.size,
                    record.mtime_ns,
                    record.md5,
                    record.status,
                    time.time(),
                ),
            )
