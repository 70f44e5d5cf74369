"""An archive emulator on loopback: ENA (Portal API, file host, CRAM reference registry,
Webin REST V2), MGnify v1, EnteroBase v2.0, EGA.

Injectable faults and a request log on every host.
"""

from __future__ import annotations

from ._catalog import Catalog as Catalog
from ._content import iter_range as iter_range, md5_of as md5_of, sha1_of as sha1_of
from ._faults import Fault as Fault, FaultSet as FaultSet
from ._log import LogEntry as LogEntry
from ._server import Emulator as Emulator
from .cram._records import CramReference as CramReference
from .ega._records import EgaDataset as EgaDataset, EgaFile as EgaFile
from .ega._state import EgaStats as EgaStats, EgaTicket as EgaTicket
from .ena._generated import GeneratedStudy as GeneratedStudy
from .ena._records import EnaAnalysis as EnaAnalysis, EnaFile as EnaFile, EnaRun as EnaRun
from .enterobase._records import EnterobaseAssembly as EnterobaseAssembly
from .mgnify._records import (
    MgnifyAnalysis as MgnifyAnalysis,
    MgnifyDownload as MgnifyDownload,
    MgnifyStudy as MgnifyStudy,
)
from .webin._records import WebinObject as WebinObject, WebinStats as WebinStats

__all__ = [
    "Catalog",
    "CramReference",
    "EgaDataset",
    "EgaFile",
    "EgaStats",
    "EgaTicket",
    "Emulator",
    "EnaAnalysis",
    "EnaFile",
    "EnaRun",
    "EnterobaseAssembly",
    "Fault",
    "FaultSet",
    "GeneratedStudy",
    "LogEntry",
    "MgnifyAnalysis",
    "MgnifyDownload",
    "MgnifyStudy",
    "WebinObject",
    "WebinStats",
    "iter_range",
    "md5_of",
    "sha1_of",
]
