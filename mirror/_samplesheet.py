"""Samplesheets for nf-core pipelines from a mirror's verified FASTQs and ENA run rows.

Read from ``dest`` alone, no network: ``index.tsv`` says which files are verified and
where they are, ``metadata/ena/runs.tsv`` what each run is. A run is listed only when
the reads it needs are verified and on disk; any other run is named in a warning.
The rules each sheet meets are in :mod:`mirror._samplesheet_rules`.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ._exceptions import ManifestError
from ._samplesheet_rules import FORMATS, SheetChecker, SheetRules
from .sources.ena_runinfo import RUNINFO_FIELDS, pick_reads

__all__ = ["RunReads", "Sheet", "build_sheet", "read_runs"]

#: The column a sample is named after, by default, per format: one row per run, and
#: runs of one library (experiment) merged by the pipeline as technical replicates;
#: mag and taxprofiler have a run column of their own, so the sample is the BioSample.
_SAMPLE_BY = {
    "rnaseq": "experiment",
    "atacseq": "experiment",
    "viralrecon": "experiment",
    "fetchngs": "experiment",
    "taxprofiler": "sample",
    "mag": "sample",
}
SAMPLE_FIELDS = {
    "run": "run_accession",
    "experiment": "experiment_accession",
    "sample": "sample_accession",
}
_LONG_READS = frozenset({"OXFORD_NANOPORE", "PACBIO_SMRT"})


@dataclass(frozen=True, kw_only=True, slots=True)
class RunReads:
    """One run's reads as verified local files (read 2 None when single-end)."""

    run: Mapping[str, str]
    fastq_1: Path
    fastq_2: Path | None
    md5_1: str
    md5_2: str


