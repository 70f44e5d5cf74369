"""What a test needs about ENA's file host: the catalog's files, their bytes, MD5s and URLs."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .._content import content_bytes, md5_of
from ._layout import FTP_HOST
from ._records import EnaFile

if TYPE_CHECKING:
    from .._catalog import Catalog

__all__ = ["EnaControls"]


class EnaControls:
    """``emu.ena``: the files ENA's file host serves, as oracles for downloads."""

    def __init__(self, catalog: Catalog, files_base: Callable[[], str]) -> None:
        self._catalog = catalog
        self._files_base = files_base

    def file(self, path: str) -> EnaFile:
        """The catalog file at ``path``: ``vol1/…``, ``/vol1/…``, or any URL of it."""
        key = path
        _scheme, sep, rest = key.partition("://")
        if sep:
            key = rest.partition("/")[2]
        key = key.removeprefix(FTP_HOST).lstrip("/")
        found = self._catalog.file(key)
        if found is None:
            raise KeyError(path)
        return found

    def file_bytes(self, path: str) -> bytes:
        """The exact bytes served for ``path``; for small files."""
        found = self.file(path)
        return content_bytes(found.path, found.size)

    def file_md5(self, path: str) -> str:
        """MD5 hex of ``path``'s bytes, as the reports give it (cached)."""
        found = self.file(path)
        return md5_of(found.path, found.size)

    def file_url(self, path: str) -> str:
        """``path`` on the emulated file host, e.g. for a direct GET."""
        return f"{self._files_base()}/{self.file(path).path}"
