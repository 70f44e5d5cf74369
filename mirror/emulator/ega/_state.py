"""EGA's live state: users, REST v2 sessions and tickets, download results, Data API tokens."""

from __future__ import annotations

import base64
import collections
import dataclasses
import json
import random
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal
from urllib.parse import unquote_plus

from aiohttp import web

from ._options import EgaOptions
from ._records import EgaDataset, EgaFile

__all__ = [
    "DEFAULT_EGA_CLIENTS",
    "EGA",
    "EgaClock",
    "EgaResult",
    "EgaState",
    "EgaStats",
    "EgaTicket",
]

#: OAuth clients the token endpoint accepts, by id: pyega3's, as its default server
#: file publishes it (the id in pyega3/libs/auth_client.py).
DEFAULT_EGA_CLIENTS: Mapping[str, str] = MappingProxyType(
    {
        "f20cd2d3-682a-4568-a53e-4262ef54c8f4": (
            "AMenuDLjVdVo4BSwi0QD54LL6NeVDEZRzEQUJ7hJOM3g4imDZBHHX0hNfKHPeQIGkskhtCmqAJtt_jm7EKq-rWw"
        )
    }
)
Removal = Literal["completed", "expired", "deleted"]


def _compact(doc: Mapping[str, object]) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


class EgaClock:
    """Monotonic seconds that tests can move forward (idle sessions, tokens, 7-day tickets)."""

    def __init__(self) -> None:
        self._offset = 0.0

    def now(self) -> float:
        return time.monotonic() + self._offset

    def wall(self) -> float:
        return time.time() + self._offset

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self._offset += seconds


@dataclass(frozen=True, kw_only=True, slots=True)
class EgaTicket:
    """One file of a download request: its download URL is ``{download}/downloads/{ticket}``."""

    ticket: str
    user: str
    label: str
    file: EgaFile
    # The user's re-encryption key: never listed (encryptionKey is always ""), never logged.
    rekey: str = field(repr=False)
    created: float


@dataclass(frozen=True, kw_only=True, slots=True)
class EgaResult:
    """What ``/results/{ticket}`` reports once the ticket's stream was sent to the end."""

    file: EgaFile
    rekey: str = field(repr=False)


@dataclass(frozen=True, kw_only=True, slots=True)
class EgaStats:
    """Counters since the emulator started (``emu.ega.stats()``)."""

    logins: int = 0
    login_failures: int = 0
    logouts: int = 0
    sessions_lost: int = 0
    tickets_issued: int = 0
    tickets_completed: int = 0
    tickets_expired: int = 0
    tickets_deleted: int = 0
    results_mismatched: int = 0
    token_grants: int = 0
    token_refusals: int = 0
    client_refusals: int = 0
    bearer_refusals: int = 0
    download_stats: int = 0

    @property
    def tickets_removed(self) -> int:
        return self.tickets_completed + self.tickets_expired + self.tickets_deleted


_STAT_NAMES = frozenset(f.name for f in dataclasses.fields(EgaStats))


