"""What can be set about EGA: accounts, grants, lifetimes, range support, wrong results."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

__all__ = ["DEFAULT_EGA_USERS", "PYEGA3_TEST_USER", "EgaOptions"]

#: The docs' own example account, and the public test account that pyega3's ``-t``
#: logs in with (pyega3/config/default_credential_file.json).
PYEGA3_TEST_USER = ("ega-test-data@ebi.ac.uk", "egarocks")
DEFAULT_EGA_USERS: Mapping[str, str] = MappingProxyType(
    {"testuser@ebi.ac.uk": "testpassword", PYEGA3_TEST_USER[0]: PYEGA3_TEST_USER[1]}
)
_DAY = 86400.0


@dataclass(frozen=True, kw_only=True, slots=True)
class EgaOptions:
    """EGA's REST API v2 (access, download) and its Data API, on the ``ega`` host.

    Time-based limits follow EGA's own clock, which ``emu.ega.advance`` moves.

    Attributes:
        users: accounts, user name → password (both protocols); default
            ``testuser@ebi.ac.uk`` and pyega3's public test account.
        grants: user → the datasets it may access; None: everyone, everything.
        session_idle: seconds a REST v2 session lives unused (EGA: 10 minutes).
        token_ttl: lifetime in seconds of a Data API bearer token (default 3600).
        ticket_ttl: seconds before an undownloaded ticket is removed (EGA: 7 days).
        range_support: False makes REST v2 streams ignore Range (200, whole); the Data
            API always honours it.
        wrong_results: file IDs whose ``/results`` report a wrong MD5.
    """

    users: Mapping[str, str] = field(default_factory=lambda: DEFAULT_EGA_USERS)
    grants: Mapping[str, Iterable[str]] | None = None
    session_idle: float = 600.0
    token_ttl: float = 3600.0
    ticket_ttl: float = 7 * _DAY
    range_support: bool = True
    wrong_results: Iterable[str] = ()

    def __post_init__(self) -> None:
        if self.session_idle <= 0 or self.token_ttl <= 0 or self.ticket_ttl <= 0:
            raise ValueError("EGA session_idle, token_ttl and ticket_ttl must be > 0 seconds")
        if any(not user or ":" in user for user in self.users):
            raise ValueError("EGA user names must be non-empty and contain no ':'")
        object.__setattr__(self, "users", MappingProxyType(dict(self.users)))
        if self.grants is not None:
            grants = {user: frozenset(datasets) for user, datasets in self.grants.items()}
            object.__setattr__(self, "grants", MappingProxyType(grants))
        object.__setattr__(self, "wrong_results", frozenset(self.wrong_results))
