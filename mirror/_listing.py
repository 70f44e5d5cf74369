"""What ``mirror ls ARCHIVE`` reports: the datasets an account may download and their
files, and the seam a source kind offers the command through (:class:`Listing`).

The records are plain: each source (EGA's Data API, the Live Outbox) fills them from its
own listing, so the command prints one shape whichever archive and protocol was asked.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ._registry import CredentialLookup
    from ._seam import SourceContext

__all__ = ["FILE_KEYS", "ListedDataset", "ListedFile", "Lister", "Listing", "checksum_kind"]

#: A file's keys in ``--json``, in the order the table shows them.
FILE_KEYS = ("id", "name", "size", "status", "checksum_type")


@dataclass(frozen=True, kw_only=True, slots=True)
class ListedFile:
    """One file as the archive lists it.

    ``size`` is the plaintext's, what lands on disk (``None`` when the archive gives
    none); ``status`` is the archive's word (``available``, ``unavailable``...);
    ``checksum_type`` the algorithm of the published plaintext checksum (``""``: none).
    """

    id: str
    name: str
    size: int | None
    status: str
    checksum_type: str

    def to_dict(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in FILE_KEYS}


@dataclass(frozen=True, kw_only=True, slots=True)
class ListedDataset:
    """A dataset; ``files`` is ``None`` when they were not asked for (or could not be
    listed: then ``error`` says why)."""

    id: str
    files: tuple[ListedFile, ...] | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        files = None if self.files is None else [f.to_dict() for f in self.files]
        return {"id": self.id, "files": files, "error": self.error}


def checksum_kind(kind: object, checksum: object) -> str:
    """The checksum's algorithm, upper case: as given, else told by the digest's length."""
    named = str(kind or "").strip().upper().replace("-", "")
    if named:
        return named
    digest = str(checksum or "").strip()
    return {32: "MD5", 40: "SHA1", 64: "SHA256"}.get(len(digest), "") if digest else ""


class Lister(Protocol):
    """A source that can list: what ``mirror ls`` calls."""

    async def granted(self) -> list[ListedDataset]: ...

    async def listing(self, dataset: str) -> ListedDataset: ...


@dataclass(frozen=True, kw_only=True, slots=True)
class Listing:
    """What ``mirror ls KEY`` can show for a source kind (its ``SourceKind.listing``)."""

    #: The protocols it can list through; the first is the default.
    protocols: tuple[str, ...]
    #: Whether a command-line argument names one of its datasets, and what one looks like.
    is_dataset: Callable[[str], bool]
    dataset: str
    #: The lister for a protocol, its credentials looked up (``CredentialsError``) and
    #: built on ``ctx``; closed (its connections) when the listing ends.
    open: Callable[[str, CredentialLookup, SourceContext], AbstractAsyncContextManager[Lister]]
