"""What a test needs about Webin: counters, submission ids, the objects submitted."""

from __future__ import annotations

from ._records import WebinObject, WebinStats
from ._state import WebinState

__all__ = ["WebinControls"]


class WebinControls:
    """``emu.webin``: a view into the running submission service."""

    def __init__(self, state: WebinState) -> None:
        self._state = state

    def stats(self) -> WebinStats:
        """Sync submits, queued submissions, polls, receipts handed out, 401s."""
        return self._state.stats()

    def submissions(self) -> list[str]:
        """Submission ids (ERA…) in issue order: every queued one, and every sync
        submission that created or changed something."""
        return self._state.submissions()

    def objects(self, account: str | None = None) -> list[WebinObject]:
        """The objects submitted so far (of one account), in submission order."""
        return self._state.objects(account)
