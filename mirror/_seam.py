"""Where the engine meets the sources: the types both sides import, and nothing else.

A source turns a manifest entry into :class:`~mirror.FileTask` batches and may add
:class:`FileHooks` around the download of its files; the downloader tells a verifier
what it :class:`Received`. Declaring these here, as Protocols, lets mypy check every
source against what the engine calls, and keeps this module free of the heavy ones
(HTTP, metadata) so that any module may import it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from ._exceptions import MirrorError, TransferError
from ._models import FileTask, TaskStatus
from ._tuning import SourceTuning, Tuning

if TYPE_CHECKING:
    from ._dest import Destination
    from ._http import Http
    from ._metadata import MetadataWriter

__all__ = [
    "FileHooks",
    "Landing",
    "OwnTransfer",
    "PullLedger",
    "Received",
    "Source",
    "SourceContext",
    "close_sources",
]


@dataclass(frozen=True, kw_only=True, slots=True)
class Received:
    """A complete ``.part`` file, about to be checked: what a verifier is told."""

    md5: str
    size: int
    path: Path
    #: Where this attempt's response began (past 0 when it resumed a ``.part``).
    offset: int
    sha1: str | None = None
    #: Given by a source's own transfer when its archive publishes SHA-256 (EGA Outbox).
    sha256: str | None = None


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
    """What a source may use: HTTP, the endpoints, a metadata writer (and through it the
    destination), a warning channel."""

    http: Http
    endpoints: Mapping[str, str]
    metadata: MetadataWriter
    warn: Callable[[str], None]
    #: Stable for one ``dest``: sources use it to name server-side state they create
    #: (EGA request labels), so a resumed run finds it again.
    mirror_id: str = "ebi-mirror"
    #: The pull as a whole (every process taking part), through the state store.
    pull: PullLedger = field(default_factory=_Alone)
    #: The run's knobs; a source reads its batch and page sizes from ``tuning.sources``.
    tuning: Tuning = field(default_factory=Tuning)

    @property
    def sizes(self) -> SourceTuning:
        return self.tuning.sources

    @property
    def dest(self) -> Destination:
        """Where the mirror's files are: a source reads and writes files only through it."""
        return self.metadata.dest


class FileHooks(Protocol):
    """What a source adds around fetching its files, when a plain GET is not enough.

    EGA is the case in point: a ticket must be requested before the download, may
    vanish mid-way (and be requested again), and the bytes are verified by asking
    the server what it sent.
    """

    @property
    def parallel_ranges(self) -> bool:
        """Whether a large file may be fetched as several Range requests at once."""
        ...

    @property
    def max_range(self) -> int | None:
        """Most bytes the archive serves in one request (a fact, not a knob): slices
        are cut no larger, whatever the tuning asks. ``None``: no such limit."""
        ...

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


class PartRecords(Protocol):
    """What a ``.part`` was started for (the store's validator of a file)."""

    async def get_validator(self, path: str) -> str | None: ...

    async def set_validator(self, path: str, validator: str | None) -> None: ...


@dataclass(frozen=True, kw_only=True, slots=True)
class Landing:
    """What the downloader hands a source's own transfer for one attempt of one file."""

    dest: Destination
    #: The ``.part`` beside the final path: the transfer writes the file's bytes here.
    part: Path
    final: Path
    #: Where the store keeps what the ``.part`` was started for (:class:`PartRecord`):
    #: set before its first byte, checked before it is continued.
    records: PartRecords
    #: Told the offset the file stands at when the transfer (re)starts.
    started: Callable[[int], None]
    #: Told each piece of the file as it lands.
    progress: Callable[[int], None]


@runtime_checkable
class OwnTransfer(Protocol):
    """Hooks of a source whose files do not come over HTTP (the EGA Outbox's SFTP).

    The downloader calls :meth:`receive` instead of its HTTP fetchers and keeps every
    other rule the same: the attempt loop (retries, backoff, a retryable
    :class:`~mirror.TransferError` continues from the ``.part``), the size and checksum
    checks and :meth:`FileHooks.verify` on the complete ``.part``, then the atomic
    rename and only then the store's ``verified``. The transfer only fills the
    ``.part``: it never lands a file itself.
    """

    async def receive(self, task: FileTask, landing: Landing) -> tuple[Received, int]:
        """Fill ``landing.part`` with the whole file; what it holds and how many bytes
        came over the network in this attempt. Raise a :class:`TransferError`
        (retryable where another attempt may succeed) otherwise."""
        ...


class Source(Protocol):
    """Expands one manifest entry into file tasks, in batches, as the archive pages them.

    Sources never sleep on their own and never touch files outside ``metadata``: the
    engine's host gates set the pace and the engine owns the files.
    """

    @property
    def name(self) -> str:
        """The entry's manifest key, as messages name it (``sources[0].ena``)."""
        ...

    @property
    def hooks(self) -> FileHooks | None:
        """What the source adds around its downloads; ``None`` for a plain GET."""
        ...

    def expand(self) -> AsyncIterator[list[FileTask]]: ...


async def close_sources(sources: Sequence[Source]) -> None:
    """Let go of what sources hold beyond HTTP (the outbox's SSH connection), once the
    run needs them no more: a source may define ``async def aclose()`` for that."""
    for source in sources:
        closer = getattr(source, "aclose", None)
        if closer is not None:
            await closer()
