"""What can be set about ENA's Portal API, and the state it keeps while it runs."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from .._context import SlidingWindow

__all__ = ["ENA", "EnaOptions", "EnaState"]


@dataclass(frozen=True, kw_only=True, slots=True)
class EnaOptions:
    """ENA's Portal API (``/ena/portal/api``).

    Attributes:
        portal_rate_limit: requests per client in any 1 s window before 429 (ENA's
            documented 50); None disables the limit.
        portal_retry_after: seconds for a Retry-After on those 429s; ENA sends none.
    """

    portal_rate_limit: int | None = 50
    portal_retry_after: int | None = None

    def __post_init__(self) -> None:
        if self.portal_rate_limit is not None and self.portal_rate_limit <= 0:
            raise ValueError("ENA portal_rate_limit must be > 0 requests/s, or None")
        if self.portal_retry_after is not None and self.portal_retry_after < 0:
            raise ValueError("ENA portal_retry_after must be >= 0")


class EnaState:
    """The options, and the requests each client made in the last second."""

    def __init__(self, options: EnaOptions) -> None:
        self.options = options
        limit = options.portal_rate_limit
        self.portal_window = SlidingWindow(limit) if limit is not None else None


ENA = web.AppKey("mirror_emulator_ena", EnaState)
