"""The ENA Portal fields a pull asks for, per result (runs, analyses), and the file
families each result has: what :mod:`.ena` requests and how it reads the rows."""

from __future__ import annotations

from typing import Literal

from .ena_runinfo import RUNINFO_FIELDS
from .ena_spec import EnaFamily

__all__ = ["ALL_FAMILIES", "ANALYSIS_FAMILIES", "EXTRA", "KEYS", "ORDER", "RUN_FAMILIES", "Result"]

Result = Literal["read_run", "analysis"]

RUN_FAMILIES: tuple[EnaFamily, ...] = ("fastq", "submitted", "sra")
ALL_FAMILIES: tuple[EnaFamily, ...] = ("fastq", "submitted", "sra", "generated")
ANALYSIS_FAMILIES: tuple[EnaFamily, ...] = ("submitted", "generated")
#: The order in which a row's families claim file names (see Places).
ORDER: dict[Result, tuple[EnaFamily, ...]] = {
    "read_run": RUN_FAMILIES,
    "analysis": ANALYSIS_FAMILIES,
}
KEYS: dict[Result, tuple[str, ...]] = {
    "read_run": (
        "run_accession",
        "experiment_accession",
        "sample_accession",
        "secondary_sample_accession",
        "study_accession",
        "secondary_study_accession",
    ),
    "analysis": (
        "analysis_accession",
        "sample_accession",
        "secondary_sample_accession",
        "study_accession",
        "secondary_study_accession",
    ),
}
EXTRA: dict[Result, tuple[str, ...]] = {
    # Also every field of fetchngs's run-info table (ena_runinfo.py): the same request
    # carries them, and metadata/ena/runinfo_ftp.tsv is written from them.
    "read_run": (
        "library_layout",
        "library_strategy",
        "scientific_name",
        "instrument_platform",
        "submitted_format",
        *(f for f in RUNINFO_FIELDS if f not in KEYS["read_run"] and not f.startswith("fastq_")),
        "fastq_galaxy",
        "fastq_aspera",
    ),
    "analysis": ("analysis_type", "scientific_name"),
}
