"""What a test needs about EGA: expected bytes and MD5s, expiry on demand, counters."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._content import content_bytes
from ._records import EgaFile, plain_md5, stream_bytes, stream_md5
from ._state import EgaState, EgaStats, EgaTicket

if TYPE_CHECKING:
    from .._catalog import Catalog

__all__ = ["EgaControls"]


class EgaControls:
    """``emu.ega``: everything a test needs to drive and check the ``ega`` host.

    Time-based behaviour (idle sessions, token lifetimes, the 7-day ticket limit)
    follows an EGA clock that ``advance`` moves forward, so tests never sleep.
    """

    def __init__(self, catalog: Catalog, state: EgaState) -> None:
        self._catalog = catalog
        self._state = state

    def file(self, file_id: str) -> EgaFile:
        """The catalog's EGA file ``EGAF…``."""
        found = self._catalog.ega_file(file_id)
        if found is None:
            raise KeyError(file_id)
        return found

    def plain_bytes(self, file_id: str) -> bytes:
        """The plain bytes the Data API serves for ``file_id``; for small files."""
        found = self.file(file_id)
        return content_bytes(found.content_key, found.size)

    def plain_md5(self, file_id: str) -> str:
        """MD5 hex of the plain bytes: the Data API's ``plainChecksum`` (cached)."""
        return plain_md5(self.file(file_id))

    def stream_bytes(self, file_id: str, rekey: str) -> bytes:
        """The REST v2 stream a ticket requested with ``rekey`` serves; for small files."""
        return stream_bytes(self.file(file_id), rekey)

    def stream_md5(self, file_id: str, rekey: str) -> str:
        """MD5 hex of that stream: what ``/results`` reports (unless told to lie)."""
        return stream_md5(self.file(file_id), rekey)

    def tickets(self, user: str | None = None, label: str | None = None) -> list[EgaTicket]:
        """Live download tickets in issue order, optionally of one user and label."""
        return self._state.tickets(user, label)

    def expire_ticket(self, ticket: str) -> bool:
        """Remove a ticket now, as its 7 days running out would; False if it was gone."""
        return self._state.remove(ticket, "expired")

    def expire_sessions(self) -> int:
        """End every REST v2 session now (their next use answers 991); how many there were."""
        return self._state.expire_sessions()

    def session_tokens(self) -> list[str]:
        """Every REST v2 session token issued so far (to check none leaked anywhere)."""
        return list(self._state.issued_sessions)

    def expire_tokens(self) -> int:
        """Invalidate every Data API bearer token now (next use: 401); how many there were."""
        return self._state.expire_tokens()

    def advance(self, seconds: float) -> None:
        """Move the EGA clock forward: sessions idle, tokens age, tickets near 7 days."""
        self._state.clock.advance(seconds)

    def wrong_results(self, file_id: str, wrong: bool = True) -> None:
        """Make ``/results`` report a wrong MD5 for ``file_id`` (False: the right one again)."""
        self.file(file_id)
        wrong_results = self._state.wrong_results
        if wrong:
            wrong_results.add(file_id)
        else:
            wrong_results.discard(file_id)

    def download_reports(self) -> list[dict[str, object]]:
        """What clients posted to the Data API's ``download-stats``, in arrival order."""
        return [dict(report) for report in self._state.download_reports]

    def stats(self) -> EgaStats:
        """Logins, lost sessions, tickets issued and removed (and why), token grants."""
        return self._state.stats()
