"""Sources: each turns one manifest entry into a stream of :class:`~mirror.FileTask` batches."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from .._http import Http
from .._metadata import MetadataWriter
from .._models import FileTask

__all__ = ["Source", "SourceContext"]


@dataclass(frozen=True, kw_only=True, slots=True)
class SourceContext:
    """What a source may use: HTTP, the endpoints, a metadata writer, a warning channel."""

    http: Http
    endpoints: Mapping[str, str]
    metadata: MetadataWriter
    warn: Callable[[str], None]


class Source(Protocol):
    """Expands one manifest entry into file tasks, in batches, as the archive pages them.

    Sources never sleep on their own and never touch files outside ``metadata``: the
    engine's host gates set the pace and the engine owns the files.
    """

    name: str

    def expand(self) -> AsyncIterator[list[FileTask]]: ...
