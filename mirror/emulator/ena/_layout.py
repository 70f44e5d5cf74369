"""ENA's FTP directory layout: where fastq, submitted, SRA and analysis files live."""

from __future__ import annotations

__all__ = [
    "FTP_HOST",
    "analysis_dir",
    "dir2",
    "fastq_dir",
    "file_format",
    "run_dir",
    "sra_path",
]

# ENA's _ftp report fields carry no scheme: "ftp.sra.ebi.ac.uk/vol1/..." (ffq fixtures).
FTP_HOST = "ftp.sra.ebi.ac.uk"


def dir2(accession: str) -> str:
    """The second-level directory of ``vol1/fastq`` and ``vol1/err`` for a run.

    ENA's read-download rule: none for 9-character accessions, ``00`` + last digit for
    10, ``0`` + last two for 11, the last three for 12 and longer. The real tree breaks
    it (the docs show ``ERR164/007/ERR164407``; kingfisher#26 saw ``SRR616/SRR616044``),
    so the demo catalog carries one such exception on purpose: clients must take the
    URLs from the reports, never derive them.
    """
    digits = len(accession) - 9
    if digits <= 0:
        return ""
    if digits >= 3:
        return accession[-3:]
    return "0" * (3 - digits) + accession[-digits:]


def _join(*parts: str) -> str:
    return "/".join(part for part in parts if part)


def fastq_dir(accession: str) -> str:
    return _join("vol1/fastq", accession[:6], dir2(accession), accession)


def run_dir(accession: str) -> str:
    """Directory of a run's submitted files (``vol1/run/ERR164/ERR164407``)."""
    return _join("vol1/run", accession[:6], accession)


def sra_path(accession: str) -> str:
    """The SRA-format file of a run; it has no extension (``vol1/err/ERR164/007/ERR164407``)."""
    return _join("vol1/err", accession[:6], dir2(accession), accession)


def analysis_dir(accession: str) -> str:
    return _join("vol1/analysis", accession[:6], accession)


_FORMATS = (
    (".fastq.gz", "FASTQ"),
    (".fq.gz", "FASTQ"),
    (".fastq", "FASTQ"),
    (".bam.bai", "BAI"),
    (".bai", "BAI"),
    (".bam", "BAM"),
    (".cram.crai", "CRAI"),
    (".crai", "CRAI"),
    (".cram", "CRAM"),
    (".vcf.gz", "VCF"),
    (".fasta.gz", "FASTA"),
    (".txt", "TXT"),
)


def file_format(path: str) -> str:
    """The ``submitted_format`` word ENA shows for a file (``BAM;BAI`` for a BAM+BAI run)."""
    lower = path.lower()
    for suffix, name in _FORMATS:
        if lower.endswith(suffix):
            return name
    return "OTHER"
