"""Injectable faults: what can go wrong on the wire, and which request gets it."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any, Literal, get_args

__all__ = ["Fault", "FaultKind", "FaultSet"]

FaultKind = Literal[
    "status",
    "reset",
    "truncate",
    "short",
    "corrupt",
    "slow",
    "no_range",
    "gzip_header",
    "maintenance",
]
_KINDS: frozenset[str] = frozenset(get_args(FaultKind))


@dataclass(frozen=True, kw_only=True, slots=True)
class Fault:
    """One fault rule. The first applicable rule in the set wins for each request.

    Kinds (``after_bytes`` etc. are ignored where they do not apply):

    - ``status``: answer ``status`` (e.g. 429, 500, 503), with ``Retry-After:
      retry_after`` when given.
    - ``reset``: headers, then ``after_bytes`` body bytes, then a TCP reset.
    - ``truncate``: full-length headers, ``after_bytes`` bytes, then a clean close.
    - ``short``: a 200/206 whose Content-Length and body are both ``after_bytes``
      shorter than they should be: it looks complete, only a size check catches it.
    - ``corrupt``: one byte flipped at file offset ``offset`` (default: the middle);
      applies only to a response whose range covers that offset.
    - ``slow``: the body is paced at ``bytes_per_second``; on files, with ``offset``,
      only a response whose range covers that offset (one slow slice).
    - ``no_range``: the Range header is ignored: 200 and the full body.
    - ``gzip_header``: ``Content-Encoding: gzip`` on an unchanged body.
    - ``maintenance``: 200 with an HTML page instead of the answer, as a site under
      maintenance (or a captive proxy) serves it; Portal API only.

    ``match`` is an fnmatch glob on the URL path (with or without its leading ``/``),
    ``host`` limits the rule to one emulated host (``"www"``, ``"ftp"``,
    ``"enterobase"``, ``"ega"``); ``times`` caps how many requests get it;
    ``probability`` draws from the emulator's seeded RNG, so a run is reproducible. On
    the Portal API (chunked bodies of unknown length) only status, maintenance, gzip_header,
    slow, reset and truncate apply; on MGnify's, EnteroBase's and EGA's JSON answers 'short'
    too; EGA's streams and plain files and the CRAM registry's sequences take every
    kind. On Webin a status fault answers before anything is processed (nothing is
    submitted); reset, truncate, short, slow and gzip_header hit the receipt after the
    submission is processed (it is made, the client may never see its receipt). A cut
    fires only if the body is longer than ``after_bytes``.
    """

    kind: FaultKind
    match: str = "*"
    host: str | None = None
    status: int = 503
    retry_after: int | None = None
    after_bytes: int = 0
    offset: int | None = None
    bytes_per_second: int | None = None
    times: int | None = None
    probability: float = 1.0
    together: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {sorted(_KINDS)}")
        if not 100 <= self.status <= 599:
            raise ValueError(f"fault status must be an HTTP status, got {self.status}")
        if self.retry_after is not None and self.retry_after < 0:
            raise ValueError("retry_after must be >= 0")
        if self.after_bytes < 0:
            raise ValueError("after_bytes must be >= 0")
        if self.kind == "short" and self.after_bytes <= 0:
            raise ValueError("a 'short' fault needs after_bytes > 0 (the bytes left out)")
        if self.kind == "slow" and (self.bytes_per_second is None or self.bytes_per_second <= 0):
            raise ValueError("a 'slow' fault needs bytes_per_second > 0")
        if self.offset is not None and self.offset < 0:
            raise ValueError("offset must be >= 0")
        if self.times is not None and self.times < 0:
            raise ValueError("times must be >= 0")
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError("probability must be within [0, 1]")
        if self.together is not None and self.together < 1:
            raise ValueError("together must be >= 1")

    def matches(self, host: str, path: str) -> bool:
        if self.host is not None and self.host != host:
            return False
        return fnmatchcase(path, self.match) or fnmatchcase(path.lstrip("/"), self.match)

    def corrupt_offset(self, size: int) -> int:
        return size // 2 if self.offset is None else self.offset

    def to_dict(self) -> dict[str, Any]:
        return {
            name: value
            for name, value in dataclasses.asdict(self).items()
            if value != _DEFAULTS.get(name, _MISSING)
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Fault:
        unknown = set(data) - _FIELDS
        if unknown:
            raise ValueError(f"unknown fault key(s): {', '.join(sorted(unknown))}")
        return cls(**data)


_MISSING = object()
_GATHER_WAIT = 10.0
_FIELDS = frozenset(field.name for field in dataclasses.fields(Fault))
_DEFAULTS = {
    field.name: field.default
    for field in dataclasses.fields(Fault)
    if field.default is not dataclasses.MISSING
}


class _Armed:
    __slots__ = ("fault", "met", "used")

    def __init__(self, fault: Fault) -> None:
        self.fault = fault
        self.used = 0
        self.met: asyncio.Event | None = None


class FaultSet:
    """The emulator's live fault rules (``emu.faults``); add and clear them between requests."""

    def __init__(self, faults: Iterable[Fault] = (), *, seed: int = 0) -> None:
        self._armed = [_Armed(fault) for fault in faults]
        self._rng = random.Random(seed)

    def add(self, fault: Fault) -> None:
        self._armed.append(_Armed(fault))

    def clear(self) -> None:
        self._armed.clear()

    def __iter__(self) -> Iterator[Fault]:
        return iter([armed.fault for armed in self._armed])

    def __len__(self) -> int:
        return len(self._armed)

    def used(self, fault: Fault) -> int:
        """How many requests this rule has been applied to so far."""
        return sum(armed.used for armed in self._armed if armed.fault is fault)

    def pick(self, *, host: str, path: str, applicable: Callable[[Fault], bool]) -> Fault | None:
        """Choose the fault for one request, and count it as used.

        ``applicable`` is the handler's say: a 'corrupt' rule is skipped (and keeps
        its ``times``) for a range that does not cover its byte, a body fault for a
        HEAD request. The RNG is drawn only for rules with probability < 1, so adding
        a certain rule does not shift the draws of the others.
        """
        for armed in self._armed:
            fault = armed.fault
            if fault.times is not None and armed.used >= fault.times:
                continue
            if not fault.matches(host, path) or not applicable(fault):
                continue
            if fault.probability < 1.0 and self._rng.random() >= fault.probability:
                continue
            armed.used += 1
            if fault.together is not None and armed.used >= fault.together and armed.met:
                armed.met.set()
            return fault
        return None

    async def gather(self, fault: Fault) -> None:
        """Wait until ``fault.together`` requests have met ``fault`` (at most 10 s)."""
        if fault.together is None:
            return
        for armed in self._armed:
            if armed.fault is fault:
                break
        else:
            return
        if armed.used >= fault.together:
            return
        if armed.met is None:
            armed.met = asyncio.Event()
        # A bounded wait: a test that expects more requests than come still ends.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_GATHER_WAIT):
                await armed.met.wait()
