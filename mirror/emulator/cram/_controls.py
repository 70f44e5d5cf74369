"""What a test needs about the CRAM reference registry: the sequences it serves."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._records import CramReference

if TYPE_CHECKING:
    from .._catalog import Catalog

__all__ = ["CramControls"]


class CramControls:
    """``emu.cram``: oracles for the registry's references."""

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog

    def reference(self, checksum: str) -> CramReference:
        """The catalog's reference with this MD5 or SHA1 (hex, any case)."""
        found = self._catalog.cram_by_md5(checksum) or self._catalog.cram_by_sha1(checksum)
        if found is None:
            raise KeyError(checksum)
        return found

    def sequence(self, md5: str) -> bytes:
        """The exact bytes ``/ena/cram/md5/{md5}`` serves: the uppercase bases."""
        return self.reference(md5).bases()

    def references(self) -> list[tuple[str, str, str, int]]:
        """(name, md5, sha1, length) of every reference, in catalog order."""
        return [(r.name, r.md5, r.sha1, r.length) for r in self._catalog.cram_references]
