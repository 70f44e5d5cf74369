"""Catalog records: ENA runs, analyses and their files, checked against ENA's accession patterns."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ._layout import FTP_HOST

__all__ = ["ACCESSION_PATTERNS", "EnaAnalysis", "EnaFile", "EnaRun", "accession_kind"]

# The official patterns (ENA docs, submit/general-guide/accessions.rst); submission
# (ERA) is not in that table but is real. Peers use stricter ones; we accept ENA's.
ACCESSION_PATTERNS: Mapping[str, re.Pattern[str]] = {
    "project": re.compile(r"PRJ[EDN][A-Z][0-9]+"),
    "study": re.compile(r"[EDS]RP[0-9]{6,}"),
    "biosample": re.compile(r"SAM[EDN][A-Z]?[0-9]+"),
    "sample": re.compile(r"[EDS]RS[0-9]{6,}"),
    "experiment": re.compile(r"[EDS]RX[0-9]{6,}"),
    "run": re.compile(r"[EDS]RR[0-9]{6,}"),
    "analysis": re.compile(r"[EDS]RZ[0-9]{6,}"),
    "submission": re.compile(r"[EDS]RA[0-9]{6,}"),
}


def accession_kind(accession: str) -> str | None:
    """The pattern name an accession matches (``"project"``, ``"run"``, …), or None."""
    for kind, pattern in ACCESSION_PATTERNS.items():
        if pattern.fullmatch(accession):
            return kind
    return None


def _check(value: str, kind: str, what: str) -> None:
    # Runs of generated studies are built by the hundred thousand: keep this lean.
    if ACCESSION_PATTERNS[kind].fullmatch(value) is None:
        raise ValueError(f"{what} {value!r} does not match ENA's {kind} pattern")


@dataclass(frozen=True, kw_only=True, slots=True)
class EnaFile:
    """A file on ENA's FTP tree; ``path`` has no host: ``vol1/fastq/…``."""

    path: str
    size: int

    def __post_init__(self) -> None:
        if not self.path.startswith("vol1/") or "//" in self.path or ".." in self.path:
            raise ValueError(f"file path must be a clean 'vol1/...' path, got {self.path!r}")
        if self.size < 0:
            raise ValueError(f"file size must be >= 0, got {self.size}")

    @property
    def url(self) -> str:
        """As ENA reports it in ``*_ftp`` fields: no scheme."""
        return f"{FTP_HOST}/{self.path}"

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EnaFile:
        return cls(path=data["path"], size=int(data["size"]))


def _files(items: Any) -> tuple[EnaFile, ...]:
    return tuple(EnaFile.from_dict(item) for item in items)


@dataclass(frozen=True, kw_only=True)
class EnaRun:
    """A read run: its accessions, layout and three file families.

    ``extra`` holds other report fields verbatim (``scientific_name``,
    ``instrument_platform``, ``tax_id``, …).
    """

    accession: str
    experiment: str
    sample: str
    secondary_sample: str
    study: str
    secondary_study: str
    library_layout: str = "PAIRED"
    fastq: tuple[EnaFile, ...] = ()
    submitted: tuple[EnaFile, ...] = ()
    sra: tuple[EnaFile, ...] = ()
    extra: Mapping[str, str] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        _check(self.accession, "run", "run accession")
        _check(self.experiment, "experiment", "experiment accession")
        _check(self.sample, "biosample", "sample accession")
        _check(self.secondary_sample, "sample", "secondary sample accession")
        _check(self.study, "project", "study accession")
        _check(self.secondary_study, "study", "secondary study accession")
        if self.library_layout not in ("PAIRED", "SINGLE"):
            raise ValueError(
                f"library_layout must be PAIRED or SINGLE, not {self.library_layout!r}"
            )

    def files(self) -> tuple[EnaFile, ...]:
        return self.fastq + self.submitted + self.sra

    def to_dict(self) -> dict[str, Any]:
        return {
            "accession": self.accession,
            "experiment": self.experiment,
            "sample": self.sample,
            "secondary_sample": self.secondary_sample,
            "study": self.study,
            "secondary_study": self.secondary_study,
            "library_layout": self.library_layout,
            "fastq": [f.to_dict() for f in self.fastq],
            "submitted": [f.to_dict() for f in self.submitted],
            "sra": [f.to_dict() for f in self.sra],
            "extra": dict(self.extra),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EnaRun:
        return cls(
            accession=data["accession"],
            experiment=data["experiment"],
            sample=data["sample"],
            secondary_sample=data["secondary_sample"],
            study=data["study"],
            secondary_study=data["secondary_study"],
            library_layout=data.get("library_layout", "PAIRED"),
            fastq=_files(data.get("fastq", ())),
            submitted=_files(data.get("submitted", ())),
            sra=_files(data.get("sra", ())),
            extra=dict(data.get("extra", {})),
        )


@dataclass(frozen=True, kw_only=True)
class EnaAnalysis:
    """An analysis (ERZ): submitted files and the files ENA generated from them."""

    accession: str
    study: str
    secondary_study: str
    sample: str
    secondary_sample: str = ""
    analysis_type: str = "SEQUENCE_ASSEMBLY"
    submitted: tuple[EnaFile, ...] = ()
    generated: tuple[EnaFile, ...] = ()
    extra: Mapping[str, str] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        _check(self.accession, "analysis", "analysis accession")
        _check(self.study, "project", "study accession")
        _check(self.secondary_study, "study", "secondary study accession")
        _check(self.sample, "biosample", "sample accession")
        if self.secondary_sample:
            _check(self.secondary_sample, "sample", "secondary sample accession")

    def files(self) -> tuple[EnaFile, ...]:
        return self.submitted + self.generated

    def to_dict(self) -> dict[str, Any]:
        return {
            "accession": self.accession,
            "study": self.study,
            "secondary_study": self.secondary_study,
            "sample": self.sample,
            "secondary_sample": self.secondary_sample,
            "analysis_type": self.analysis_type,
            "submitted": [f.to_dict() for f in self.submitted],
            "generated": [f.to_dict() for f in self.generated],
            "extra": dict(self.extra),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EnaAnalysis:
        return cls(
            accession=data["accession"],
            study=data["study"],
            secondary_study=data["secondary_study"],
            sample=data["sample"],
            secondary_sample=data.get("secondary_sample", ""),
            analysis_type=data.get("analysis_type", "SEQUENCE_ASSEMBLY"),
            submitted=_files(data.get("submitted", ())),
            generated=_files(data.get("generated", ())),
            extra=dict(data.get("extra", {})),
        )
