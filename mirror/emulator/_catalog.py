"""The catalog: which runs, analyses and files the emulated ENA holds."""

from __future__ import annotations

import functools
import itertools
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ._generated import GeneratedStudy
from ._records import EnaAnalysis, EnaFile, EnaRun

__all__ = ["Catalog"]

# includeAccessionType names → the record attributes an accession of that type may match.
# A study matches on both PRJ and ERP, a sample on both SAM and ERS (as on ENA).
_RUN_KEYS: Mapping[str, tuple[str, ...]] = {
    "run": ("accession",),
    "experiment": ("experiment",),
    "sample": ("sample", "secondary_sample"),
    "study": ("study", "secondary_study"),
}
_ANALYSIS_KEYS: Mapping[str, tuple[str, ...]] = {
    "analysis": ("accession",),
    "sample": ("sample", "secondary_sample"),
    "study": ("study", "secondary_study"),
}


def _index(
    records: Iterable[Any], keys: Mapping[str, tuple[str, ...]]
) -> dict[tuple[str, str], list[Any]]:
    index: dict[tuple[str, str], list[Any]] = defaultdict(list)
    for record in records:
        for kind, attrs in keys.items():
            for value in {getattr(record, attr) for attr in attrs} - {""}:
                index[kind, value].append(record)
    return dict(index)


def _lookup(
    index: Mapping[tuple[str, str], list[Any]],
    keys: Mapping[str, tuple[str, ...]],
    accession: str,
    kind: str | None,
) -> list[Any]:
    if kind is not None:
        return list(index.get((kind, accession), ()))
    found: dict[int, Any] = {}
    for each in keys:
        for record in index.get((each, accession), ()):
            found.setdefault(id(record), record)
    return list(found.values())


@dataclass(frozen=True, kw_only=True)
class Catalog:
    """Explicit runs and analyses, plus procedurally generated studies.

    Lookups take an accession and an ``includeAccessionType``-style kind (``"run"``,
    ``"experiment"``, ``"sample"``, ``"study"``, ``"analysis"``) or None for any.
    """

    runs: tuple[EnaRun, ...] = ()
    analyses: tuple[EnaAnalysis, ...] = ()
    generated_studies: tuple[GeneratedStudy, ...] = ()

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for record in self._records():
            if record.accession in seen:
                raise ValueError(f"duplicate accession {record.accession} in catalog")
            seen.add(record.accession)
        indexes = {study.index for study in self.generated_studies}
        if len(indexes) != len(self.generated_studies):
            raise ValueError("generated studies need distinct indexes")
        self._files  # noqa: B018 (builds the index now, so duplicate paths fail early)

    def _records(self) -> Iterator[EnaRun | EnaAnalysis]:
        yield from self.runs
        yield from self.analyses

    @functools.cached_property
    def _files(self) -> dict[str, EnaFile]:
        files: dict[str, EnaFile] = {}
        for record in self._records():
            for item in record.files():
                if item.path in files:
                    raise ValueError(f"duplicate file path {item.path} in catalog")
                files[item.path] = item
        return files

    @functools.cached_property
    def _run_index(self) -> dict[tuple[str, str], list[Any]]:
        return _index(self.runs, _RUN_KEYS)

    @functools.cached_property
    def _analysis_index(self) -> dict[tuple[str, str], list[Any]]:
        return _index(self.analyses, _ANALYSIS_KEYS)

    def iter_runs(self) -> Iterator[EnaRun]:
        yield from self.runs
        for study in self.generated_studies:
            yield from study.iter_runs()

    def iter_analyses(self) -> Iterator[EnaAnalysis]:
        yield from self.analyses

    def runs_for(self, accession: str, kind: str | None = None) -> Iterator[EnaRun]:
        accession = accession.strip().upper()
        yield from _lookup(self._run_index, _RUN_KEYS, accession, kind)
        for study in self.generated_studies:
            yield from study.runs_for(accession, kind)

    def analyses_for(self, accession: str, kind: str | None = None) -> Iterator[EnaAnalysis]:
        yield from _lookup(self._analysis_index, _ANALYSIS_KEYS, accession.strip().upper(), kind)

    def file(self, path: str) -> EnaFile | None:
        """The file at ``vol1/...`` (a leading ``/`` is tolerated), or None."""
        path = path.lstrip("/")
        found = self._files.get(path)
        if found is not None:
            return found
        for study in self.generated_studies:
            found = study.file(path)
            if found is not None:
                return found
        return None

    def iter_files(self) -> Iterator[EnaFile]:
        yield from self._files.values()
        for run in itertools.chain.from_iterable(s.iter_runs() for s in self.generated_studies):
            yield from run.files()

    @property
    def file_count(self) -> int:
        return len(self._files) + sum(s.file_count for s in self.generated_studies)

    @classmethod
    def demo(cls) -> Catalog:
        """The small fixed catalog: 8 runs in 4 studies, 1 analysis, 21 files (1 KiB–3 MiB)."""
        from ._demo import demo_catalog

        return demo_catalog()

    @classmethod
    def generate(
        cls,
        seed: int = 0,
        *,
        studies: int = 1,
        runs_per_study: int = 10_000,
        files_per_run: int = 2,
        file_size: int = 1024,
        size_spread: float = 0.0,
        sample_ratio: int = 1,
    ) -> Catalog:
        """A big catalog of generated studies; see ``GeneratedStudy`` for the accessions."""
        return cls(
            generated_studies=tuple(
                GeneratedStudy(
                    index=index,
                    runs=runs_per_study,
                    files_per_run=files_per_run,
                    file_size=file_size,
                    size_spread=size_spread,
                    sample_ratio=sample_ratio,
                    seed=seed,
                )
                for index in range(studies)
            )
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "runs": [run.to_dict() for run in self.runs],
            "analyses": [analysis.to_dict() for analysis in self.analyses],
            "generated_studies": [study.to_dict() for study in self.generated_studies],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Catalog:
        return cls(
            runs=tuple(EnaRun.from_dict(item) for item in data.get("runs", ())),
            analyses=tuple(EnaAnalysis.from_dict(item) for item in data.get("analyses", ())),
            generated_studies=tuple(
                GeneratedStudy.from_dict(item) for item in data.get("generated_studies", ())
            ),
        )
