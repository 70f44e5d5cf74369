"""Reading @SQ M5 tags from CRAM 3.0, BAM and SAM headers without samtools."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from mirror._hts import HeaderError, Reference, _itf8, read_header_text, references

from .hts_files import header_text, itf8, write_bam, write_cram, write_sam

REFS = [
    ("chr1", 248956422, "6aef897c3d6ff0c78aff06ac189178dd"),
    ("chrM", 16569, "c68f52674c9fb33aef52dcf399755519"),
]


@pytest.mark.parametrize(
    "value", [0, 1, 127, 128, 16383, 16384, 2097151, 2097152, 268435455, 268435456, 2**31 - 1]
)
def test_itf8_round_trip(value: int) -> None:
    assert _itf8(io.BytesIO(itf8(value))) == value


@pytest.mark.parametrize(
    ("write", "name"),
    [
        pytest.param(write_cram, "x.cram", id="cram-raw"),
        pytest.param(lambda p, t: write_cram(p, t, gzip_block=True), "x.cram", id="cram-gzip"),
        pytest.param(write_bam, "x.bam", id="bam"),
        pytest.param(write_sam, "x.sam", id="sam"),
    ],
)
def test_m5_tags_are_read(tmp_path: Path, write: object, name: str) -> None:
    path = tmp_path / name
    write(path, header_text(REFS))  # type: ignore[operator]
    assert references(read_header_text(path)) == [
        Reference(name=n, length=length, md5=md5) for n, length, md5 in REFS
    ]


def test_sq_without_m5() -> None:
    assert references("@SQ\tSN:x\tLN:5\n") == [Reference(name="x", length=5, md5=None)]


def test_not_a_cram(tmp_path: Path) -> None:
    path = tmp_path / "x.cram"
    path.write_bytes(b"CRAM\x03\x00" + b"\0" * 20)  # a definition and nothing after it
    with pytest.raises(HeaderError):
        read_header_text(path)
