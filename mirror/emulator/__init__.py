"""An archive emulator on loopback: ENA (Portal API, file host, CRAM reference registry,
Webin REST V2), MGnify v1, EnteroBase v2.0, EGA (and the Live Outbox's metadata API).

One sub-package per service, each with its options and its controls for tests;
injectable faults and a request log on every host.
"""

from __future__ import annotations

from ._catalog import Catalog as Catalog
from ._content import iter_range as iter_range, md5_of as md5_of, sha1_of as sha1_of
from ._faults import Fault as Fault, FaultSet as FaultSet
from ._log import LogEntry as LogEntry
from ._options import FilesOptions as FilesOptions, TlsOptions as TlsOptions
from ._server import Emulator as Emulator
from .cram import CramControls as CramControls
from .cram._records import CramReference as CramReference
from .ega import EgaControls as EgaControls, EgaOptions as EgaOptions
from .ega._metadata import OutboxControls as OutboxControls, OutboxOptions as OutboxOptions
from .ega._outbox import (
    OutboxDataset as OutboxDataset,
    OutboxFile as OutboxFile,
    write_outbox as write_outbox,
)
from .ega._records import EgaDataset as EgaDataset, EgaFile as EgaFile
from .ega._sftp import OutboxKeys as OutboxKeys, SftpOutbox as SftpOutbox
from .ega._state import EgaStats as EgaStats, EgaTicket as EgaTicket
from .ena import EnaControls as EnaControls, EnaOptions as EnaOptions
from .ena._generated import GeneratedStudy as GeneratedStudy
from .ena._records import EnaAnalysis as EnaAnalysis, EnaFile as EnaFile, EnaRun as EnaRun
from .enterobase import (
    EnterobaseControls as EnterobaseControls,
    EnterobaseOptions as EnterobaseOptions,
)
from .enterobase._records import EnterobaseAssembly as EnterobaseAssembly
from .mgnify import MgnifyControls as MgnifyControls, MgnifyOptions as MgnifyOptions
from .mgnify._records import (
    MgnifyAnalysis as MgnifyAnalysis,
    MgnifyDownload as MgnifyDownload,
    MgnifyStudy as MgnifyStudy,
)
from .webin import WebinControls as WebinControls, WebinOptions as WebinOptions
from .webin._ftps import FtpsArea as FtpsArea
from .webin._records import WebinObject as WebinObject, WebinStats as WebinStats

__all__ = [
    "Catalog",
    "CramControls",
    "CramReference",
    "EgaControls",
    "EgaDataset",
    "EgaFile",
    "EgaOptions",
    "EgaStats",
    "EgaTicket",
    "Emulator",
    "EnaAnalysis",
    "EnaControls",
    "EnaFile",
    "EnaOptions",
    "EnaRun",
    "EnterobaseAssembly",
    "EnterobaseControls",
    "EnterobaseOptions",
    "Fault",
    "FaultSet",
    "FilesOptions",
    "FtpsArea",
    "GeneratedStudy",
    "LogEntry",
    "MgnifyAnalysis",
    "MgnifyControls",
    "MgnifyDownload",
    "MgnifyOptions",
    "MgnifyStudy",
    "OutboxControls",
    "OutboxDataset",
    "OutboxFile",
    "OutboxKeys",
    "OutboxOptions",
    "SftpOutbox",
    "TlsOptions",
    "WebinControls",
    "WebinObject",
    "WebinOptions",
    "WebinStats",
    "iter_range",
    "md5_of",
    "sha1_of",
    "write_outbox",
]
