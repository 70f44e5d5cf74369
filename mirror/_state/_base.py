"""The ``Store`` protocol every state backend implements, and the URL → backend choice."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from .._exceptions import StateError, StateUrlError
from .._models import FileTask, TaskStatus

__all__ = ["PlannedFile", "Store", "StoredFile", "open_store"]


@dataclass(frozen=True, kw_only=True, slots=True)
class StoredFile:
    """One row of the store: the plan of a file and what became of it."""

    path: str
    source: str
    accession: str
    url: str
    size: int | None
    checksum: str | None
    verify: str
    status: TaskStatus
    md5: str | None = None
    bytes: int | None = None
    verified_by: str | None = None
    reason: str | None = None
    #: Set when the file lives outside ``dest`` (reference cache): its directory.
    root: str | None = None

    @property
    def location(self) -> str:
        """``path`` relative to ``dest``, or absolute when the file lives under ``root``."""
        return f"{self.root.rstrip('/')}/{self.path}" if self.root else self.path


@dataclass(frozen=True, kw_only=True, slots=True)
class PlannedFile:
    """A task as planned this run, with what the store already knew of it."""

    task: FileTask
    status: TaskStatus
    md5: str | None
    bytes: int | None
    #: What a file verified earlier was checked against (``md5``, ``sha1``, ``size``...).
    verified_by: str | None = None


class Store(Protocol):
    """Where every planned file stands. Only the engine writes to it.

    A file is named by its :attr:`FileTask.key` (``StoredFile.location``): its path,
    or ``root/path`` for a file under a root of its own (a reference cache).

    The order of writes is the contract a crash relies on: a file is marked
    ``verified`` only after its rename to the final path, so a verified row always
    names a complete file (until someone deletes it, which ``plan`` notices).
    """

    async def begin_run(self) -> int:
        """Start a run; returns its number (tasks planned in it carry it)."""
        ...

    async def plan(self, tasks: Sequence[FileTask], run: int) -> list[PlannedFile]:
        """Record ``tasks`` for ``run``; return those not already planned in this run."""
        ...

    async def mark_verified(self, path: str, *, md5: str, size: int, verified_by: str) -> None: ...

    async def mark_failed(self, path: str, reason: str) -> None: ...

    async def mark_pending(self, path: str) -> None: ...

    async def get_validator(self, path: str) -> str | None:
        """The ETag or Last-Modified saved when the ``.part`` file was started."""
        ...

    async def set_validator(self, path: str, validator: str | None) -> None: ...

    async def last_run(self) -> int: ...

    async def counts(self, run: int | None) -> dict[TaskStatus, tuple[int, int]]:
        """Files and bytes by status among the files planned in ``run`` (``None``: every
        file of the pull, whichever run planned it)."""
        ...

    def files(self, run: int | None, *, with_verified: bool = False) -> AsyncIterator[StoredFile]:
        """Every file planned in ``run`` (and, ``with_verified``, every verified file of
        earlier runs: still on disk), in path order; ``None``: every file of the pull."""
        ...

    async def record_problem(self, run: int, kind: str, message: str) -> None:
        """Keep why a source could not be planned (``kind`` ``error`` or ``refused``)."""
        ...

    async def problems(self) -> list[tuple[str, str]]:
        """``(kind, message)`` recorded by the latest run that planned, oldest first."""
        ...

    async def aclose(self) -> None: ...


#: How a user names the store, for messages about one that cannot be used.
_NAMED_BY = "--state (or MIRROR_STATE)"


async def open_store(url: str | None, dest: Path) -> Store:
    """Open the store named by ``url``: ``sqlite:///PATH`` (relative to the current
    directory; ``sqlite:////abs/path`` for an absolute one), or a plain path; default
    ``dest/.mirror/state.sqlite``."""
    from ._sqlite import SQLiteStore

    if url is None:
        path = dest / ".mirror" / "state.sqlite"
    elif "://" not in url and url.strip():
        # A plain path: what people type, and free of the sqlite:/// slash-counting.
        path = Path(os.path.expanduser(url))  # noqa: ASYNC240 (no I/O: $HOME only)
        if not path.is_absolute():
            path = Path.cwd() / path
    elif url.startswith("sqlite:///") and url != "sqlite:///":
        path = Path(url.removeprefix("sqlite:///"))
        if not path.is_absolute():
            path = Path.cwd() / path
    elif url.startswith(("postgresql://", "postgres://")):
        raise StateUrlError(
            "the PostgreSQL state store is not available in this version; use sqlite:///PATH",
            file=_NAMED_BY,
        )
    else:
        raise StateUrlError(
            f"unknown state store URL {url!r}: expected a path, or sqlite:///PATH",
            file=_NAMED_BY,
        )
    store = SQLiteStore(path)
    try:
        await store.open()
    except StateError as exc:
        if url is None:
            raise
        # The store the user named cannot be used: a usage error, nothing was done.
        raise StateUrlError(str(exc), file=_NAMED_BY) from exc
    return store
