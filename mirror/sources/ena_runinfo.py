"""``metadata/ena/runinfo_ftp.tsv``: ENA run rows in nf-core/fetchngs's layout.

fetchngs publishes ``metadata/*.runinfo_ftp.tsv`` (bin/sra_ids_to_runinfo.py asks the
Portal for ``ENA_METADATA_FIELDS``; bin/sra_runinfo_to_ftp.py adds ``id`` in front and
``fastq_1, fastq_2, md5_1, md5_2, single_end`` behind). Scripts written against that
file read ours: same columns, same order, FTP paths as the Portal gives them.

Which FASTQs are the reads is decided here, once, for this table and the samplesheets:
``_1``/``_2`` are a pair; a run's only FASTQ is single-end; a third, unpaired file beside
a pair (``ERR….fastq.gz``) is left out, as fetchngs leaves it out.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from .._metadata import TableWriter

__all__ = ["RUNINFO_COLUMNS", "RUNINFO_FIELDS", "RunInfo", "RunInfoTable", "pick_reads"]

#: nf-core/fetchngs bin/sra_ids_to_runinfo.py ENA_METADATA_FIELDS, in its order.
RUNINFO_FIELDS: Final = (
    "run_accession",
    "experiment_accession",
    "sample_accession",
    "secondary_sample_accession",
    "study_accession",
    "secondary_study_accession",
    "submission_accession",
    "run_alias",
    "experiment_alias",
    "sample_alias",
    "study_alias",
    "library_layout",
    "library_selection",
    "library_source",
    "library_strategy",
    "library_name",
    "instrument_model",
    "instrument_platform",
    "base_count",
    "read_count",
    "tax_id",
    "scientific_name",
    "sample_title",
    "experiment_title",
    "study_title",
    "sample_description",
    "fastq_md5",
    "fastq_bytes",
    "fastq_ftp",
    "fastq_galaxy",
    "fastq_aspera",
)
#: bin/sra_runinfo_to_ftp.py: ``id``, the run-info fields, then what it adds.
RUNINFO_COLUMNS: Final = (
    "id",
    *RUNINFO_FIELDS,
    "fastq_1",
    "fastq_2",
    "md5_1",
    "md5_2",
    "single_end",
)

_MATE = re.compile(r"_([12])\.f(?:ast)?q(?:\.gz)?$")


def pick_reads(names: Sequence[str]) -> tuple[int, int | None] | None:
    """Positions in ``names`` of read 1 and read 2 (None: single-end), or None when
    the files do not say (two or more FASTQs that are not one ``_1``/``_2`` pair)."""
    mates: dict[str, int] = {}
    for i, name in enumerate(names):
        m = _MATE.search(name)
        if m is not None:
            mates.setdefault(m.group(1), i)
    if "1" in mates and "2" in mates:
        return mates["1"], mates["2"]
    if len(names) == 1:
        return 0, None
    return None


class RunInfo:
    """Turns Portal ``read_run`` rows into run-info rows; numbers each experiment's runs
    (``{experiment}_{run}_T{n}``, fetchngs's ``id``) across the batches of one pull."""

    def __init__(self) -> None:
        self._runs: dict[str, int] = {}

    def rows(self, portal_rows: Sequence[dict[str, str]]) -> list[dict[str, str]]:
        return [self._row(r) for r in portal_rows]

    def _row(self, portal: dict[str, str]) -> dict[str, str]:
        experiment = portal.get("experiment_accession", "")
        n = self._runs[experiment] = self._runs.get(experiment, 0) + 1
        row = {f: portal.get(f, "") for f in RUNINFO_FIELDS}
        row["id"] = f"{experiment}_{portal.get('run_accession', '')}_T{n}"
        ftp = [u for u in portal.get("fastq_ftp", "").split(";") if u]
        md5 = portal.get("fastq_md5", "").split(";")
        picked = pick_reads(ftp)
        if picked is not None:
            one, two = picked
            row["fastq_1"] = ftp[one]
            row["md5_1"] = md5[one] if one < len(md5) else ""
            if two is not None:
                row["fastq_2"] = ftp[two]
                row["md5_2"] = md5[two] if two < len(md5) else ""
            row["single_end"] = "true" if two is None else "false"
        else:
            # No FASTQ (fetchngs falls back to sra-tools): the layout says which.
            layout = portal.get("library_layout", "")
            row["single_end"] = {"SINGLE": "true", "PAIRED": "false"}.get(layout, "")
        return row


class RunInfoTable:
    """``ena/runinfo_ftp.tsv``, written beside ``runs.tsv`` from the same rows."""

    def __init__(self, table: TableWriter) -> None:
        self.table = table
        self.numbering = RunInfo()
