"""What can be set about Webin submission."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from ._records import DEFAULT_WEBIN_ACCOUNTS

__all__ = ["WebinOptions"]


@dataclass(frozen=True, kw_only=True, slots=True)
class WebinOptions:
    """Webin REST V2 and the drop-box (``/ena/submit/webin-v2``, ``/ena/submit/drop-box``).

    Attributes:
        accounts: submission accounts, name (``Webin-…``) → password; default
            ``Webin-12345`` with ``webin-password``.
        poll_pending: polls of a queued submission answered 202 before its receipt
            comes (each submission's own count); default 2.
    """

    accounts: Mapping[str, str] = field(default_factory=lambda: DEFAULT_WEBIN_ACCOUNTS)
    poll_pending: int = 2

    def __post_init__(self) -> None:
        if any(not name or ":" in name for name in self.accounts):
            raise ValueError("Webin account names must be non-empty and contain no ':'")
        if self.poll_pending < 0:
            raise ValueError("Webin poll_pending must be >= 0")
        object.__setattr__(self, "accounts", MappingProxyType(dict(self.accounts)))
