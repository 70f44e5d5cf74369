"""What a test needs about MGnify: an analysis's downloads, their bytes and SHA1s; v2's
clock, signed links and tokens."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._content import content_bytes, sha1_of
from ._records import MgnifyDownload, download_key
from ._v2 import MgnifyV2State, index_size

if TYPE_CHECKING:
    from .._catalog import Catalog

__all__ = ["MgnifyControls"]


class MgnifyControls:
    """``emu.mgnify``: oracles for the downloads MGnify serves, and v2's switches.

    v2's clock (signed links' ``expires``, JWT ``exp``) is the real time plus what
    ``advance`` added, so tests move it instead of sleeping.
    """

    def __init__(self, catalog: Catalog, v2: MgnifyV2State | None = None) -> None:
        self._catalog = catalog
        self._v2 = v2

    def download(self, analysis: str, alias: str) -> MgnifyDownload:
        """A download of an MGnify analysis (MGYA…) by its alias."""
        found = self._catalog.mgnify_analysis(analysis)
        item = found.download(alias) if found is not None else None
        if item is None:
            raise KeyError(f"{analysis}/{alias}")
        return item

    def download_bytes(self, analysis: str, alias: str) -> bytes:
        """The exact bytes served at ``analyses/{analysis}/file/{alias}`` (and at its v2 URL)."""
        return content_bytes(download_key(analysis, alias), self.download(analysis, alias).size)

    def download_sha1(self, analysis: str, alias: str) -> str:
        """SHA1 hex of a download's bytes, listed or not (the listing omits un-back-filled ones)."""
        return sha1_of(download_key(analysis, alias), self.download(analysis, alias).size)

    def index_bytes(self, analysis: str, alias: str, index_type: str) -> bytes:
        """The bytes of a v2 download's index file (``index_files[]``)."""
        size = index_size(self.download(analysis, alias).size)
        return content_bytes(f"{download_key(analysis, alias)}.{index_type}", size)

    @property
    def v2(self) -> MgnifyV2State:
        if self._v2 is None:
            raise RuntimeError("these controls have no MGnify v2 state")
        return self._v2

    def advance(self, seconds: float) -> None:
        """Move v2's clock forward: links and tokens age."""
        self.v2.offset += seconds

    def advance_after(self, path_part: str, seconds: float) -> None:
        """Move v2's clock by ``seconds`` once the next private-data request whose path
        contains ``path_part`` ends (served, cut or refused): the next request of that
        file meets an expired link."""
        self.v2.advance_after.append((path_part, seconds))

    def wrong_sha1(self, analysis: str, alias: str) -> None:
        """Make v1's listing give a wrong SHA1 for this download."""
        self.download(analysis, alias)
        self.v2.wrong_sha1.add((analysis, alias))

    @property
    def private_targets(self) -> list[str]:
        """Private-data request targets (path and query) exactly as clients sent them."""
        return list(self.v2.private_targets)

    def token(self, user: str = "Webin-1001") -> str:
        """A fresh v2 JWT for ``user``, as ``POST /auth/sliding`` would issue it."""
        return self.v2.issue(user)