class EgaState:
    """Everything EGA remembers between requests; one per emulator, shared by both APIs."""

    def __init__(
        self,
        datasets: Iterable[EgaDataset] = (),
        options: EgaOptions | None = None,
        *,
        clients: Mapping[str, str] = DEFAULT_EGA_CLIENTS,
        seed: int = 0,
    ) -> None:
        options = options if options is not None else EgaOptions()
        self.datasets = tuple(datasets)
        self.users = dict(options.users)
        self.clients = dict(clients)
        #: What clients posted to ``download-stats``, in arrival order.
        self.download_reports: list[dict[str, object]] = []
        grants = options.grants
        self.grants = None if grants is None else {u: frozenset(d) for u, d in grants.items()}
        self.session_idle = options.session_idle
        self.token_ttl = options.token_ttl
        self.ticket_ttl = options.ticket_ttl
        self.range_support = options.range_support
        self.wrong_results = set(options.wrong_results)
        self.clock = EgaClock()
        self._rng = random.Random(f"ega\0{seed}")
        self._sessions: dict[str, tuple[str, float]] = {}
        #: Every session token handed out, so tests can look for leaks of them.
        self.issued_sessions: list[str] = []
        self._tickets: dict[str, EgaTicket] = {}
        self._results: dict[str, EgaResult] = {}
        self._bearers: dict[str, tuple[str, float]] = {}
        self._counts: collections.Counter[str] = collections.Counter()

    # Users and authorisation.

    def authenticate(self, username: str, password: str) -> str | None:
        """The account name if the password is right, else None.

        The docs' clients URL-encode both values inside the JSON (testuser%40ebi.ac.uk),
        others send them plain: each is tried as given and URL-decoded.
        """
        for name in dict.fromkeys((username, unquote_plus(username))):
            expected = self.users.get(name)
            if expected is not None and expected in (password, unquote_plus(password)):
                return name
        return None

    def client_ok(self, client_id: str, secret: str) -> bool:
        """Whether ``client_id`` is a registered OAuth client and ``secret`` is its own."""
        expected = self.clients.get(client_id)
        return expected is not None and secret == expected

    def count(self, name: str) -> None:
        assert name in _STAT_NAMES, name
        self._counts[name] += 1

    def may_access(self, user: str, dataset: str) -> bool:
        return self.grants is None or dataset in self.grants.get(user, frozenset())

    def datasets_for(self, user: str) -> list[EgaDataset]:
        return [d for d in self.datasets if self.may_access(user, d.dataset_id)]

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    # REST v2 sessions: Shiro's, expiring after session_idle seconds without use.

    def open_session(self, user: str) -> str:
        now = self.clock.now()
        # Logins are rare: forget the idle sessions here, so abandoned ones do not pile up.
        for old in [
            t for t, (_u, used) in self._sessions.items() if now - used > self.session_idle
        ]:
            del self._sessions[old]
        token = self._uuid()
        self._sessions[token] = (user, now)
        self.issued_sessions.append(token)
        self.count("logins")
        return token

    def session_user(self, token: str | None) -> str | None:
        """The session's user, touching it; None (and counted) if it is gone."""
        now = self.clock.now()
        if token:
            found = self._sessions.pop(token, None)
            if found is not None and now - found[1] <= self.session_idle:
                self._sessions[token] = (found[0], now)
                return found[0]
        self.count("sessions_lost")
        return None

    def close_session(self, token: str | None) -> None:
        if token:
            self._sessions.pop(token, None)
        self.count("logouts")

    def expire_sessions(self) -> int:
        count = len(self._sessions)
        self._sessions.clear()
        return count

    # REST v2 tickets.

    def _purge_tickets(self) -> None:
        # Tickets sit in issue order and the clock never goes back: the old ones lead,
        # so a download of one ticket among thousands costs no scan of them all.
        deadline = self.clock.now() - self.ticket_ttl
        while self._tickets:
            oldest = next(iter(self._tickets.values()))
            if oldest.created > deadline:
                break
            self.remove(oldest.ticket, "expired")

    def request(
        self, user: str, label: str, files: Iterable[EgaFile], rekey: str
    ) -> list[EgaTicket]:
        """One ticket per file under ``label``, reusing the live ones the label has.

        A repeated request adds tickets only for files the label has none for (never
        ticketed, or removed since); the answer lists the ticket of every file asked for.
        """
        self._purge_tickets()
        have = {
            t.file.file_id: t for t in self._tickets.values() if (t.user, t.label) == (user, label)
        }
        answer = []
        for item in files:
            ticket = have.get(item.file_id)
            if ticket is None:
                ticket = EgaTicket(
                    ticket=self._uuid(),
                    user=user,
                    label=label,
                    file=item,
                    rekey=rekey,
                    created=self.clock.now(),
                )
                self._tickets[ticket.ticket] = have[item.file_id] = ticket
                self.count("tickets_issued")
            answer.append(ticket)
        return answer

    def tickets(self, user: str | None = None, label: str | None = None) -> list[EgaTicket]:
        """Live tickets in issue order, optionally of one user and one label."""
        self._purge_tickets()
        return [
            t
            for t in self._tickets.values()
            if (user is None or t.user == user) and (label is None or t.label == label)
        ]

    def ticket(self, ticket: str) -> EgaTicket | None:
        self._purge_tickets()
        return self._tickets.get(ticket)

    def remove(self, ticket: str, why: Removal) -> bool:
        found = self._tickets.pop(ticket, None)
        if found is None:
            return False
        self.count(f"tickets_{why}")
        if why == "completed":
            self._results[ticket] = EgaResult(file=found.file, rekey=found.rekey)
        return True

    def result(self, ticket: str) -> EgaResult | None:
        return self._results.get(ticket)

    # Data API bearer tokens.

    def grant(self, user: str) -> str:
        """A new access token for ``user``, valid for token_ttl seconds."""
        issued = self.clock.wall()
        header = {"alg": "RS256", "kid": "rsa1", "typ": "JWT"}
        claims = {
            "sub": user,
            "iss": "https://ega.ebi.ac.uk:8443/ega-openid-connect-server/",
            "iat": int(issued),
            "exp": int(issued + self.token_ttl),
            "jti": self._uuid(),
        }
        signature = self._rng.randbytes(64)
        now = self.clock.now()
        for old in [t for t, (_u, expires) in self._bearers.items() if now >= expires]:
            del self._bearers[old]
        token = ".".join(
            base64.urlsafe_b64encode(part).decode().rstrip("=")
            for part in (_compact(header), _compact(claims), signature)
        )
        self._bearers[token] = (user, now + self.token_ttl)
        self.count("token_grants")
        return token

    def bearer_user(self, token: str | None) -> str | None:
        """The token's user while it is valid; None (and counted) otherwise."""
        found = self._bearers.get(token) if token else None
        if token and found is not None:
            if self.clock.now() < found[1]:
                return found[0]
            del self._bearers[token]
        self.count("bearer_refusals")
        return None

    def expire_tokens(self) -> int:
        count = len(self._bearers)
        self._bearers.clear()
        return count

    def stats(self) -> EgaStats:
        return EgaStats(**{name: self._counts[name] for name in _STAT_NAMES})


EGA = web.AppKey("mirror_emulator_ega", EgaState)
