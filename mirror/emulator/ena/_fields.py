"""Portal result types and their report fields: how a record becomes a TSV/JSON row."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from operator import attrgetter
from typing import Any

from .._catalog import Catalog
from .._content import md5_of
from ._layout import file_format
from ._records import EnaFile

__all__ = ["RESULTS", "Field", "ResultType"]

Getter = Callable[[Any], str]


@dataclass(frozen=True, kw_only=True, slots=True)
class Field:
    name: str
    description: str
    get: Getter
    # The type /returnFields gives (text, number, date, list, taxonomy, ...).
    type: str = "text"


@dataclass(frozen=True, kw_only=True)
class ResultType:
    """One ``result=`` value: its fields, accession column and accession lookups."""

    name: str
    accession_field: str
    fields: Mapping[str, Field]
    # Columns of a /filereport asked for without ``fields`` (the swagger text: the
    # accession plus FTP info); callers should always pass ``fields``.
    report_fields: tuple[str, ...]
    accession_types: frozenset[str]
    every: Callable[[Catalog], Iterator[Any]]
    lookup: Callable[[Catalog, str, str | None], Iterator[Any]]

    def files(self, record: Any) -> tuple[EnaFile, ...]:
        files: tuple[EnaFile, ...] = record.files()
        return files


def _family(attr: str, label: str) -> list[Field]:
    files: Callable[[Any], tuple[EnaFile, ...]] = attrgetter(attr)
    # Multi-file values are ';'-joined and aligned by position across _ftp/_md5/_bytes;
    # a record without files has empty strings (ENA docs, ffq fixtures).
    return [
        Field(
            name=f"{attr}_ftp",
            description=f"{label} (FTP)",
            get=lambda r: ";".join(f.url for f in files(r)),
        ),
        Field(
            name=f"{attr}_md5",
            description=f"{label} (MD5)",
            get=lambda r: ";".join(md5_of(f.path, f.size) for f in files(r)),
        ),
        Field(
            name=f"{attr}_bytes",
            description=f"{label} (bytes)",
            get=lambda r: ";".join(str(f.size) for f in files(r)),
        ),
        Field(
            name=f"{attr}_aspera",
            description=f"{label} (Aspera)",
            get=lambda r: ";".join(f"fasp.sra.ebi.ac.uk:/{f.path}" for f in files(r)),
        ),
    ]


def _format_of(record: Any) -> str:
    return ";".join(file_format(f.path) for f in record.submitted)


def _attr(name: str, attr: str, description: str) -> Field:
    getter: Callable[[Any], str] = attrgetter(attr)
    return Field(name=name, description=description, get=getter)


def _extra(name: str, description: str) -> Field:
    return Field(name=name, description=description, get=lambda r: r.extra.get(name, ""))


def _table(result: str, *known: Field) -> dict[str, Field]:
    """Every field ENA returns for ``result``, in the order of its /returnFields.

    The names and types are ENA's own list (``returnFields_{result}.json``, recorded
    from the live service); fields the catalog has values for use ``known``'s getters,
    every other one comes from the record's ``extra`` (empty when absent), so any name
    ENA accepts is accepted and any other is refused as ENA refuses it.
    """
    text = resources.files(__package__).joinpath(f"returnFields_{result}.json").read_text()
    by_name = {field.name: field for field in known}
    table: dict[str, Field] = {}
    for item in json.loads(text):
        name, kind = item["columnId"], item["type"]
        field = by_name.pop(name, None) or _extra(name, name.replace("_", " "))
        table[name] = Field(name=name, description=field.description, get=field.get, type=kind)
    if by_name:
        raise ValueError(f"fields {sorted(by_name)} are not in ENA's list for {result}")
    return table


_COMMON_EXTRA = (
    _extra("scientific_name", "scientific name"),
    _extra("tax_id", "taxonomic ID"),
    _extra("first_public", "date of first publication"),
)

READ_RUN = ResultType(
    name="read_run",
    accession_field="run_accession",
    fields=_table(
        "read_run",
        _attr("run_accession", "accession", "run accession"),
        _attr("experiment_accession", "experiment", "experiment accession"),
        _attr("sample_accession", "sample", "sample accession"),
        _attr("secondary_sample_accession", "secondary_sample", "secondary sample accession"),
        _attr("study_accession", "study", "study accession"),
        _attr("secondary_study_accession", "secondary_study", "secondary study accession"),
        _attr("library_layout", "library_layout", "sequencing library layout"),
        *_COMMON_EXTRA,
        _extra("instrument_platform", "instrument platform used in sequencing experiment"),
        _extra("instrument_model", "instrument model used in sequencing experiment"),
        _extra("library_strategy", "sequencing technique intended for the library"),
        _extra("library_source", "source material being sequenced"),
        _extra("library_selection", "method used to select or enrich the material"),
        _extra("read_count", "number of reads"),
        _extra("base_count", "number of base pairs"),
        *_family("fastq", "FASTQ files"),
        *_family("submitted", "submitted files"),
        Field(name="submitted_format", description="format of submitted files", get=_format_of),
        *_family("sra", "SRA files"),
    ),
    report_fields=(
        "run_accession",
        "fastq_ftp",
        "fastq_bytes",
        "fastq_md5",
        "submitted_ftp",
        "submitted_bytes",
        "submitted_md5",
        "sra_ftp",
        "sra_bytes",
        "sra_md5",
    ),
    accession_types=frozenset({"run", "experiment", "sample", "study"}),
    every=Catalog.iter_runs,
    lookup=Catalog.runs_for,
)

ANALYSIS = ResultType(
    name="analysis",
    accession_field="analysis_accession",
    fields=_table(
        "analysis",
        _attr("analysis_accession", "accession", "analysis accession"),
        _attr("study_accession", "study", "study accession"),
        _attr("secondary_study_accession", "secondary_study", "secondary study accession"),
        _attr("sample_accession", "sample", "sample accession"),
        _attr("secondary_sample_accession", "secondary_sample", "secondary sample accession"),
        _attr("analysis_type", "analysis_type", "analysis type"),
        *_COMMON_EXTRA,
        *_family("submitted", "submitted files"),
        Field(name="submitted_format", description="format of submitted files", get=_format_of),
        *_family("generated", "generated files"),
    ),
    report_fields=(
        "analysis_accession",
        "submitted_ftp",
        "submitted_bytes",
        "submitted_md5",
        "generated_ftp",
        "generated_bytes",
        "generated_md5",
    ),
    accession_types=frozenset({"analysis", "sample", "study"}),
    every=Catalog.iter_analyses,
    lookup=Catalog.analyses_for,
)

RESULTS: Mapping[str, ResultType] = {result.name: result for result in (READ_RUN, ANALYSIS)}
