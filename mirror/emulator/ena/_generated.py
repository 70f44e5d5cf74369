"""Procedural studies: runs computed from their index, so a 1,000,000-file plan costs no memory."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ._layout import fastq_dir
from ._records import EnaFile, EnaRun

__all__ = ["GeneratedStudy"]

_MAX_STUDIES = 100
_RUNS_PER_BLOCK = 1_000_000
_NUMBERED = re.compile(r"(ERR|ERX|SAMEA|ERS|PRJEB|ERP)([0-9]+)")
_FASTQ_PATH = re.compile(r"vol1/fastq/ERR[0-9]{3}/[0-9]{3}/(ERR[0-9]+)/[^/]+")
_KIND_PREFIXES: Mapping[str | None, frozenset[str]] = {
    None: frozenset({"ERR", "ERX", "SAMEA", "ERS", "PRJEB", "ERP"}),
    "run": frozenset({"ERR"}),
    "experiment": frozenset({"ERX"}),
    "sample": frozenset({"SAMEA", "ERS"}),
    "study": frozenset({"PRJEB", "ERP"}),
}
_DEFAULT_EXTRA: Mapping[str, str] = {
    "scientific_name": "Homo sapiens",
    "tax_id": "9606",
    "instrument_platform": "ILLUMINA",
    "instrument_model": "Illumina NovaSeq 6000",
    "library_strategy": "WGS",
    "library_source": "GENOMIC",
}


@dataclass(frozen=True, kw_only=True)
class GeneratedStudy:
    """A study of ``runs`` runs whose records exist only when asked for.

    Study ``index`` j is PRJEB{70000+j}/ERP{170000+j}; its run i is
    ERR{200000000 + j*1000000 + i} (12 characters, so ``dir2`` is its last three
    digits), experiment ERX with the same number, and ``sample_ratio`` consecutive
    runs share sample SAMEA/ERS{200000000 + j*1000000 + i // sample_ratio}. Files per
    run: 1 → ``X.fastq.gz`` (SINGLE); 2 → ``_1``/``_2``; 3 → ENA's unpaired + ``_1`` +
    ``_2``; more → ``_1 … _N``. Sizes are ``file_size``, or spread ±``size_spread``
    around it by a hash of (seed, study, run, file).
    """

    index: int
    runs: int
    files_per_run: int = 2
    file_size: int = 1024
    size_spread: float = 0.0
    sample_ratio: int = 1
    seed: int = 0
    extra: Mapping[str, str] = field(default_factory=lambda: dict(_DEFAULT_EXTRA), hash=False)

    def __post_init__(self) -> None:
        if not 0 <= self.index < _MAX_STUDIES:
            raise ValueError(f"generated study index must be in [0, {_MAX_STUDIES})")
        if not 0 <= self.runs <= _RUNS_PER_BLOCK:
            raise ValueError(f"a generated study has 0..{_RUNS_PER_BLOCK} runs")
        if self.files_per_run < 0 or self.file_size < 0:
            raise ValueError("files_per_run and file_size must be >= 0")
        if not 0.0 <= self.size_spread < 1.0:
            raise ValueError("size_spread must be within [0, 1)")
        if self.sample_ratio < 1:
            raise ValueError("sample_ratio (runs per sample) must be >= 1")

    @property
    def study(self) -> str:
        return f"PRJEB{70000 + self.index}"

    @property
    def secondary_study(self) -> str:
        return f"ERP{170000 + self.index}"

    @property
    def _base(self) -> int:
        return 200_000_000 + self.index * _RUNS_PER_BLOCK

    @property
    def file_count(self) -> int:
        return self.runs * self.files_per_run

    def _size(self, run: int, file: int) -> int:
        if not self.size_spread:
            return self.file_size
        key = f"{self.seed}:{self.index}:{run}:{file}".encode()
        unit = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest()) / 2.0**64
        return max(0, round(self.file_size * (1.0 - self.size_spread * (1.0 - 2.0 * unit))))

    def _names(self, accession: str) -> tuple[str, ...]:
        count = self.files_per_run
        if count == 1:
            return (f"{accession}.fastq.gz",)
        if count == 3:
            return tuple(f"{accession}{suffix}.fastq.gz" for suffix in ("", "_1", "_2"))
        return tuple(f"{accession}_{n}.fastq.gz" for n in range(1, count + 1))

    def run(self, i: int) -> EnaRun:
        """Run ``i`` of the study, built on demand."""
        if not 0 <= i < self.runs:
            raise IndexError(i)
        number = self._base + i
        accession = f"ERR{number}"
        sample = self._base + i // self.sample_ratio
        directory = fastq_dir(accession)
        fastq = tuple(
            EnaFile(path=f"{directory}/{name}", size=self._size(i, k))
            for k, name in enumerate(self._names(accession))
        )
        return EnaRun(
            accession=accession,
            experiment=f"ERX{number}",
            sample=f"SAMEA{sample}",
            secondary_sample=f"ERS{sample}",
            study=self.study,
            secondary_study=self.secondary_study,
            library_layout="PAIRED" if self.files_per_run >= 2 else "SINGLE",
            fastq=fastq,
            extra=self.extra,
        )

    def iter_runs(self) -> Iterator[EnaRun]:
        for i in range(self.runs):
            yield self.run(i)

    def runs_for(self, accession: str, kind: str | None = None) -> Iterator[EnaRun]:
        """Runs whose run/experiment/sample/study accession is ``accession``, in index order."""
        found = _NUMBERED.fullmatch(accession)
        if found is None or found[1] not in _KIND_PREFIXES.get(kind, frozenset()):
            return
        prefix, number = found[1], int(found[2])
        if prefix in ("PRJEB", "ERP"):
            if accession in (self.study, self.secondary_study):
                yield from self.iter_runs()
            return
        offset = number - self._base
        if prefix in ("ERR", "ERX"):
            if 0 <= offset < self.runs and str(number) == found[2]:
                yield self.run(offset)
            return
        if str(number) != found[2]:
            return
        first = offset * self.sample_ratio
        for i in range(max(first, 0), min(first + self.sample_ratio, self.runs)):
            yield self.run(i)

    def file(self, path: str) -> EnaFile | None:
        found = _FASTQ_PATH.fullmatch(path)
        if found is None:
            return None
        runs = list(self.runs_for(found[1], "run"))
        for run in runs:
            for item in run.fastq:
                if item.path == path:
                    return item
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "runs": self.runs,
            "files_per_run": self.files_per_run,
            "file_size": self.file_size,
            "size_spread": self.size_spread,
            "sample_ratio": self.sample_ratio,
            "seed": self.seed,
            "extra": dict(self.extra),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GeneratedStudy:
        known = {k: v for k, v in data.items() if k != "extra"}
        if "extra" in data:
            return cls(**known, extra=dict(data["extra"]))
        return cls(**known)
