"""The Emulator's EGA controls and oracles: expected bytes and MD5s, expiry on demand, counters."""

from __future__ import annotations

from .._catalog import Catalog
from .._content import content_bytes
from .._context import Context
from ._records import EgaFile, plain_md5, stream_bytes, stream_md5
from ._state import EgaStats, EgaTicket

__all__ = ["EgaControls"]


class EgaControls:
    """Mixed into Emulator: everything a test needs to drive and check the ``ega`` host.

    Time-based behaviour (idle sessions, token lifetimes, the 7-day ticket limit)
    follows an EGA clock that ``ega_advance`` moves forward, so tests never sleep.
    """

    catalog: Catalog
    _context: Context

    def ega_file(self, file_id: str) -> EgaFile:
        """The catalog's EGA file ``EGAF…``."""
        found = self.catalog.ega_file(file_id)
        if found is None:
            raise KeyError(file_id)
        return found

    def ega_plain_bytes(self, file_id: str) -> bytes:
        """The plain bytes the Data API serves for ``file_id``; for small files."""
        found = self.ega_file(file_id)
        return content_bytes(found.content_key, found.size)

    def ega_plain_md5(self, file_id: str) -> str:
        """MD5 hex of the plain bytes: the Data API's ``plainChecksum`` (cached)."""
        return plain_md5(self.ega_file(file_id))

    def ega_stream_bytes(self, file_id: str, rekey: str) -> bytes:
        """The REST v2 stream a ticket requested with ``rekey`` serves; for small files."""
        return stream_bytes(self.ega_file(file_id), rekey)

    def ega_stream_md5(self, file_id: str, rekey: str) -> str:
        """MD5 hex of that stream: what ``/results`` reports (unless told to lie)."""
        return stream_md5(self.ega_file(file_id), rekey)

    def ega_tickets(self, user: str | None = None, label: str | None = None) -> list[EgaTicket]:
        """Live download tickets in issue order, optionally of one user and label."""
        return self._context.ega.tickets(user, label)

    def ega_expire_ticket(self, ticket: str) -> bool:
        """Remove a ticket now, as its 7 days running out would; False if it was gone."""
        return self._context.ega.remove(ticket, "expired")

    def ega_expire_sessions(self) -> int:
        """End every REST v2 session now (their next use answers 991); how many there were."""
        return self._context.ega.expire_sessions()

    def ega_session_tokens(self) -> list[str]:
        """Every REST v2 session token issued so far (to check none leaked anywhere)."""
        return list(self._context.ega.issued_sessions)

    def ega_expire_tokens(self) -> int:
        """Invalidate every Data API bearer token now (next use: 401); how many there were."""
        return self._context.ega.expire_tokens()

    def ega_advance(self, seconds: float) -> None:
        """Move the EGA clock forward: sessions idle, tokens age, tickets near 7 days."""
        self._context.ega.clock.advance(seconds)

    def ega_wrong_results(self, file_id: str, wrong: bool = True) -> None:
        """Make ``/results`` report a wrong MD5 for ``file_id`` (False: the right one again)."""
        self.ega_file(file_id)
        wrong_results = self._context.ega.wrong_results
        if wrong:
            wrong_results.add(file_id)
        else:
            wrong_results.discard(file_id)

    def ega_download_reports(self) -> list[dict[str, object]]:
        """What clients posted to the Data API's ``download-stats``, in arrival order."""
        return [dict(report) for report in self._context.ega.download_reports]

    def ega_stats(self) -> EgaStats:
        """Logins, lost sessions, tickets issued and removed (and why), token grants."""
        return self._context.ega.stats()
