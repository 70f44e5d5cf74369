"""Reading @SQ M5 tags from CRAM (2.1, 3.0, 3.1), BAM and SAM files written by samtools."""

from __future__ import annotations

import gzip
import io
import struct
import zlib
from pathlib import Path

import pytest

from mirror._hts import HeaderError, Reference, _itf8, _ltf8, read_header_text, references

from .hts_files import (
    RefSeq,
    header_m5s,
    make_reads,
    make_references,
    write_bam,
    write_cram,
    write_fasta,
    write_sam,
)

LENGTHS = {"chr1": 2400, "chrM": 1650, "contig_3": 700}


def itf8(value: int) -> bytes:
    """ITF8 as CRAMv3.tex "Writing bytes to a byte stream" defines it."""
    v = value & 0xFFFFFFFF
    if v < 0x80:
        return bytes([v])
    if v < 0x4000:
        return bytes([0x80 | (v >> 8), v & 0xFF])
    if v < 0x200000:
        return bytes([0xC0 | (v >> 16), (v >> 8) & 0xFF, v & 0xFF])
    if v < 0x10000000:
        return bytes([0xE0 | (v >> 24), (v >> 16) & 0xFF, (v >> 8) & 0xFF, v & 0xFF])
    return bytes([0xF0 | (v >> 28), (v >> 20) & 0xFF, (v >> 12) & 0xFF, (v >> 4) & 0xFF, v & 0x0F])


def ltf8(value: int) -> bytes:
    v = value & 0xFFFFFFFFFFFFFFFF
    for extra in range(8):
        if v < 1 << (7 * (extra + 1)):  # ``extra`` leading ones, then the value
            prefix = (0xFF00 >> extra) & 0xFF
            raw = v.to_bytes(extra + 1, "big")
            return bytes([prefix | raw[0]]) + raw[1:]
    return b"\xff" + v.to_bytes(8, "big")


@pytest.mark.parametrize(
    "value",
    [0, 1, 127, 128, 16383, 16384, 2097151, 2097152, 268435455, 268435456, 2**31 - 1, -1, -2],
)
def test_itf8_round_trip(value: int) -> None:
    assert _itf8(io.BytesIO(itf8(value))) == value


@pytest.mark.parametrize(
    "value", [0, 127, 128, 2**14, 2**21 + 5, 2**35, 2**56 - 1, 2**56, 2**62, -1]
)
def test_ltf8_round_trip(value: int) -> None:
    assert _ltf8(io.BytesIO(ltf8(value))) == value


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[RefSeq]]:
    """A FASTA and a SAM file with reads; alignment files are written from them."""
    work = tmp_path_factory.mktemp("hts")
    refs = make_references(LENGTHS, seed=11)
    write_fasta(work / "ref.fa", refs)
    write_sam(work / "in.sam", refs, make_reads(refs, per_reference=6, seed=12))
    return work, refs


def expected(refs: list[RefSeq]) -> list[Reference]:
    return [Reference(name=r.name, length=r.length, md5=r.md5) for r in refs]


@pytest.mark.parametrize(
    ("version", "level"),
    [
        pytest.param("3.0", None, id="cram-3.0-gzip-header"),
        pytest.param("3.1", None, id="cram-3.1-gzip-header"),
        pytest.param("3.0", 0, id="cram-3.0-raw-header"),
        pytest.param("2.1", None, id="cram-2.1"),
    ],
)
def test_m5_tags_of_a_cram_written_by_samtools(
    files: tuple[Path, list[RefSeq]], version: str, level: int | None
) -> None:
    work, refs = files
    cram = work / f"x-{version}-{level}.cram"
    write_cram(work / "in.sam", work / "ref.fa", cram, version, level=level)
    assert cram.read_bytes()[4:6] == bytes(int(n) for n in version.split("."))
    got = references(read_header_text(cram))
    assert got == expected(refs)
    assert [r.md5 for r in got] == header_m5s(cram)  # as samtools itself reads them


