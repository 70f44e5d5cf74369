"""The request log: one LogEntry per request, kept in arrival order and optionally as JSONL."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import time
from dataclasses import dataclass
from typing import IO, Any
from urllib.parse import unquote_plus

__all__ = ["SECRET_PARAMETERS", "Exchange", "LogEntry", "RequestLog", "redact_query"]

#: Query parameters whose values never reach the log: EGA's session token (?session=)
#: and its URL login's password (?pass=), and the usual OAuth2 names for good measure.
SECRET_PARAMETERS = frozenset(
    {"session", "pass", "password", "access_token", "client_secret", "rekey"}
)


def redact_query(query: str) -> str:
    """``query`` with each secret parameter's value replaced by ``***``."""
    if not query:
        return query
    parts = []
    for part in query.split("&"):
        name, eq, _value = part.partition("=")
        if eq and unquote_plus(name).strip().lower() in SECRET_PARAMETERS:
            part = f"{name}=***"
        parts.append(part)
    return "&".join(parts)


@dataclass(frozen=True, kw_only=True, slots=True)
class LogEntry:
    """What the emulator saw and did for one request.

    ``t`` is ``time.time()`` at arrival; ``bytes`` counts body bytes handed to the
    socket (so an aborted transfer shows how far it got); ``fault`` is the kind of the
    fault applied (``"rate_limit"`` for the portal's own 429 and EnteroBase's own
    503), or None. ``form`` is the raw body of a POST (a /search
    ``includeAccessions`` batch), else None; it stays None on the EGA host, whose
    POSTs carry passwords and rekeys, and for Webin submissions. ``query`` has the
    values of SECRET_PARAMETERS (EGA's ``session=``, ``pass=``) replaced by ``***``.
    Request headers are never logged, so no credential (EnteroBase's Basic token,
    EGA's Basic login or bearer token, a Webin password) reaches the log.
    """

    t: float
    host: str
    method: str
    path: str
    query: str
    range: str | None
    status: int
    bytes: int
    fault: str | None
    form: str | None = None
    #: ``time.time()`` when the request ended (its body sent, or cut off): with ``t``,
    #: which requests were in flight together.
    ended: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LogEntry:
        return cls(**data)


@dataclass(kw_only=True, slots=True)
class Exchange:
    """The mutable record of a request in flight; handlers add bytes and the fault."""

    t: float
    host: str
    method: str
    path: str
    query: str
    range: str | None
    form: str | None = None
    bytes: int = 0
    fault: str | None = None
    # Set by streaming handlers once headers are committed: the status a request had
    # if it dies mid-body (client gone, server stopping).
    status: int | None = None

    def entry(self, status: int) -> LogEntry:
        return LogEntry(
            t=self.t,
            host=self.host,
            method=self.method,
            path=self.path,
            query=self.query,
            range=self.range,
            status=status,
            bytes=self.bytes,
            fault=self.fault,
            form=self.form,
            ended=time.time(),
        )


class RequestLog:
    """Entries in arrival order; the JSONL file gets each line when its request ends.

    A slot is reserved when a request arrives and filled when it finishes, so
    ``entries()`` stays in arrival order although long responses finish late.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, keep: bool = True) -> None:
        # keep=False: only the JSONL file, so a million-request benchmark run
        # in-process does not measure the emulator's memory instead of the engine's.
        self._path = path
        self._keep = keep
        self._file: IO[str] | None = None
        self._slots: list[LogEntry | None] = []
        self._open = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def open_file(self) -> None:
        if self._path is not None and self._file is None:
            self._file = open(self._path, "a", encoding="utf-8")  # noqa: SIM115 (closed in close_file)

    def close_file(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def reserve(self) -> int:
        self._open += 1
        self._idle.clear()
        if not self._keep:
            return -1
        self._slots.append(None)
        return len(self._slots) - 1

    def fill(self, slot: int, entry: LogEntry) -> None:
        if slot >= 0:
            self._slots[slot] = entry
        self._open -= 1
        if self._open == 0:
            self._idle.set()
        if self._file is not None:
            # Flushed per line: subprocess tests read the log while the emulator runs,
            # and a SIGKILL must not lose what was already served.
            self._file.write(json.dumps(entry.to_dict()) + "\n")
            self._file.flush()

    def entries(self) -> list[LogEntry]:
        return [entry for entry in self._slots if entry is not None]

    def clear(self) -> None:
        # Slots of requests still in flight stay reserved, their indexes must stay valid.
        self._slots = [None] * len(self._slots) if self._open else []

    async def wait_idle(self) -> None:
        await self._idle.wait()
