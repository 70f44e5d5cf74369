"""Sources: each turns one manifest entry into a stream of :class:`~mirror.FileTask` batches."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from .._exceptions import MirrorError, TransferError
from .._fetch import Received
from .._http import Http
from .._metadata import MetadataWriter
from .._models import FileTask

__all__ = ["FileHooks", "Source", "SourceContext"]


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