def test_m5_tags_of_bam_sam_and_gzipped_sam(files: tuple[Path, list[RefSeq]]) -> None:
    work, refs = files
    write_bam(work / "in.sam", work / "x.bam")
    (work / "x.sam.gz").write_bytes(gzip.compress((work / "in.sam").read_bytes()))
    for name in ("x.bam", "in.sam", "x.sam.gz"):
        assert references(read_header_text(work / name)) == expected(refs), name


def test_a_header_of_thousands_of_references(tmp_path: Path) -> None:
    # A 200 kB header: multi-byte ITF8 sizes in the block header.
    refs = make_references({f"scaffold_{i}": 60 for i in range(3000)}, seed=3)
    write_fasta(tmp_path / "ref.fa", refs)
    write_sam(tmp_path / "in.sam", refs, [])
    for version in ("3.0", "3.1"):
        cram = tmp_path / f"x{version}.cram"
        write_cram(tmp_path / "in.sam", tmp_path / "ref.fa", cram, version, level=0)
        assert references(read_header_text(cram)) == expected(refs)


def test_sq_without_m5() -> None:
    assert references("@SQ\tSN:x\tLN:5\n") == [Reference(name="x", length=5, md5=None)]


def _raw_header_block(data: bytes) -> tuple[int, int]:
    """Start and end (after its CRC32) of the raw header block of a samtools CRAM 3 file.

    Found from the text, not from the container header, and confirmed by its CRC32.
    """
    text_at = data.index(b"@HD\t") - 4
    for width in range(1, 6):
        start = text_at - 2 * width - 3
        raw_size = io.BytesIO(data[text_at - width :])
        size = _itf8(raw_size)  # raw: both sizes are equal
        end = text_at + size
        if raw_size.tell() != width:
            continue
        if data[start : start + 3] == b"\0\0\0" and struct.unpack("<I", data[end : end + 4]) == (
            zlib.crc32(data[start:end]),
        ):
            return start, end + 4
    raise AssertionError("no raw header block found")


@pytest.fixture
def raw_cram(files: tuple[Path, list[RefSeq]], tmp_path: Path) -> bytes:
    work, _ = files
    cram = tmp_path / "raw.cram"
    write_cram(work / "in.sam", work / "ref.fa", cram, "3.0", level=0)
    return cram.read_bytes()


def _expect_error(tmp_path: Path, data: bytes, message: str) -> None:
    path = tmp_path / "bad.cram"
    path.write_bytes(data)
    with pytest.raises(HeaderError) as info:
        read_header_text(path)
    assert str(info.value).startswith(f"{path}: ")
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_a_header_block_compressed_with_rans_is_refused_by_name(
    raw_cram: bytes, tmp_path: Path
) -> None:
    start, end = _raw_header_block(raw_cram)
    block = bytearray(raw_cram[start : end - 4])
    block[0] = 4  # rANS: allowed in data blocks, not readable here
    patched = bytes(block) + struct.pack("<I", zlib.crc32(block))
    _expect_error(
        tmp_path,
        raw_cram[:start] + patched + raw_cram[end:],
        "compressed with method 4 (rANS 4x8); only raw and gzip header blocks can be read",
    )


def test_damaged_files(raw_cram: bytes, tmp_path: Path) -> None:
    damaged = bytearray(raw_cram)
    damaged[30] ^= 0x01  # the reference sequence id of the header container
    _expect_error(tmp_path, bytes(damaged), "the CRAM header container fails its CRC32 check")
    start, _ = _raw_header_block(raw_cram)
    damaged = bytearray(raw_cram)
    damaged[start + 20] ^= 0x20  # a letter of the header text
    _expect_error(tmp_path, bytes(damaged), "the CRAM header block fails its CRC32 check")
    _expect_error(tmp_path, raw_cram[: start + 30], "the file ends inside the CRAM header block")
    _expect_error(tmp_path, raw_cram[:20], "the file ends inside the CRAM file definition")
    _expect_error(tmp_path, raw_cram[:4] + b"\x04\x00" + raw_cram[6:], "CRAM version 4.0")
    _expect_error(tmp_path, b"CRAM\x03\x00" + b"\0" * 20, "the file ends inside")
