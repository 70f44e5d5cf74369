"""Parsing ENA file-report rows: aligned ;-lists, three-FASTQ runs, no-scheme URLs."""

from __future__ import annotations

import pytest

from mirror._exceptions import SourceError, UnexpectedAnswer
from mirror.sources.ena import FamilyFile, ReportParser, file_url, parse_family

BASE = "ftp.sra.ebi.ac.uk/vol1/fastq/ERR110/003/ERR1109373"


def test_three_fastq_run_keeps_every_file_with_its_own_md5() -> None:
    # ERR1109373 has unpaired reads plus _1 and _2 (fetchngs#331 paired the wrong MD5s).
    row = {
        "fastq_ftp": f"{BASE}/ERR1109373.fastq.gz;{BASE}/ERR1109373_1.fastq.gz;"
        f"{BASE}/ERR1109373_2.fastq.gz",
        "fastq_md5": "AAAA0000aaaa0000aaaa0000aaaa0000;bbbb;cccc",
        "fastq_bytes": "10;20;30",
    }
    assert parse_family(row, "fastq") == [
        FamilyFile(f"{BASE}/ERR1109373.fastq.gz", "aaaa0000aaaa0000aaaa0000aaaa0000", 10),
        FamilyFile(f"{BASE}/ERR1109373_1.fastq.gz", "bbbb", 20),
        FamilyFile(f"{BASE}/ERR1109373_2.fastq.gz", "cccc", 30),
    ]


def test_run_without_files() -> None:
    assert parse_family({"fastq_ftp": "", "fastq_md5": "", "fastq_bytes": ""}, "fastq") == []
    assert parse_family({}, "submitted") == []


def test_paired_layout_with_one_file() -> None:
    row = {"fastq_ftp": f"{BASE}/x.fastq.gz", "fastq_md5": "ab", "fastq_bytes": "5"}
    assert parse_family(row, "fastq") == [FamilyFile(f"{BASE}/x.fastq.gz", "ab", 5)]


def test_misaligned_lists_are_refused() -> None:
    row = {"fastq_ftp": "h/a;h/b", "fastq_md5": "x", "fastq_bytes": "1;2"}
    with pytest.raises(SourceError, match="fastq_ftp lists 2 files but fastq_md5 lists 1"):
        parse_family(row, "fastq")


def test_missing_md5_and_size_are_none() -> None:
    row = {"submitted_ftp": "h/a.bam;h/a.bai", "submitted_md5": ";", "submitted_bytes": ";"}
    assert parse_family(row, "submitted") == [
        FamilyFile("h/a.bam", None, None),
        FamilyFile("h/a.bai", None, None),
    ]


@pytest.mark.parametrize(
    ("value", "url"),
    [
        (f"{BASE}/x.gz", "http://127.0.0.1:9/vol1/fastq/ERR110/003/ERR1109373/x.gz"),
        (f"ftp://{BASE}/x.gz", "http://127.0.0.1:9/vol1/fastq/ERR110/003/ERR1109373/x.gz"),
        ("ftp.ebi.ac.uk/pub/databases/ena/x.gz", "https://ftp.ebi.ac.uk/pub/databases/ena/x.gz"),
    ],
)
def test_file_url_maps_the_ena_host_to_the_files_endpoint(value: str, url: str) -> None:
    assert file_url(value, "http://127.0.0.1:9/") == url


@pytest.mark.parametrize(
    ("value", "url"),
    [
        # Sanger lane#tag names: '#' is part of the path, not a fragment.
        (
            "ftp.sra.ebi.ac.uk/vol1/run/ERR325/ERR3256745/27604_8#1.cram",
            "http://127.0.0.1:9/vol1/run/ERR325/ERR3256745/27604_8%231.cram",
        ),
        (
            "ftp.sra.ebi.ac.uk/vol1/run/x/a b%41?c.fq",
            "http://127.0.0.1:9/vol1/run/x/a%20b%2541%3Fc.fq",
        ),
        ("ftp.sra.ebi.ac.uk/vol1/run/x/é.fq", "http://127.0.0.1:9/vol1/run/x/%C3%A9.fq"),
    ],
)
def test_ftp_values_are_paths_and_are_percent_encoded(value: str, url: str) -> None:
    assert file_url(value, "http://127.0.0.1:9") == url


def _feed_bytewise(parser: ReportParser, body: bytes) -> list[dict[str, str]]:
    rows = []
    for i in range(len(body)):
        rows += parser.feed(body[i : i + 1])
    return rows + parser.close()


def test_report_rows_survive_any_split_of_the_body() -> None:
    tsv = "run_accession\tsubmitted_ftp\r\nERR1\th/é#1.cram\r\n\r\nERR2\t\n".encode()
    assert _feed_bytewise(ReportParser(), tsv) == [
        {"run_accession": "ERR1", "submitted_ftp": "h/é#1.cram"},
        {"run_accession": "ERR2", "submitted_ftp": ""},
    ]
    # The Portal's JSON: a list of flat objects, values as strings ("" when empty).
    doc = (
        ' [{"run_accession":"ERR1","fastq_ftp":"h/a;h/b","n":3},\n'
        ' {"run_accession":"ERR2","x":null}]'
    )
    assert _feed_bytewise(ReportParser(), doc.encode()) == [
        {"run_accession": "ERR1", "fastq_ftp": "h/a;h/b", "n": "3"},
        {"run_accession": "ERR2", "x": ""},
    ]
    assert ReportParser().feed(b"[]") == []


def test_a_report_without_a_last_newline_keeps_its_last_row() -> None:
    parser = ReportParser()
    assert parser.feed(b"run_accession\nERR1\nERR2") == [{"run_accession": "ERR1"}]
    assert parser.close() == [{"run_accession": "ERR2"}]


@pytest.mark.parametrize(
    ("body", "error", "message"),
    [
        # A body cut short or not shaped as a report: retried, as a transient answer.
        (b'[{"run_accession":"ERR1"}', UnexpectedAnswer, "JSON report that ends early"),
        (b'[{"run_accession":"ERR1"', UnexpectedAnswer, "malformed JSON"),
        (b'["ERR1"]', UnexpectedAnswer, "not a report row"),
        (b"run_accession\n" + b"x" * 200, SourceError, "longer than 100 characters"),
    ],
)
def test_broken_reports_are_refused(body: bytes, error: type[Exception], message: str) -> None:
    def parse() -> None:
        parser = ReportParser(limit=100)
        parser.feed(body)
        parser.close()

    with pytest.raises(error, match=message):
        parse()


def test_a_byte_count_no_file_can_have_is_refused() -> None:
    # Past 2**63 - 1 no file system (and no state store) can hold the size.
    row = {"fastq_ftp": "h/a;h/b", "fastq_md5": "aa;bb", "fastq_bytes": "10;99999999999999999999"}
    with pytest.raises(SourceError, match="fastq_bytes value '99999999999999999999'"):
        parse_family(row, "fastq")
