"""The validated manifest: frozen, keyword-only dataclasses, built by ``_manifest``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Literal

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

#: Public service base URLs (SPEC.md); overridable under ``endpoints:``.
DEFAULT_ENDPOINTS: Mapping[str, str] = MappingProxyType(
    {
        "ena_portal": "https://www.ebi.ac.uk/ena/portal/api",
        "ena_browser": "https://www.ebi.ac.uk/ena/browser/api",
        "ena_files": "https://ftp.sra.ebi.ac.uk",
        "mgnify": "https://www.ebi.ac.uk/metagenomics/api/v1",
        "enterobase": "https://enterobase.warwick.ac.uk/api/v2.0",
        "ega_access": "https://ega.ebi.ac.uk/ega/rest/access/v2",
        "ega_download": "http://ega.ebi.ac.uk/ega/rest/download/v2",
        # The current EGA Data API (pyega3's default server file).
        "ega_auth": "https://ega.ebi.ac.uk:8443/ega-openid-connect-server/token",
        "ega_data": "https://ega.ebi.ac.uk:8443/v2",
        "cram_registry": "https://www.ebi.ac.uk/ena/cram",
        "webin": "https://wwwdev.ebi.ac.uk/ena/submit/webin-v2",
    }
)

ENA_FILE_FAMILIES = ("fastq", "submitted", "sra", "generated")
EnaFamily = Literal["fastq", "submitted", "sra", "generated"]


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


#: Published limits of the public hosts (SPEC.md): ENA 50 req/s, EnteroBase 1 req/s.
DEFAULT_HOSTS: Mapping[str, HostLimit] = MappingProxyType(
    {
        "www.ebi.ac.uk": HostLimit(rate=50, connections=8),
        "enterobase.warwick.ac.uk": HostLimit(rate=1, connections=1),
    }
)


@dataclass(frozen=True, kw_only=True, slots=True)
class EnaSpec:
    accessions: tuple[str, ...]
    #: File families to fetch; ``None`` means fastq for runs, submitted+generated for analyses.
    files: tuple[EnaFamily, ...] | None = None
    #: Built from ``mirror get``'s command line, where families are chosen with ``--files``
    #: (a manifest's with ``files:``): messages then name the right one. Not part of
    #: what the entry asks for, so not compared.
    from_command_line: bool = field(default=False, compare=False)


@dataclass(frozen=True, kw_only=True, slots=True)
class MgnifySpec:
    studies: tuple[str, ...] = ()
    analyses: tuple[str, ...] = ()
    pipeline_version: str | None = None
    groups: tuple[str, ...] = ()
    formats: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True, slots=True)
class EnterobaseSpec:
    database: str
    query: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    reldate: int | None = None
    only_fields: tuple[str, ...] = ()
    orderby: str | None = None
    sortorder: Literal["asc", "desc"] | None = None
    assemblies: bool = False
    #: strains | assemblies | straindata | ... (the API method queried)
    resource: str = "assemblies"


@dataclass(frozen=True, kw_only=True, slots=True)
class EgaSpec:
    datasets: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    protocol: Literal["tickets", "data-api"] = "tickets"


@dataclass(frozen=True, kw_only=True, slots=True)
class CramRefsSpec:
    md5: tuple[str, ...] = ()
    sha1: tuple[str, ...] = ()
    crams: tuple[str, ...] = ()
    cache: Path = field(default_factory=lambda: Path("~/.cache/hts-ref").expanduser())


SourceSpec = EnaSpec | MgnifySpec | EnterobaseSpec | EgaSpec | CramRefsSpec


@dataclass(frozen=True, kw_only=True, slots=True)
class Manifest:
    """A validated manifest. Paths are absolute; endpoints are complete."""

    dest: Path
    sources: tuple[SourceSpec, ...]
    version: int = 1
    workers: int = 16
    hosts: Mapping[str, HostLimit] = field(default_factory=lambda: MappingProxyType({}))
    endpoints: Mapping[str, str] = field(default_factory=lambda: DEFAULT_ENDPOINTS)
    timeouts: Timeouts = field(default_factory=Timeouts)
    #: Where the manifest came from (for messages), if it came from a file.
    origin: str | None = None

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
