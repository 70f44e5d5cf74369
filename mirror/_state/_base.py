"""The ``Store`` protocol every state backend implements, and the URL → backend choice.

The store is the pull's work queue. Any number of processes (members) on one host
(SQLite) or on many (PostgreSQL) share one pull through it:

* A **pull** is the set of files under one ``dest``. A **generation** is one round of
  it: the first member to join a pull with no live member starts a new generation;
  members joining while others are live join theirs. Files are counted and listed by
  the generation that last planned them.
* Planning happens once per generation and manifest (``plan_turn``): one member
  plans while the others already download what is planned. A plan whose planner died
  is taken over by the next member that asks.
* ``claim`` hands out pending files (and running files whose lease expired) under a
  lease; the holder renews it with every ``heartbeat``; ``complete`` and ``fail`` are
  fenced by the claim's ``fence``, so a process that lost its lease cannot overwrite
  the new holder's result. ``leave`` puts back what a member held.

The order of writes is the contract a crash relies on: a file is marked ``verified``
only after its rename to the final path, so a verified row always names a complete
file (until someone deletes it, which the planner notices).
"""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from .._exceptions import StateError, StateUrlError
from .._models import FileTask, TaskStatus

__all__ = [
    "Claim",
    "Heartbeat",
    "Member",
    "MemberInfo",
    "PlannedFile",
    "PullProgress",
    "Store",
    "StoredFile",
    "gone",
    "open_store",
    "pull_key",
]


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
    #: The member holding a ``running`` file, and until when (epoch seconds).
    holder: str | None = None
    lease_until: float | None = None

    @property
    def location(self) -> str:
        """``path`` relative to ``dest``, or absolute when the file lives under ``root``."""
        return f"{self.root.rstrip('/')}/{self.path}" if self.root else self.path


@dataclass(frozen=True, kw_only=True, slots=True)
class PlannedFile:
    """A task as planned in this generation, with what the store already knew of it."""

    task: FileTask
    status: TaskStatus
    md5: str | None
    bytes: int | None
    #: What a file verified earlier was checked against (``md5``, ``sha1``, ``size``...).
    verified_by: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Member:
    """One process taking part in a pull. ``id`` is unique per process lifetime."""

    id: str
    host: str
    pid: int


@dataclass(frozen=True, kw_only=True, slots=True)
class MemberInfo:
    """A live (or recently live) member, as ``mirror status`` shows it."""

    id: str
    host: str
    pid: int
    #: Epoch seconds (the store's clock).
    started: float
    heartbeat: float
    #: Files it holds (``running``) now.
    held: int
    #: Whether it is planning now.
    planning: bool


@dataclass(frozen=True, kw_only=True, slots=True)
class Claim:
    """A file handed to one member under a lease."""

    #: Rebuilt from the row: no request headers (the source's hooks add those).
    task: FileTask
    #: Increases with every claim of the file; ``complete``/``fail`` must present it.
    fence: int
    #: Index of the manifest entry (``sources[N]``) that planned the file.
    entry: int


@dataclass(frozen=True, kw_only=True, slots=True)
class Heartbeat:
    """What a member learns when it renews its leases."""

    #: Live members of the pull, this one included (heartbeat within the lease).
    members: int
    #: Keys of the files this member still holds; a file it thinks it holds and that is
    #: not here was taken over (its lease expired): stop working on it.
    held: frozenset[str]
    #: Whether every other live member has acknowledged ``members`` (heartbeated with
    #: ``sees >= members``): until then a newcomer must not use its share of a host.
    settled: bool


@dataclass(frozen=True, kw_only=True, slots=True)
class PullProgress:
    """Whether a generation still has work, for a member deciding to wait or exit."""

    pending: int
    running: int
    #: A live member is still planning for this generation.
    planning: bool


