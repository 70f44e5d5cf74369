"""What can be set about EnteroBase, and the state it keeps while it runs."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from aiohttp import web

from .._context import SlidingWindow
from ._records import EnterobaseAssembly, EnterobaseStore

__all__ = ["ENTEROBASE", "EnterobaseOptions", "EnterobaseState"]


@dataclass(frozen=True, kw_only=True, slots=True)
class EnterobaseOptions:
    """EnteroBase's API v2.0 (``/api/v2.0``) and its FASTA downloads (``/upload``).

    Attributes:
        tokens: API tokens accepted (the Basic user name); default ``test-token``.
        expired_tokens: tokens refused with 401, as expired ones are.
        rate_limit: requests per client in any 1 s window before 503 (EnteroBase's
            documented 3); None disables the limit.
        public_links: next and download links name http://enterobase.warwick.ac.uk,
            as the real ones do; False names the emulator (as does the emulator's
            ``local_links``).
    """

    tokens: Iterable[str] = ("test-token",)
    expired_tokens: Iterable[str] = ()
    rate_limit: int | None = 3
    public_links: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "tokens", frozenset(self.tokens))
        object.__setattr__(self, "expired_tokens", frozenset(self.expired_tokens))
        if self.rate_limit is not None and self.rate_limit <= 0:
            raise ValueError("EnteroBase rate_limit must be > 0 requests/s, or None")
        if any(not token or ":" in token for token in self.tokens):
            # Basic auth splits user:password at the first colon.
            raise ValueError("EnteroBase tokens must be non-empty and contain no ':'")


class EnterobaseState:
    """The options, the records (runtime releases too), and each client's last second."""

    def __init__(
        self, options: EnterobaseOptions, records: Iterable[EnterobaseAssembly] = ()
    ) -> None:
        self.options = options
        self.store = EnterobaseStore(records)
        limit = options.rate_limit
        self.window = SlidingWindow(limit) if limit is not None else None


ENTEROBASE = web.AppKey("mirror_emulator_enterobase", EnterobaseState)
