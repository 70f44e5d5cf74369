"""What ``mirror ls ega`` reports: the datasets an account may download and their files.

The records are plain: the Data API (:mod:`.ega_data`) and the Live Outbox
(:mod:`.ega_outbox`) each fill them from their own listings, so the command prints one
shape whichever protocol was asked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["FILE_KEYS", "ListedDataset", "ListedFile", "checksum_kind"]

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
