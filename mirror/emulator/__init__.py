"""An ENA emulator on loopback: Portal API, file host, injectable faults, request log."""

from __future__ import annotations

from ._catalog import Catalog as Catalog
from ._content import iter_range as iter_range, md5_of as md5_of
from ._faults import Fault as Fault, FaultSet as FaultSet
from ._generated import GeneratedStudy as GeneratedStudy
from ._log import LogEntry as LogEntry
from ._records import EnaAnalysis as EnaAnalysis, EnaFile as EnaFile, EnaRun as EnaRun
from ._server import Emulator as Emulator

__all__ = [
    "Catalog",
    "Emulator",
    "EnaAnalysis",
    "EnaFile",
    "EnaRun",
    "Fault",
    "FaultSet",
    "GeneratedStudy",
    "LogEntry",
    "iter_range",
    "md5_of",
]
