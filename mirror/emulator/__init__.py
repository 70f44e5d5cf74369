"""An archive emulator on loopback: ENA (Portal API, file host, CRAM reference registry,
Webin REST V2), MGnify v1, EnteroBase v2.0, EGA.

Injectable faults and a request log on every host.
"""

from __future__ import annotations

from ._catalog import Catalog as Catalog
from ._content import iter_range as iter_range, md5_of as md5_of, sha1_of as sha1_of
from ._cram_records import CramReference as CramReference
from ._ega_records import EgaDataset as EgaDataset, EgaFile as EgaFile
from ._ega_state import EgaStats as EgaStats, EgaTicket as EgaTicket
from ._enterobase_records import EnterobaseAssembly as EnterobaseAssembly
from ._faults import Fault as Fault, FaultSet as FaultSet
from ._generated import GeneratedStudy as GeneratedStudy
from ._log import LogEntry as LogEntry
from ._mgnify_records import (
    MgnifyAnalysis as MgnifyAnalysis,
    MgnifyDownload as MgnifyDownload,
    MgnifyStudy as MgnifyStudy,
)
from ._records import EnaAnalysis as EnaAnalysis, EnaFile as EnaFile, EnaRun as EnaRun
from ._server import Emulator as Emulator
from ._webin_records import WebinObject as WebinObject, WebinStats as WebinStats

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
