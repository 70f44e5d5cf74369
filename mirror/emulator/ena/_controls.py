"""The Emulator's CRAM registry and Webin controls: expected sequences, counters, submissions."""

from __future__ import annotations

from .._catalog import Catalog
from .._context import Context
from ..cram._records import CramReference
from ..webin._records import WebinObject, WebinStats

__all__ = ["EnaControls"]


class EnaControls:
    """Mixed into Emulator: oracles for the CRAM registry, and a view into Webin."""

    catalog: Catalog
    _context: Context

    def cram_reference(self, checksum: str) -> CramReference:
        """The catalog's reference with this MD5 or SHA1 (hex, any case)."""
        found = self.catalog.cram_by_md5(checksum) or self.catalog.cram_by_sha1(checksum)
        if found is None:
            raise KeyError(checksum)
        return found

    def cram_sequence(self, md5: str) -> bytes:
        """The exact bytes ``/ena/cram/md5/{md5}`` serves: the uppercase bases."""
        return self.cram_reference(md5).bases()

    def cram_references(self) -> list[tuple[str, str, str, int]]:
        """(name, md5, sha1, length) of every reference, in catalog order."""
        return [(r.name, r.md5, r.sha1, r.length) for r in self.catalog.cram_references]

    def webin_stats(self) -> WebinStats:
        """Sync submits, queued submissions, polls, receipts handed out, 401s."""
        return self._context.webin.stats()

    def webin_submissions(self) -> list[str]:
        """Submission ids (ERA…) in issue order: every queued one, and every sync
        submission that created or changed something."""
        return self._context.webin.submissions()

    def webin_objects(self, account: str | None = None) -> list[WebinObject]:
        """The objects submitted so far (of one account), in submission order."""
        return self._context.webin.objects(account)
