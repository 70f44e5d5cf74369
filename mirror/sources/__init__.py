"""Sources: each turns one manifest entry into a stream of :class:`~mirror.FileTask` batches."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from .._exceptions import MirrorError, TransferError
from .._fetch import Received
from .._http import Http
from .._metadata import MetadataWriter
from .._models import FileTask, TaskStatus

__all__ = ["FileHooks", "PullLedger", "Source", "SourceContext"]


class PullLedger(Protocol):
    """What a source may ask of the pull as a whole (all its processes), through the store.

    A source's own state lives in one process; the pull's lives here. EGA deletes a
    request label only when the pull, not one process, is done with its dataset.
    """

    async def tally(self, prefix: str) -> dict[TaskStatus, int] | None:
        """Files of this generation by status, among those whose key starts with ``prefix``;
        None when no store keeps the pull (one process: its own bookkeeping decides)."""
        ...

    async def once(self, name: str) -> bool:
        """True for the first caller of ``name`` in this generation, in any process."""
        ...


class _Alone:
    """The ledger of a pull with one process and no store (unit tests, ``plan``)."""

    def __init__(self) -> None:
        self._seen: set[str] = set()

    async def tally(self, prefix: str) -> dict[TaskStatus, int] | None:
        return None

    async def once(self, name: str) -> bool:
        first = name not in self._seen
        self._seen.add(name)
        return first


@dataclass(frozen=True, kw_only=True, slots=True)
class SourceContext:
    """What a source may use: HTTP, the endpoints, a metadata writer, a warning channel."""

    http: Http
    endpoints: Mapping[str, str]
    metadata: MetadataWriter
    warn: Callable[[str], None]
    #: Stable for one ``dest``: sources use it to name server-side state they create
    #: (EGA request labels), so a resumed run finds it again.
    mirror_id: str = "ebi-mirror"
    #: The pull as a whole (every process taking part), through the state store.
    pull: PullLedger = field(default_factory=_Alone)


class Source(Protocol):
    """Expands one manifest entry into file tasks, in batches, as the archive pages them.

    Sources never sleep on their own and never touch files outside ``metadata``: the
    engine's host gates set the pace and the engine owns the files.
    """

    name: str

    def expand(self) -> AsyncIterator[list[FileTask]]: ...


class FileHooks(Protocol):
    """What a source adds around fetching its files, when a plain GET is not enough.

    EGA is the case in point: a ticket must be requested before the download, may
    vanish mid-way (and be requested again), and the bytes are verified by asking
    the server what it sent.
    """

    def recoverable(self, error: TransferError) -> bool:
        """Whether ``error`` (not retryable in general) is worth another attempt here."""
        ...

    async def prepare(self, task: FileTask, error: MirrorError | None) -> FileTask:
        """The task to fetch now, given the previous attempt's error; raise to give up."""
        ...

    async def headers(self, task: FileTask) -> Mapping[str, str]:
        """Headers for one request of ``task`` (a bearer token refreshed in time)."""
        ...

    async def verify(self, task: FileTask, got: Received) -> None:
        """Check a complete ``.part`` against the archive; raise to reject it."""
        ...

    async def settled(self, task: FileTask, verified: bool) -> None:
        """``task`` is done for this run (verified now or earlier, or failed)."""
        ...
