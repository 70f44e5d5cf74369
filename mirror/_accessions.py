"""Accession patterns of ENA, MGnify and EGA, and which archive an accession belongs to."""

from __future__ import annotations

import re
from typing import Final, Literal, overload

__all__ = [
    "ENA_KINDS",
    "Archive",
    "EnaKind",
    "PortalType",
    "archive_of",
    "ena_kind",
    "is_ega_dataset",
    "is_ega_file",
    "is_ena",
    "is_mgnify_analysis",
    "is_mgnify_study",
    "portal_type",
]

EnaKind = Literal[
    "project", "study", "biosample", "sample", "experiment", "run", "analysis", "submission"
]
#: The ``includeAccessionType`` / ``result`` vocabulary of the ENA Portal API.
PortalType = Literal["study", "sample", "experiment", "run", "analysis"]
Archive = Literal["ena", "mgnify", "ega"]

# ENA's official patterns (ARCHIVES.md). ``[0-9]`` rather than ``\d``: ``\d`` also
# matches non-ASCII digits, which no archive issues. Matching is always full-string.
_ENA_PATTERNS: Final[tuple[tuple[EnaKind, re.Pattern[str]], ...]] = (
    ("project", re.compile(r"PRJ[EDN][A-Z][0-9]+")),
    ("study", re.compile(r"[EDS]RP[0-9]{6,}")),
    ("biosample", re.compile(r"SAM[EDN][A-Z]?[0-9]+")),
    ("sample", re.compile(r"[EDS]RS[0-9]{6,}")),
    ("experiment", re.compile(r"[EDS]RX[0-9]{6,}")),
    ("run", re.compile(r"[EDS]RR[0-9]{6,}")),
    ("analysis", re.compile(r"[EDS]RZ[0-9]{6,}")),
    # Not in ENA's table, but /filereport takes a submission accession as well.
    ("submission", re.compile(r"[EDS]RA[0-9]{6,}")),
)

#: Every kind ``ena_kind`` can return, in the order patterns are tried.
ENA_KINDS: Final[tuple[EnaKind, ...]] = tuple(kind for kind, _ in _ENA_PATTERNS)

_MGNIFY_STUDY: Final = re.compile(r"MGYS[0-9]{8}")
_MGNIFY_ANALYSIS: Final = re.compile(r"MGYA[0-9]{8}")
_EGA_DATASET: Final = re.compile(r"EGAD[0-9]{11}")
_EGA_FILE: Final = re.compile(r"EGAF[0-9]{11}")

_PORTAL_TYPES: Final[dict[EnaKind, PortalType]] = {
    "project": "study",
    "study": "study",
    "biosample": "sample",
    "sample": "sample",
    "experiment": "experiment",
    "run": "run",
    "analysis": "analysis",
}


def ena_kind(acc: str) -> EnaKind | None:
    """The kind of ENA accession ``acc`` is, or ``None`` if it is not one (case-sensitive)."""
    for kind, pattern in _ENA_PATTERNS:
        if pattern.fullmatch(acc):
            return kind
    return None


def is_ena(acc: str) -> bool:
    """Whether ``acc`` matches any ENA accession pattern."""
    return ena_kind(acc) is not None


@overload
def portal_type(kind: Literal["submission"]) -> None: ...
@overload
def portal_type(
    kind: Literal["project", "study", "biosample", "sample", "experiment", "run", "analysis"],
) -> PortalType: ...
@overload
def portal_type(kind: EnaKind) -> PortalType | None: ...
def portal_type(kind: EnaKind) -> PortalType | None:
    """The Portal API accession type for ``kind``; ``None`` for a submission.

    Projects search as studies and BioSamples as samples. A submission (ERA…) has no
    ``includeAccessionType``: it can only be expanded through ``/filereport``, so the
    caller must take that road instead; ``None`` says so without an exception.
    """
    return _PORTAL_TYPES.get(kind)


def is_mgnify_study(acc: str) -> bool:
    """Whether ``acc`` is a MGnify study accession (``MGYS`` and eight digits)."""
    return _MGNIFY_STUDY.fullmatch(acc) is not None


def is_mgnify_analysis(acc: str) -> bool:
    """Whether ``acc`` is a MGnify analysis accession (``MGYA`` and eight digits)."""
    return _MGNIFY_ANALYSIS.fullmatch(acc) is not None


def is_ega_dataset(acc: str) -> bool:
    """Whether ``acc`` is an EGA dataset accession (``EGAD`` and eleven digits)."""
    return _EGA_DATASET.fullmatch(acc) is not None


def is_ega_file(acc: str) -> bool:
    """Whether ``acc`` is an EGA file accession (``EGAF`` and eleven digits)."""
    return _EGA_FILE.fullmatch(acc) is not None


def archive_of(acc: str) -> Archive | None:
    """Which archive serves ``acc``, told by its prefix alone; ``None`` if none does."""
    if is_mgnify_study(acc) or is_mgnify_analysis(acc):
        return "mgnify"
    if is_ega_dataset(acc) or is_ega_file(acc):
        return "ega"
    if is_ena(acc):
        return "ena"
    return None
