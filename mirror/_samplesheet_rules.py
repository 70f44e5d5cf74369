"""What each pipeline's input schema asks of a samplesheet: the few rules we write to.

Each rule set is read from the pipeline's published ``assets/schema_input.json`` (URL
beside it) and kept here, not fetched: a sheet is written offline. Only the rules a
sheet of ENA runs can meet or break are kept: column names, which are required, the
patterns of names and paths, the enumerations, the columns that must be unique.
nf-schema treats an empty cell as an absent value, so an optional column may be empty.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

__all__ = ["FORMATS", "SHEET_FORMATS", "SheetChecker", "SheetRules", "check_sheet"]

_NO_SPACE = r"^\S+$"
_FASTQ_GZ = r"^\S+\.f(ast)?q\.gz$"


@dataclass(frozen=True, kw_only=True, slots=True)
class SheetRules:
    name: str
    #: Columns in the order we write them (the schema's order of properties).
    columns: tuple[str, ...]
    #: Columns that must hold a value in every row.
    required: tuple[str, ...]
    #: ``column -> regular expression`` a value must match when it is not empty.
    patterns: Mapping[str, str] = field(default_factory=dict)
    #: ``column -> allowed values`` when it is not empty.
    enums: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: Columns (or column tuples) whose values no two rows may share.
    unique: tuple[tuple[str, ...], ...] = ()
    #: ``column -> columns`` that must hold a value whenever it does.
    depends: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: Rows sharing a sample must be all single-end or all paired: the read-2 column
    #: whose emptiness must agree within a sample (None: no such rule).
    one_layout_per_sample: str | None = None
    #: Where the rules were read.
    source: str = ""


# nf-core/rnaseq assets/schema_input.json (master): sample ^\S+$, fastq_1 required,
# fastq_2 optional, both ^\S+\.f(ast)?q\.gz$; strandedness required, one of forward,
# reverse, unstranded, auto ('auto' since rnaseq 3.10; the draft-07 copies before it
# lacked it, and fetchngs writes 'auto' by default).
_RNASEQ = SheetRules(
    name="rnaseq",
    columns=("sample", "fastq_1", "fastq_2", "strandedness"),
    required=("sample", "fastq_1", "strandedness"),
    patterns={"sample": _NO_SPACE, "fastq_1": _FASTQ_GZ, "fastq_2": _FASTQ_GZ},
    enums={"strandedness": ("forward", "reverse", "unstranded", "auto")},
    # subworkflows/local/utils_nfcore_rnaseq_pipeline validateInputSamplesheet: "Multiple
    # runs of a sample must be of the same datatype i.e. single-end or paired-end".
    one_layout_per_sample="fastq_2",
    source="https://github.com/nf-core/rnaseq/blob/master/assets/schema_input.json",
)

# nf-core/atacseq assets/schema_input.json: sample ^\S+$ and fastq_1 required, fastq_2
# optional, both FASTQs ^\S+\.f(ast)?q\.gz$ and existing. bin/check_samplesheet.py
# (2.x) wants the header to begin sample,fastq_1,fastq_2,replicate, replicate an
# integer (ids 1..n per sample; rows of one sample and replicate are technical
# replicates, merged, and must share one layout); fetchngs writes 1.
_ATACSEQ = SheetRules(
    name="atacseq",
    columns=("sample", "fastq_1", "fastq_2", "replicate"),
    required=("sample", "fastq_1", "replicate"),
    patterns={
        "sample": _NO_SPACE,
        "fastq_1": _FASTQ_GZ,
        "fastq_2": _FASTQ_GZ,
        "replicate": r"^[1-9][0-9]*$",
    },
    one_layout_per_sample="fastq_2",
    source="https://github.com/nf-core/atacseq/blob/master/assets/schema_input.json",
)

# nf-core/taxprofiler assets/schema_input.json: sample, run_accession (^[^\s]+$) and
# instrument_platform (an ENA platform name) required; fastq_1/fastq_2 gzipped FASTQ;
# fasta optional; fastq_1, fastq_2 and (sample, run_accession) unique.
_TAXPROFILER = SheetRules(
    name="taxprofiler",
    columns=("sample", "run_accession", "instrument_platform", "fastq_1", "fastq_2", "fasta"),
    required=("sample", "run_accession", "instrument_platform"),
    patterns={
        "sample": r"^[^\s]+$",
        "run_accession": r"^[^\s]+$",
        "fastq_1": _FASTQ_GZ,
        "fastq_2": _FASTQ_GZ,
        "fasta": r"^\S+\.(fasta|fas|fna|fa)\.gz?$",
    },
    enums={
        "instrument_platform": (
            "ABI_SOLID",
            "BGISEQ",
            "CAPILLARY",
            "COMPLETE_GENOMICS",
            "DNBSEQ",
            "HELICOS",
            "ILLUMINA",
            "ION_TORRENT",
            "LS454",
            "OXFORD_NANOPORE",
            "PACBIO_SMRT",
        )
    },
    unique=(("fastq_1",), ("fastq_2",), ("fasta",), ("sample", "run_accession")),
    source="https://github.com/nf-core/taxprofiler/blob/master/assets/schema_input.json",
)

# nf-core/viralrecon assets/schema_input.json: sample ^\S+$ required; fastq_1/fastq_2
# ^([\S\s]*\/)?[^\s\/]+\.f(ast)?q(\.gz)?$ (plain or gzipped FASTQ); barcode is for
# nanopore demultiplexed data, not ENA runs.
_VIRALRECON = SheetRules(
    name="viralrecon",
    columns=("sample", "fastq_1", "fastq_2"),
    required=("sample", "fastq_1"),
    patterns={
        "sample": _NO_SPACE,
        "fastq_1": r"^([\S\s]*\/)?[^\s\/]+\.f(ast)?q(\.gz)?$",
        "fastq_2": r"^([\S\s]*\/)?[^\s\/]+\.f(ast)?q(\.gz)?$",
    },
    source="https://github.com/nf-core/viralrecon/blob/master/assets/schema_input.json",
)

# nf-core/mag assets/schema_input.json: sample and group required (^\S+$: an empty
# group fails, nf-core/fetchngs#401); run ^\S+$, unique within a sample; short_reads_1
# or long_reads required; short_reads_2 needs short_reads_1, short_reads_1 needs
# short_reads_platform, long_reads needs long_reads_platform; the two platform enums.
_MAG = SheetRules(
    name="mag",
    columns=(
        "sample",
        "run",
        "group",
        "short_reads_1",
        "short_reads_2",
        "short_reads_platform",
        "long_reads",
        "long_reads_platform",
    ),
    required=("sample", "group"),
    patterns={
        "sample": _NO_SPACE,
        "run": _NO_SPACE,
        "group": _NO_SPACE,
        "short_reads_1": _FASTQ_GZ,
        "short_reads_2": _FASTQ_GZ,
        "long_reads": _FASTQ_GZ,
    },
    enums={
        "short_reads_platform": (
            "ILLUMINA",
            "BGISEQ",
            "LS454",
            "ION_TORRENT",
            "DNBSEQ",
            "ELEMENT",
            "ULTIMA",
            "VELA_DIAGNOSTICS",
            "GENAPSYS",
            "GENEMIND",
            "TAPESTRI",
        ),
        "long_reads_platform": ("OXFORD_NANOPORE", "OXFORD_NANOPORE_HQ", "PACBIO_SMRT"),
    },
    unique=(("sample", "run"),),
    depends={
        "short_reads_2": ("short_reads_1",),
        "short_reads_1": ("short_reads_platform",),
        "long_reads": ("long_reads_platform",),
    },
    source="https://github.com/nf-core/mag/blob/master/assets/schema_input.json",
)

# nf-core/fetchngs modules/local/sra_to_samplesheet/main.nf with no --nf_core_pipeline:
# sample, fastq_1, fastq_2, then every run-info field. No schema reads it; the FASTQ
# rules are those of the pipelines it feeds.
_FETCHNGS = SheetRules(
    name="fetchngs",
    columns=("sample", "fastq_1", "fastq_2"),
    required=("sample", "fastq_1"),
    patterns={"sample": _NO_SPACE, "fastq_1": _FASTQ_GZ, "fastq_2": _FASTQ_GZ},
    source="https://github.com/nf-core/fetchngs/blob/master/modules/local/sra_to_samplesheet/main.nf",
)

FORMATS: Final[Mapping[str, SheetRules]] = {
    r.name: r for r in (_RNASEQ, _ATACSEQ, _TAXPROFILER, _VIRALRECON, _MAG, _FETCHNGS)
}

#: ``mirror samplesheet --format`` choices (and the manifest's ``samplesheets:``).
SHEET_FORMATS: Final = tuple(FORMATS)

#: The mag rule the schema writes as ``anyOf``: one of these holds a value.
MAG_ANY_OF: Final = ("short_reads_1", "long_reads")


def check_sheet(rules: SheetRules, rows: Sequence[Mapping[str, str]]) -> list[str]:
    """Every way ``rows`` break ``rules``, one message each (empty: the sheet passes)."""
    checker = SheetChecker(rules)
    return [problem for row in rows for problem in checker.add(row)]


class SheetChecker:
    """Checks rows one by one against ``rules`` and the rows it took before them; a
    row that breaks a rule is not taken (later rows are not compared with it)."""

    def __init__(self, rules: SheetRules) -> None:
        self.rules = rules
        self.rows = 0
        self._unique: list[set[tuple[str, ...]]] = [set() for _ in rules.unique]
        self._paired: dict[str, bool] = {}

    def add(self, row: Mapping[str, str]) -> list[str]:
        """What is wrong with ``row`` (``row N: ...`` each); empty: taken."""
        rules, n = self.rules, self.rows + 1
        problems: list[str] = []
        for column in rules.required:
            if not row.get(column):
                problems.append(f"row {n}: {column} is empty")
        for column, pattern in rules.patterns.items():
            value = row.get(column, "")
            if value and re.search(pattern, value) is None:
                problems.append(f"row {n}: {column} {value!r} does not match {pattern}")
        for column, allowed in rules.enums.items():
            value = row.get(column, "")
            if value and value not in allowed:
                problems.append(f"row {n}: {column} {value!r} is not one of {allowed}")
        for column, needs in rules.depends.items():
            if row.get(column):
                problems += [f"row {n}: {column} needs {c}" for c in needs if not row.get(c)]
        if rules.name == "mag" and not any(row.get(c) for c in MAG_ANY_OF):
            problems.append(f"row {n}: neither {' nor '.join(MAG_ANY_OF)} is given")
        sample = row.get("sample", "")
        if rules.one_layout_per_sample is not None:
            two = bool(row.get(rules.one_layout_per_sample))
            if self._paired.get(sample, two) != two:
                was, now = ("single-end", "paired-end") if two else ("paired-end", "single-end")
                problems.append(
                    f"row {n}: sample {sample!r} is {was} in an earlier row, {now} here "
                    "(one sample, one layout)"
                )
        keys = [tuple(row.get(c, "") for c in columns) for columns in rules.unique]
        for columns, key, seen in zip(rules.unique, keys, self._unique, strict=True):
            if all(key) and key in seen:
                problems.append(f"row {n}: {'+'.join(columns)} {key} repeats an earlier row")
        if problems:
            return problems
        self.rows = n
        if rules.one_layout_per_sample is not None:
            self._paired[sample] = bool(row.get(rules.one_layout_per_sample))
        for key, seen in zip(keys, self._unique, strict=True):
            if all(key):
                seen.add(key)
        return []
