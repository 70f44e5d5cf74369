"""What a test needs about MGnify: an analysis's downloads, their bytes and SHA1s."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._content import content_bytes, sha1_of
from ._records import MgnifyDownload, download_key

if TYPE_CHECKING:
    from .._catalog import Catalog

__all__ = ["MgnifyControls"]


class MgnifyControls:
    """``emu.mgnify``: oracles for the downloads MGnify serves."""

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog

    def download(self, analysis: str, alias: str) -> MgnifyDownload:
        """A download of an MGnify analysis (MGYA…) by its alias."""
        found = self._catalog.mgnify_analysis(analysis)
        item = found.download(alias) if found is not None else None
        if item is None:
            raise KeyError(f"{analysis}/{alias}")
        return item

    def download_bytes(self, analysis: str, alias: str) -> bytes:
        """The exact bytes served at ``analyses/{analysis}/file/{alias}``."""
        return content_bytes(download_key(analysis, alias), self.download(analysis, alias).size)

    def download_sha1(self, analysis: str, alias: str) -> str:
        """SHA1 hex of a download's bytes, listed or not (the listing omits un-back-filled ones)."""
        return sha1_of(download_key(analysis, alias), self.download(analysis, alias).size)
