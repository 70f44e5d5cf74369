"""Options every emulated host shares: how files are served, and TLS."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["HOSTS", "FilesOptions", "TlsOptions"]

#: The emulated hosts, each its own site on its own port.
HOSTS = ("www", "ftp", "enterobase", "ega")


@dataclass(frozen=True, kw_only=True, slots=True)
class FilesOptions:
    """How every file host (ENA's, the CRAM registry's, MGnify's, EnteroBase's, EGA's) sends
    file bodies.

    Attributes:
        bandwidth: cap every file response at this many bytes/s; None: no cap.
        range_support: False makes the file hosts ignore Range (200, full body) and send
            ``Accept-Ranges: none``; EGA's REST v2 streams follow ``EgaOptions`` instead.
    """

    bandwidth: int | None = None
    range_support: bool = True

    def __post_init__(self) -> None:
        if self.bandwidth is not None and self.bandwidth <= 0:
            raise ValueError("bandwidth must be > 0 bytes/s, or None")


@dataclass(frozen=True, kw_only=True, slots=True)
class TlsOptions:
    """Serve HTTPS, the archives' own transport, instead of HTTP.

    Attributes:
        cert: PEM certificate chain; it should name 127.0.0.1 (or the bound host).
            Clients trust the issuing CA, e.g. through ``SSL_CERT_FILE``.
        key: the PEM private key of ``cert``.
        hosts: the hosts that serve HTTPS (default: all); the others stay on HTTP, for
            clients that fetch ``http://`` links.
    """

    cert: str | os.PathLike[str]
    key: str | os.PathLike[str]
    hosts: Iterable[str] | None = None

    def __post_init__(self) -> None:
        if self.hosts is not None:
            object.__setattr__(self, "hosts", tuple(self.hosts))
            unknown = set(self.hosts) - set(HOSTS)
            if unknown:
                raise ValueError(
                    f"unknown TLS host(s) {sorted(unknown)}; hosts are {sorted(HOSTS)}"
                )

    @property
    def served(self) -> frozenset[str]:
        """The hosts that speak HTTPS."""
        return frozenset(HOSTS if self.hosts is None else self.hosts)
