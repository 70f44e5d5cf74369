"""The catalog: what the emulated archives hold (ENA runs, files and CRAM references, MGnify,
EnteroBase, EGA)."""

from __future__ import annotations

import dataclasses
import datetime
import functools
import itertools
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .cram._records import CramReference, generate_cram_references
from .ega._outbox import OutboxDataset, OutboxFile
from .ega._records import EgaDataset, EgaFile
from .ena._generated import GeneratedStudy
from .ena._records import EnaAnalysis, EnaFile, EnaRun
from .enterobase._records import EnterobaseAssembly, generate_assemblies
from .mgnify._records import MgnifyAnalysis, MgnifyStudy

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
    """Explicit runs and analyses, procedurally generated studies, MGnify, EnteroBase, EGA.

    Lookups take an accession and an ``includeAccessionType``-style kind (``"run"``,
    ``"experiment"``, ``"sample"``, ``"study"``, ``"analysis"``) or None for any.
    MGnify studies are looked up by MGYS or ERP accession, analyses by MGYA.
    EnteroBase records only seed the emulator's live store (``emu.enterobase.release``
    adds to that, not to the frozen catalog). EGA datasets (EGAD…) and their files
    (EGAF…) serve both EGA protocols. CRAM references are looked up by the MD5 or
    SHA1 of their uppercase bases. Outbox datasets (EGAD5…) are EGA's Live Outbox:
    Crypt4GH files served over SFTP, described by EGA's metadata API.
    """

    runs: tuple[EnaRun, ...] = ()
    analyses: tuple[EnaAnalysis, ...] = ()
    generated_studies: tuple[GeneratedStudy, ...] = ()
    mgnify_studies: tuple[MgnifyStudy, ...] = ()
    enterobase_assemblies: tuple[EnterobaseAssembly, ...] = ()
    ega_datasets: tuple[EgaDataset, ...] = ()
    cram_references: tuple[CramReference, ...] = ()
    outbox_datasets: tuple[OutboxDataset, ...] = ()

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
        self._mgnify  # noqa: B018 (the same for duplicate MGnify accessions)
        self._ega  # noqa: B018 (and for duplicate EGA accessions)
        self._outbox  # noqa: B018 (and for the outbox's)
        barcodes = {(r.database, r.assembly_barcode) for r in self.enterobase_assemblies}
        strains = {(r.database, r.strain_barcode) for r in self.enterobase_assemblies}
        if not len(barcodes) == len(strains) == len(self.enterobase_assemblies):
            raise ValueError("duplicate EnteroBase assembly or strain barcode in catalog")
        # Names only: checksums are computed on the first lookup, not for every catalog.
        if len({ref.name for ref in self.cram_references}) != len(self.cram_references):
            raise ValueError("duplicate CRAM reference name in catalog")

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
    def _mgnify(self) -> dict[str, MgnifyStudy | MgnifyAnalysis]:
        index: dict[str, MgnifyStudy | MgnifyAnalysis] = {}
        for study in self.mgnify_studies:
            records: tuple[MgnifyStudy | MgnifyAnalysis, ...] = (study, *study.analyses)
            for record in records:
                if record.accession in index:
                    raise ValueError(f"duplicate MGnify accession {record.accession} in catalog")
                index[record.accession] = record
        for study in self.mgnify_studies:
            # The API takes a study's ENA accession (ERP…) wherever it takes MGYS.
            if study.secondary_accession:
                index.setdefault(study.secondary_accession, study)
        return index

    @functools.cached_property
    def _ega(self) -> dict[str, EgaDataset | EgaFile]:
        index: dict[str, EgaDataset | EgaFile] = {}
        for dataset in self.ega_datasets:
            records: tuple[EgaDataset | EgaFile, ...] = (dataset, *dataset.files)
            for record in records:
                key = record.dataset_id if isinstance(record, EgaDataset) else record.file_id
                if key in index:
                    raise ValueError(f"duplicate EGA accession {key} in catalog")
                index[key] = record
        return index

    @functools.cached_property
    def _outbox(self) -> dict[str, OutboxDataset | OutboxFile]:
        index: dict[str, OutboxDataset | OutboxFile] = {}
        for dataset in self.outbox_datasets:
            records: tuple[OutboxDataset | OutboxFile, ...] = (dataset, *dataset.files)
            for record in records:
                key = record.dataset_id if isinstance(record, OutboxDataset) else record.accession
                if key in index:
                    raise ValueError(f"duplicate outbox accession {key} in catalog")
                index[key] = record
        return index

    @functools.cached_property
    def _cram(self) -> dict[str, CramReference]:
        # One index for both: an MD5 is 32 hex digits, a SHA1 40, so keys never clash.
        index: dict[str, CramReference] = {}
        for ref in self.cram_references:
            index.setdefault(ref.md5, ref)
            index.setdefault(ref.sha1, ref)
        return index

    def cram_by_md5(self, md5: str) -> CramReference | None:
        """The reference whose uppercase bases have this MD5 (hex, any case), or None."""
        key = md5.strip().lower()
        return self._cram.get(key) if len(key) == 32 else None

    def cram_by_sha1(self, sha1: str) -> CramReference | None:
        key = sha1.strip().lower()
        return self._cram.get(key) if len(key) == 40 else None

    def ega_dataset(self, accession: str) -> EgaDataset | None:
        found = self._ega.get(accession.strip().upper())
        return found if isinstance(found, EgaDataset) else None

    def ega_file(self, accession: str) -> EgaFile | None:
        found = self._ega.get(accession.strip().upper())
        return found if isinstance(found, EgaFile) else None

    def outbox_dataset(self, accession: str) -> OutboxDataset | None:
        found = self._outbox.get(accession.strip().upper())
        return found if isinstance(found, OutboxDataset) else None

    def outbox_file(self, accession: str) -> OutboxFile | None:
        found = self._outbox.get(accession.strip().upper())
        return found if isinstance(found, OutboxFile) else None

    def mgnify_study(self, accession: str) -> MgnifyStudy | None:
        found = self._mgnify.get(accession.strip().upper())
        return found if isinstance(found, MgnifyStudy) else None

    def mgnify_analysis(self, accession: str) -> MgnifyAnalysis | None:
        found = self._mgnify.get(accession.strip().upper())
        return found if isinstance(found, MgnifyAnalysis) else None

    def iter_mgnify_analyses(self) -> Iterator[MgnifyAnalysis]:
        for study in self.mgnify_studies:
            yield from study.analyses

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
        """The small fixed catalog.

        ENA: 8 runs in 4 studies, 1 analysis, 21 files (1 KiB–3 MiB). MGnify: study
        MGYS00005001 (3 analyses, 12 downloads). EnteroBase: 12 senterica records.
        EGA: dataset EGAD00010000805 (3 files, ~440 KiB in all). CRAM registry: MT
        (16,569 bases), phiX174 (5,386) and chr22_part (1 MiB + 3).
        """
        from ._demo import demo_catalog

        return demo_catalog()

    @classmethod
    def generate_mgnify(
        cls,
        seed: int = 0,
        *,
        studies: int = 1,
        analyses: int = 150,
        first: str = "MGYS00009001",
        cursor: bool = False,
    ) -> Catalog:
        """``studies`` generated MGnify studies from ``first`` on (see ``MgnifyStudy.generate``)."""
        number = int(first[4:])
        return cls(
            mgnify_studies=tuple(
                MgnifyStudy.generate(f"MGYS{number + j:08d}", analyses, seed, cursor=cursor)
                for j in range(studies)
            )
        )

    @classmethod
    def generate_enterobase(
        cls,
        database: str = "senterica",
        records: int = 250,
        seed: int = 0,
        *,
        serotypes: tuple[str, ...] = ("Agona", "Typhimurium"),
        until: datetime.date = datetime.date(2024, 6, 1),
        days: int = 365,
        fasta_size: tuple[int, int] = (4096, 32768),
    ) -> Catalog:
        """``records`` EnteroBase strains with assemblies (see ``generate_assemblies``)."""
        return cls(
            enterobase_assemblies=generate_assemblies(
                database,
                records,
                seed,
                serotypes=serotypes,
                until=until,
                days=days,
                fasta_size=fasta_size,
            )
        )

    @classmethod
    def generate_ega(
        cls,
        dataset: str = "EGAD00010000805",
        files: int = 5,
        size: int = 256 * 1024,
        seed: int = 0,
        *,
        size_spread: float = 0.0,
        first_file: int | None = None,
    ) -> Catalog:
        """One generated EGA dataset (see ``EgaDataset.generate``)."""
        return cls(
            ega_datasets=(
                EgaDataset.generate(
                    dataset, files, size, seed, size_spread=size_spread, first_file=first_file
                ),
            )
        )

    @classmethod
    def generate_outbox(
        cls,
        dataset: str = "EGAD50000000001",
        files: int = 5,
        sizes: Sequence[int] = (256 * 1024,),
        seed: int = 0,
        *,
        unavailable: Iterable[int] = (),
        md5: Iterable[int] = (),
    ) -> Catalog:
        """One generated Live Outbox dataset (see ``OutboxDataset.generate``)."""
        return cls(
            outbox_datasets=(
                OutboxDataset.generate(
                    dataset, files, sizes, seed, unavailable=unavailable, md5=md5
                ),
            )
        )

    @classmethod
    def generate_cram(
        cls,
        count: int = 5,
        length: int = 64 * 1024,
        seed: int = 0,
        *,
        prefix: str = "chr",
        size_spread: float = 0.0,
    ) -> Catalog:
        """``count`` generated CRAM references (see ``generate_cram_references``)."""
        return cls(
            cram_references=generate_cram_references(
                count, length, seed, prefix=prefix, size_spread=size_spread
            )
        )

    def merge(self, *others: Catalog) -> Catalog:
        """One catalog holding the records of this one and of ``others``."""
        joined = {
            field.name: tuple(
                itertools.chain.from_iterable(getattr(each, field.name) for each in (self, *others))
            )
            for field in dataclasses.fields(self)
        }
        return Catalog(**joined)

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
            "mgnify_studies": [study.to_dict() for study in self.mgnify_studies],
            "enterobase_assemblies": [r.to_dict() for r in self.enterobase_assemblies],
            "ega_datasets": [dataset.to_dict() for dataset in self.ega_datasets],
            "cram_references": [ref.to_dict() for ref in self.cram_references],
            "outbox_datasets": [dataset.to_dict() for dataset in self.outbox_datasets],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Catalog:
        return cls(
            runs=tuple(EnaRun.from_dict(item) for item in data.get("runs", ())),
            analyses=tuple(EnaAnalysis.from_dict(item) for item in data.get("analyses", ())),
            generated_studies=tuple(
                GeneratedStudy.from_dict(item) for item in data.get("generated_studies", ())
            ),
            mgnify_studies=tuple(
                MgnifyStudy.from_dict(item) for item in data.get("mgnify_studies", ())
            ),
            enterobase_assemblies=tuple(
                EnterobaseAssembly.from_dict(item) for item in data.get("enterobase_assemblies", ())
            ),
            ega_datasets=tuple(EgaDataset.from_dict(item) for item in data.get("ega_datasets", ())),
            cram_references=tuple(
                CramReference.from_dict(item) for item in data.get("cram_references", ())
            ),
            outbox_datasets=tuple(
                OutboxDataset.from_dict(item) for item in data.get("outbox_datasets", ())
            ),
        )