class Store(Protocol):
    """Where every planned file stands, and who is fetching it.

    A file is named by its :attr:`FileTask.key` (``StoredFile.location``): its path,
    or ``root/path`` for a file under a root of its own (a reference cache).
    ``lease`` arguments are seconds. Times are the store's clock (the database
    server's for PostgreSQL), so members on hosts with skewed clocks agree.
    """

    # -- members -------------------------------------------------------------------

    async def join(self, member: Member, *, lease: float) -> int:
        """Register ``member``; returns the generation it takes part in.

        When no other member is live (heartbeat within ``lease``), a new generation
        starts; otherwise the member joins the live ones' generation.
        """
        ...

    async def heartbeat(self, member: Member, *, lease: float, sees: int) -> Heartbeat:
        """Renew ``member``'s heartbeat and the leases of every file it holds.

        ``sees``: the member count this member has applied to its host shares.
        """
        ...

    async def leave(self, member: Member) -> None:
        """Put every file ``member`` holds back to ``pending`` and forget the member."""
        ...

    async def members(self, *, lease: float) -> list[MemberInfo]:
        """Members whose heartbeat is within ``lease``, oldest first."""
        ...

    # -- planning ------------------------------------------------------------------

    async def plan_turn(
        self, member: Member, generation: int, digest: str, *, lease: float
    ) -> bool:
        """Whether ``member`` plans manifest ``digest`` for ``generation`` now.

        True for the first member to ask, and for a member asking after that
        planner died (its heartbeat older than ``lease``) before ``plan_done``.
        """
        ...

    async def plan_done(self, member: Member, generation: int, digest: str) -> None: ...

    async def plan(
        self, tasks: Sequence[FileTask], generation: int, *, entry: int = 0
    ) -> list[PlannedFile]:
        """Upsert ``tasks`` into ``generation``: return those not yet planned in it.

        New files are ``pending``. A file verified earlier stays verified unless
        its checksum or size changed (then ``pending``); a failed file of an earlier
        generation becomes ``pending`` again; a ``running`` file keeps its holder.
        Idempotent: planning the same tasks twice in one generation returns them
        once and changes nothing the second time.
        """
        ...

    async def progress(self, generation: int, *, lease: float) -> PullProgress: ...

    # -- the work queue -------------------------------------------------------------

    async def claim(self, member: Member, generation: int, n: int, *, lease: float) -> list[Claim]:
        """Hand ``member`` up to ``n`` files of ``generation``: pending ones, and running
        ones whose lease expired, in planning order. No file is handed to two live
        holders at once."""
        ...

    async def complete(
        self, key: str, fence: int | None, *, md5: str, size: int, verified_by: str
    ) -> bool:
        """Mark ``key`` verified (after its rename). With a ``fence``, only while that
        claim still holds the file; returns whether the row was written."""
        ...

    async def fail(self, key: str, fence: int | None, reason: str) -> bool:
        """Mark ``key`` failed; fenced as :meth:`complete`. ``None``: unfenced (the
        planner failing a file it never handed out)."""
        ...

    async def mark_pending(self, key: str) -> None:
        """A verified file found missing or changed on disk: fetch it again."""
        ...

    async def get_validator(self, key: str) -> str | None:
        """The :class:`~mirror._fetch.PartRecord` saved when the ``.part`` was started."""
        ...

    async def set_validator(self, key: str, validator: str | None) -> None: ...

    # -- reading ---------------------------------------------------------------------

    async def generation(self) -> int:
        """The pull's latest generation (0 before any)."""
        ...

    async def counts(self, generation: int | None) -> dict[TaskStatus, tuple[int, int]]:
        """Files and bytes by status among the files planned in ``generation``
        (``None``: every file of the pull, whichever generation planned it)."""
        ...

    async def tally(self, generation: int, prefix: str) -> dict[TaskStatus, int]:
        """Files by status among those of ``generation`` whose key starts with ``prefix``."""
        ...

    def files(
        self,
        generation: int | None,
        *,
        with_verified: bool = False,
        status: TaskStatus | None = None,
    ) -> AsyncIterator[StoredFile]:
        """Every file planned in ``generation`` (and, ``with_verified``, every verified
        file of earlier generations: still on disk), in key order; ``None``: every file
        of the pull. ``status``: only files in that status."""
        ...

    # -- pull-wide bookkeeping ---------------------------------------------------------

    async def once(self, generation: int, name: str) -> bool:
        """True for the first caller of ``name`` in ``generation``, across all members
        (deleting an EGA request label once the pull is done with it)."""
        ...

    async def record_problem(self, generation: int, kind: str, message: str) -> None:
        """Keep why a source could not be planned (``kind`` ``error`` or ``refused``)."""
        ...

    async def problems(self) -> list[tuple[str, str]]:
        """``(kind, message)`` recorded by the latest generation that planned, oldest first."""
        ...

    async def aclose(self) -> None: ...


#: How a user names the store, for messages about one that cannot be used.
_NAMED_BY = "--state (or MIRROR_STATE)"


def gone(host: str, pid: int) -> bool:
    """Whether member ``host``/``pid`` is known to be dead: a process of this host
    that no longer runs (killed, or a zombie its parent has not reaped). A member of
    another host is never known gone: only its lease tells."""
    if host != socket.gethostname() or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # someone else's process: alive
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[-1].split()[0] == b"Z"
    except (OSError, IndexError):
        return False


def pull_key(dest: Path) -> str:
    """The pull's name in a shared store: ``dest``'s absolute, resolved path."""
    return str(dest.resolve())


def sqlite_location(url: str | None, dest: Path) -> tuple[Path, str] | None:
    """The SQLite file ``url`` names and the pull's name in it; ``None`` for PostgreSQL."""
    if url is None:
        # The default store lives in the mirror: it names its pull ".", so a mirror that
        # is moved or mounted elsewhere is still the same pull.
        return dest / ".mirror" / "state.sqlite", "."
    if "://" not in url and url.strip():
        # A plain path: what people type, and free of the sqlite:/// slash-counting.
        path = Path(os.path.expanduser(url))
    elif url.startswith("sqlite:///") and url != "sqlite:///":
        path = Path(url.removeprefix("sqlite:///"))
    elif url.startswith(("postgresql://", "postgres://")):
        return None
    else:
        raise StateUrlError(
            f"unknown state store URL {url!r}: expected a path, sqlite:///PATH or "
            "postgresql://[user@]host[:port]/db",
            file=_NAMED_BY,
        )
    if not path.is_absolute():
        path = Path.cwd() / path
    return path, pull_key(dest)


async def open_store(url: str | None, dest: Path) -> Store:
    """Open the store named by ``url``: ``sqlite:///PATH`` (relative to the current
    directory; ``sqlite:////abs/path`` for an absolute one), a plain path, or
    ``postgresql://[user@]host[:port]/db``; default ``dest/.mirror/state.sqlite``."""
    from ._sqlite import SQLiteStore

    where = sqlite_location(url, dest)
    if where is None:
        from ._postgres import open_postgres

        assert url is not None  # only a postgresql:// URL names no file
        return await open_postgres(url, dest)
    path, pull = where
    store = SQLiteStore(path, pull=pull)
    try:
        await store.open()
    except StateError as exc:
        if url is None:
            raise
        # The store the user named cannot be used: a usage error, nothing was done.
        raise StateUrlError(str(exc), file=_NAMED_BY) from exc
    return store
