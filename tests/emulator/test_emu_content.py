"""Deterministic content, the FTP layout, and the catalog records."""

from __future__ import annotations

import gzip
import hashlib

import pytest

from mirror.emulator import Catalog, EnaFile, EnaRun, GeneratedStudy, iter_range, md5_of
from mirror.emulator._content import BLOCK_SIZE, content_bytes
from mirror.emulator.ena._layout import dir2, fastq_dir, sra_path
from mirror.emulator.ena._records import ACCESSION_PATTERNS

MIB = 1 << 20


def test_content_is_deterministic_and_depends_on_path_and_size() -> None:
    first = content_bytes("vol1/a", 3 * MIB + 5)
    assert first == content_bytes("vol1/a", 3 * MIB + 5)
    assert len(first) == 3 * MIB + 5
    assert first[:4096] != content_bytes("vol1/b", 3 * MIB + 5)[:4096]
    assert first[:4096] != content_bytes("vol1/a", 3 * MIB + 6)[:4096]


def test_content_chunks_differ_from_each_other() -> None:
    # Chunk k is a rotation of the block: a resume at the wrong MiB must change the MD5.
    data = content_bytes("vol1/rot", 3 * MIB)
    chunks = {data[k * MIB : (k + 1) * MIB] for k in range(3)}
    assert len(chunks) == 3


@pytest.mark.parametrize(
    ("start", "end"),
    [
        pytest.param(0, 1, id="first-byte"),
        pytest.param(MIB - 1, MIB + 1, id="block-boundary"),
        pytest.param(123_457, 2 * MIB + 99, id="across-two-boundaries"),
        pytest.param(3 * MIB, 3 * MIB + 5, id="tail"),
        pytest.param(7, 7, id="empty"),
    ],
)
def test_any_range_is_a_slice_of_the_whole(start: int, end: int) -> None:
    size = 3 * MIB + 5
    whole = content_bytes("vol1/x", size)
    assert content_bytes("vol1/x", size, start, end) == whole[start:end]


def test_iter_range_respects_chunk_and_yields_views() -> None:
    pieces = list(iter_range("vol1/x", 10_000, 10, 9_000, chunk=1000))
    assert all(isinstance(piece, memoryview) and len(piece) <= 1000 for piece in pieces)
    assert b"".join(pieces) == content_bytes("vol1/x", 10_000)[10:9_000]
    with pytest.raises(ValueError, match="outside"):
        list(iter_range("vol1/x", 10, 5, 11))


def test_small_file_is_its_own_block_and_md5_matches() -> None:
    data = content_bytes("vol1/small", 1024)
    assert len(data) == 1024
    assert md5_of("vol1/small", 1024) == hashlib.md5(data).hexdigest()
    assert md5_of("vol1/empty", 0) == hashlib.md5(b"").hexdigest()
    big = 2 * BLOCK_SIZE + 3
    assert md5_of("vol1/big", big) == hashlib.md5(content_bytes("vol1/big", big)).hexdigest()


@pytest.mark.parametrize(
    ("accession", "expected"),
    [
        pytest.param("ERR164407", "", id="9-chars"),
        pytest.param("ERR1644071", "001", id="10-chars"),
        pytest.param("SRR12345678", "078", id="11-chars"),
        pytest.param("ERR120000456", "456", id="12-chars"),
    ],
)
def test_dir2(accession: str, expected: str) -> None:
    assert dir2(accession) == expected


def test_layout_paths() -> None:
    assert fastq_dir("ERR1644071") == "vol1/fastq/ERR164/001/ERR1644071"
    assert fastq_dir("ERR164407") == "vol1/fastq/ERR164/ERR164407"
    assert sra_path("ERR4080001") == "vol1/err/ERR408/001/ERR4080001"


def test_demo_catalog_has_the_real_edge_cases() -> None:
    catalog = Catalog.demo()
    files = list(catalog.iter_files())
    assert len(files) == catalog.file_count >= 14
    assert min(f.size for f in files) == 1024
    assert 3 * MIB <= max(f.size for f in files) < 4 * MIB
    runs = {run.accession: run for run in catalog.iter_runs()}
    assert len(runs["ERR4080002"].fastq) == 3  # unpaired + _1 + _2
    assert not runs["ERR4080003"].fastq
    assert len(runs["ERR4080003"].submitted) == 2
    assert runs["SRR9320616"].library_layout == "PAIRED"
    assert len(runs["SRR9320616"].fastq) == 1
    assert {run.study for run in runs.values()} >= {"PRJEB40001", "PRJEB40002"}
    assert next(f.path for f in runs["ERR164407"].fastq) == (
        "vol1/fastq/ERR164/007/ERR164407/ERR164407_1.fastq.gz"
    )
    for run in runs.values():
        assert ACCESSION_PATTERNS["run"].fullmatch(run.accession)
        assert ACCESSION_PATTERNS["biosample"].fullmatch(run.sample)
    (analysis,) = catalog.iter_analyses()
    assert len(analysis.submitted) == len(analysis.generated) == 1