@dataclass(frozen=True, kw_only=True, slots=True)
class Sheet:
    rules: SheetRules
    columns: tuple[str, ...]
    rows: list[dict[str, str]]
    warnings: list[str] = field(default_factory=list)

    def csv(self) -> str:
        out = io.StringIO()
        # fetchngs quotes every cell; its metadata has commas (titles). The pipelines'
        # sheets hold accessions and paths only.
        if self.rules.name == "fetchngs":
            writer = csv.DictWriter(out, self.columns, quoting=csv.QUOTE_ALL, lineterminator="\n")
        else:
            writer = csv.DictWriter(out, self.columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        return out.getvalue()


def read_runs(dest: Path) -> tuple[list[RunReads], list[str]]:
    """Every ENA run of ``dest`` whose reads are verified, and a warning for each other."""
    index_path = dest / "index.tsv"
    runs_path = dest / "metadata" / "ena" / "runs.tsv"
    for path in (index_path, runs_path):
        if not path.is_file():
            raise ManifestError(
                f"no {path.relative_to(dest)} under {dest}: nothing has been mirrored from "
                "ENA there yet",
                file=str(path),
                hint="run 'mirror run MANIFEST' (or 'mirror get') with ENA runs first",
            )
    # (run, URL path) -> (status, path, md5): only what a sheet needs of each file, so
    # 100,000 files take tens of MB, not a dict each.
    files: dict[tuple[str, str], tuple[str, str, str]] = {}
    for row in _tsv(index_path, escaped=False):
        if row.get("source") != "ena":
            continue
        key = (row.get("accession", ""), _url_path(row.get("url", "")))
        files[key] = (row.get("status", ""), row.get("path", ""), row.get("md5", ""))
    reads: list[RunReads] = []
    warnings: list[str] = []
    seen: set[str] = set()
    for run in _tsv(runs_path, escaped=True):
        acc = run.get("run_accession", "")
        # Two entries asking for other fields leave two rows of one run in runs.tsv
        # (tables are merged row by row): one sheet row each would be read as two
        # technical replicates.
        if acc in seen:
            continue
        seen.add(acc)
        ftp = [u for u in run.get("fastq_ftp", "").split(";") if u]
        if not ftp:
            warnings.append(f"{acc}: no FASTQ files at ENA; left out")
            continue
        picked = pick_reads([u.rsplit("/", 1)[-1] for u in ftp])
        if picked is None:
            names = ", ".join(u.rsplit("/", 1)[-1] for u in ftp)
            warnings.append(f"{acc}: cannot tell read 1 from read 2 among {names}; left out")
            continue
        chosen = [ftp[picked[0]]] + ([ftp[picked[1]]] if picked[1] is not None else [])
        picked_files: list[tuple[Path, str]] = []
        for url in chosen:
            key = (acc, _url_path(url))
            name = url.rsplit("/", 1)[-1]
            if key not in files:
                warnings.append(
                    f"{acc}: {name} was never planned (not in index.tsv: is 'fastq' among "
                    "the ENA entry's files?); run left out"
                )
                break
            status, rel, md5 = files[key]
            if status != "verified" or not rel:
                warnings.append(f"{acc}: {name} is {status or 'not verified'}; run left out")
                break
            local = dest / rel
            if not local.is_file():
                warnings.append(
                    f"{acc}: {name} is gone from {local.parent} (verified once; 'mirror "
                    "verify' then 'mirror run' fetch it again); run left out"
                )
                break
            picked_files.append((local.absolute(), md5))
        else:
            two = picked_files[1] if len(picked_files) > 1 else None
            reads.append(
                RunReads(
                    run=run,
                    fastq_1=picked_files[0][0],
                    fastq_2=two[0] if two else None,
                    md5_1=picked_files[0][1],
                    md5_2=two[1] if two else "",
                )
            )
    return reads, warnings


def build_sheet(
    fmt: str,
    runs: list[RunReads],
    *,
    sample_by: str | None = None,
    strandedness: str = "auto",
) -> Sheet:
    """The ``fmt`` sheet of ``runs``: rows that break its rules are warned of, left out."""
    rules = FORMATS[fmt]
    name_field = SAMPLE_FIELDS[sample_by or _SAMPLE_BY[fmt]]
    columns = rules.columns
    if fmt == "fetchngs":
        # sra_to_samplesheet/main.nf: sample, fastq_1, fastq_2, then the run's metadata
        # (without the md5_*/single_end it used to download).
        columns = (*columns, *RUNINFO_FIELDS)
    rows: list[dict[str, str]] = []
    warnings: list[str] = []
    checker = SheetChecker(rules)
    for r in runs:
        one, two = str(r.fastq_1), str(r.fastq_2) if r.fastq_2 else ""
        sample = r.run.get(name_field, "") or r.run.get("run_accession", "")
        row: dict[str, str] = {"sample": sample}
        platform = r.run.get("instrument_platform", "")
        match fmt:
            case "rnaseq":
                row |= {"fastq_1": one, "fastq_2": two, "strandedness": strandedness}
            case "atacseq":
                row |= {"fastq_1": one, "fastq_2": two, "replicate": "1"}
            case "viralrecon":
                row |= {"fastq_1": one, "fastq_2": two}
            case "taxprofiler":
                row |= {
                    "run_accession": r.run.get("run_accession", ""),
                    "instrument_platform": platform,
                    "fastq_1": one,
                    "fastq_2": two,
                    "fasta": "",
                }
            case "mag":
                row |= {
                    "run": r.run.get("run_accession", ""),
                    # Runs of one study are binned together unless the user regroups.
                    "group": r.run.get("study_accession", "") or "0",
                }
                if platform in _LONG_READS and not two:
                    row |= {"long_reads": one, "long_reads_platform": platform}
                else:
                    row |= {
                        "short_reads_1": one,
                        "short_reads_2": two,
                        "short_reads_platform": platform,
                    }
            case "fetchngs":
                row |= {f: r.run.get(f, "") for f in RUNINFO_FIELDS}
                row |= {"fastq_1": one, "fastq_2": two}
        problems = checker.add(row)
        if problems:
            acc = r.run.get("run_accession", "")
            warnings.append(f"{acc}: {problems[0].split(': ', 1)[1]}; left out of the {fmt} sheet")
            continue
        rows.append(row)
    return Sheet(rules=rules, columns=columns, rows=rows, warnings=warnings)


def _url_path(url: str) -> str:
    """``/vol1/fastq/...`` of a Portal path (no scheme) or an index URL (scheme, host)."""
    rest = url.split("://", 1)[-1]
    return "/" + rest.split("/", 1)[1] if "/" in rest else ""


def _tsv(path: Path, *, escaped: bool) -> Iterator[dict[str, str]]:
    """The rows of a TSV, read a line at a time (an index can be large)."""
    with path.open(encoding="utf-8", newline="\n") as f:
        header = f.readline().rstrip("\n").split("\t")
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            cells = line.split("\t")
            if escaped:
                cells = [_unescape(c) for c in cells]
            yield dict(zip(header, cells, strict=False))


def _unescape(cell: str) -> str:
    # The inverse of _metadata._cell: \\t \\n \\r \\\\.
    if "\\" not in cell:
        return cell
    out, i = [], 0
    while i < len(cell):
        c = cell[i]
        if c == "\\" and i + 1 < len(cell):
            out.append({"t": "\t", "n": "\n", "r": "\r", "\\": "\\"}.get(cell[i + 1], cell[i + 1]))
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)
