"""The validated manifest: frozen, keyword-only dataclasses, built by ``_manifest``.

Each source's entry (its spec) is declared by its source module; the registry
(:mod:`mirror._registry`) knows them all.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Literal, TypeAlias

from ._registry import default_endpoints, kinds

if TYPE_CHECKING:
    # Defined by their sources; importable from here as they always were.
    from .sources.cram import CramRefsSpec as CramRefsSpec
    from .sources.ega_spec import EgaSpec as EgaSpec
    from .sources.ena_spec import EnaSpec as EnaSpec
    from .sources.enterobase import EnterobaseSpec as EnterobaseSpec
    from .sources.mgnify import MgnifySpec as MgnifySpec

    #: Every service URL by ``endpoints:`` key (see ``_registry.default_endpoints``).
    DEFAULT_ENDPOINTS: Mapping[str, str]

__all__ = [
    "DEFAULT_ENDPOINTS",
    "DEFAULT_HOSTS",
    "HOST_SCOPES",
    "CramRefsSpec",
    "EgaSpec",
    "EnaSpec",
    "EnterobaseSpec",
    "HostLimit",
    "HostScope",
    "Manifest",
    "MgnifySpec",
    "SourceSpec",
    "Timeouts",
]

HostScope = Literal["pull", "member"]
HOST_SCOPES: tuple[HostScope, ...] = ("pull", "member")


@dataclass(frozen=True, kw_only=True, slots=True)
class HostLimit:
    """Limits for every request to one host: metadata and files alike."""

    #: Requests per second, as "never more than ``rate`` in any one-second window".
    rate: float | None = None
    #: Open connections at once.
    connections: int = 8
    #: Whom the limits bind when several processes share a pull: ``"pull"``, all of
    #: them together (the live members split ``rate`` and ``connections``); ``"member"``,
    #: each process on its own (machines that reach the host over different networks).
    scope: HostScope = "pull"

    def __post_init__(self) -> None:
        if self.rate is not None and self.rate <= 0:
            raise ValueError("rate must be positive")
        if self.connections < 1:
            raise ValueError("connections must be at least 1")
        if self.scope not in HOST_SCOPES:
            raise ValueError(f"scope must be one of {', '.join(HOST_SCOPES)}")


@dataclass(frozen=True, kw_only=True, slots=True)
class Timeouts:
    """How long to wait for a host before calling it hung or down (seconds)."""

    #: To open a connection (TCP and TLS handshake).
    connect: float = 15.0
    #: For the next bytes of an answer: the status line, or more of a body. A stalled
    #: body is noticed after this long.
    read: float = 30.0
    #: A host whose connections keep failing is paused and probed one request at a
    #: time; after this long without an answer its remaining files fail together.
    host_down: float = 90.0

    def __post_init__(self) -> None:
        if min(self.connect, self.read, self.host_down) <= 0:
            raise ValueError("timeouts must be positive")


#: Limits of the public hosts: the published ones (SPEC.md: ENA 50 req/s, EnteroBase
#: 1 req/s), and what ENA's file server tolerates: ftp.sra.ebi.ac.uk refuses more than
#: about 6 parallel connections from one client (other downloaders cap it there too).
DEFAULT_HOSTS: Mapping[str, HostLimit] = MappingProxyType(
    {
        "www.ebi.ac.uk": HostLimit(rate=50, connections=8),
        "enterobase.warwick.ac.uk": HostLimit(rate=1, connections=1),
        "ftp.sra.ebi.ac.uk": HostLimit(connections=6),
        # The Webin upload area publishes no limit; webin-cli sends one file at a time.
        # Four uploads at once (a control and a data connection each) stays polite.
        "webin2.ebi.ac.uk": HostLimit(connections=4),
    }
)


#: A validated manifest entry: the spec of a registered source kind (``mirror._registry``).
SourceSpec: TypeAlias = object


@dataclass(frozen=True, kw_only=True, slots=True)
class Manifest:
    """A validated manifest. Paths are absolute; endpoints are complete."""

    dest: Path
    sources: tuple[SourceSpec, ...]
    version: int = 1
    workers: int = 16
    hosts: Mapping[str, HostLimit] = field(default_factory=lambda: MappingProxyType({}))
    endpoints: Mapping[str, str] = field(default_factory=default_endpoints)
    timeouts: Timeouts = field(default_factory=Timeouts)
    #: Where the manifest came from (for messages), if it came from a file.
    origin: str | None = None
    #: nf-core samplesheet formats written to ``dest/samplesheets/`` after each run.
    samplesheets: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError("workers must be at least 1")

    def host_limit(self, host: str) -> HostLimit:
        """Limits for ``host`` (``host`` or ``host:port``): manifest, then defaults."""
        bare = _bare_host(host)
        for key in (host, bare):
            if key in self.hosts:
                return self.hosts[key]
        for key in (host, bare):
            if key in DEFAULT_HOSTS:
                return DEFAULT_HOSTS[key]
        return HostLimit()


def _bare_host(key: str) -> str:
    """``key`` without its port: ``[::1]:8080`` → ``[::1]``, ``host:80`` → ``host``."""
    head, colon, port = key.rpartition(":")
    if colon and port.isdigit() and (head.endswith("]") or ":" not in head):
        return head
    return key


def __getattr__(name: str) -> object:
    # ``DEFAULT_ENDPOINTS`` and the spec classes, looked up in the registry when first
    # asked for: the sources that declare them import this module.
    if name == "DEFAULT_ENDPOINTS":
        return default_endpoints()
    if not name.startswith("__"):  # the import system asks for ``__path__``
        for kind in kinds():
            if kind.spec.__name__ == name:
                return kind.spec
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