def test_catalog_round_trips_through_dict() -> None:
    demo = Catalog.demo()
    assert Catalog.from_dict(demo.to_dict()) == demo
    generated = Catalog.generate(3, studies=2, runs_per_study=5, size_spread=0.5)
    assert Catalog.from_dict(generated.to_dict()) == generated


def test_records_check_accession_patterns() -> None:
    with pytest.raises(ValueError, match="run accession"):
        EnaRun(
            accession="ERR12",
            experiment="ERX123456",
            sample="SAMEA1",
            secondary_sample="ERS123456",
            study="PRJEB1",
            secondary_study="ERP123456",
        )
    with pytest.raises(ValueError, match="vol1"):
        EnaFile(path="/vol1/x", size=1)


def test_duplicate_paths_are_rejected() -> None:
    demo = Catalog.demo()
    with pytest.raises(ValueError, match="duplicate"):
        Catalog(runs=demo.runs + demo.runs[:1])


def test_generated_study_answers_lookups_without_materialising() -> None:
    catalog = Catalog.generate(runs_per_study=500_000, files_per_run=2, sample_ratio=4)
    assert catalog.file_count == 1_000_000
    (study,) = catalog.generated_studies
    last = study.run(499_999)
    assert last.accession == "ERR200499999"
    assert last.fastq[1].path == "vol1/fastq/ERR200/999/ERR200499999/ERR200499999_2.fastq.gz"
    assert catalog.file(last.fastq[1].path) == last.fastq[1]
    assert catalog.file("vol1/fastq/ERR200/999/ERR200499999/ERR200499999_3.fastq.gz") is None
    assert [r.accession for r in catalog.runs_for("ERR200000007", "run")] == ["ERR200000007"]
    assert [r.accession for r in catalog.runs_for("ERS200000001")] == [
        f"ERR20000000{i}" for i in range(4, 8)
    ]
    assert list(catalog.runs_for("ERR200000007", "sample")) == []


@pytest.mark.parametrize(
    ("files_per_run", "names", "layout"),
    [
        pytest.param(1, ["X.fastq.gz"], "SINGLE", id="single"),
        pytest.param(2, ["X_1.fastq.gz", "X_2.fastq.gz"], "PAIRED", id="paired"),
        pytest.param(3, ["X.fastq.gz", "X_1.fastq.gz", "X_2.fastq.gz"], "PAIRED", id="three"),
    ],
)
def test_generated_file_names(files_per_run: int, names: list[str], layout: str) -> None:
    run = GeneratedStudy(index=1, runs=1, files_per_run=files_per_run).run(0)
    assert [f.path.rsplit("/", 1)[1].replace(run.accession, "X") for f in run.fastq] == names
    assert run.library_layout == layout


@pytest.mark.parametrize(
    "size",
    [
        pytest.param(23, id="empty-member"),
        pytest.param(65_553, id="one-full-block"),
        pytest.param(65_560, id="slack-below-a-block-head"),
        pytest.param(3 * MIB + 17, id="many-blocks"),
    ],
)
def test_gz_file_is_a_valid_gzip_member_of_its_size(size: int) -> None:
    data = content_bytes("vol1/fastq/ERR1/ERR1_1.fastq.gz", size)
    assert len(data) == size
    inner = gzip.decompress(data)  # checks the CRC-32 and length trailer
    assert len(inner) == size - 18 - 5 * -(-(size - 18) // 65_540)
    assert md5_of("vol1/fastq/ERR1/ERR1_1.fastq.gz", size) == hashlib.md5(data).hexdigest()


def test_gz_ranges_are_slices_of_the_whole_from_any_offset() -> None:
    path, size = "vol1/run/x.bam.gz", 2 * MIB + 131_085
    whole = content_bytes(path, size)
    for start, end in [
        (0, 1),
        (9, 16),
        (65_545, 65_560),
        (MIB - 3, MIB + 70_000),
        (size - 9, size),
    ]:
        pieces = list(iter_range(path, size, start, end, chunk=4096))
        assert all(len(piece) <= 4096 for piece in pieces)
        assert b"".join(pieces) == whole[start:end]


def test_gz_content_differs_from_the_same_name_without_gz() -> None:
    assert content_bytes("vol1/a.fastq", 4096)[:2] != b"\x1f\x8b"
    assert content_bytes("vol1/a.fastq.gz", 4096)[:2] == b"\x1f\x8b"
