"""Reading the ``@SQ`` lines (and their ``M5`` tags) from CRAM, BAM and SAM headers.

No samtools needed. What the formats say (hts-specs, CRAMv3.pdf §6–§8, SAMv1.pdf §4.2):

* CRAM: a 26-byte file definition (``CRAM``, major, minor, 20-byte id), then the
  header container: ``int32`` length, ITF8 records, LTF8 record counter, LTF8 bases,
  ITF8 block count, ITF8 landmark array, and (CRAM 3) a CRC32. Its first block
  (method byte, content type byte, ITF8 content id, ITF8 compressed and raw sizes,
  data, CRC32 in CRAM 3) holds an ``int32`` text length and the SAM header text.
  Block data may be raw or gzip/bzip2/lzma compressed.
* BAM: BGZF (concatenated gzip members) of ``BAM\\1``, ``int32 l_text``, the text.
* SAM: the ``@``-lines at the top of the text file (gzip-compressed or not).
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

__all__ = ["HeaderError", "Reference", "read_header_text", "references"]


class HeaderError(ValueError):
    """The file is not a CRAM/BAM/SAM file we can read a header from."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Reference:
    """One ``@SQ`` line: its name, length and ``M5`` (MD5 of the uppercased sequence)."""

    name: str
    length: int | None
    md5: str | None


def _itf8(f: BinaryIO) -> int:
    first = _byte(f)
    if first < 0x80:
        return first
    if first < 0xC0:
        return ((first & 0x3F) << 8) | _byte(f)
    if first < 0xE0:
        return ((first & 0x1F) << 16) | (_byte(f) << 8) | _byte(f)
    if first < 0xF0:
        return ((first & 0x0F) << 24) | (_byte(f) << 16) | (_byte(f) << 8) | _byte(f)
    value = ((first & 0x0F) << 28) | (_byte(f) << 20) | (_byte(f) << 12) | (_byte(f) << 4)
    value |= _byte(f) & 0x0F
    return value - (1 << 32) if value & (1 << 31) else value


def _ltf8(f: BinaryIO) -> int:
    first = _byte(f)
    extra = 0
    mask = 0x80
    while extra < 8 and first & mask:
        extra += 1
        mask >>= 1
    value = first & (mask - 1) if extra < 7 else 0
    for _ in range(extra):
        value = (value << 8) | _byte(f)
    return value


def _byte(f: BinaryIO) -> int:
    b = f.read(1)
    if not b:
        raise HeaderError("the file ends inside its header")
    return b[0]


def _cram_text(f: BinaryIO) -> str:
    definition = f.read(26)
    if len(definition) < 26 or definition[:4] != b"CRAM":
        raise HeaderError("not a CRAM file")
    major = definition[4]
    if major not in (2, 3):
        raise HeaderError(f"CRAM version {major}.{definition[5]} is not supported")
    (_length,) = struct.unpack("<i", f.read(4))
    _itf8(f)  # records
    _ltf8(f) if major >= 3 else _itf8(f)  # record counter
    _ltf8(f)  # bases
    blocks = _itf8(f)
    for _ in range(_itf8(f)):  # landmarks
        _itf8(f)
    if major >= 3:
        f.read(4)  # CRC32 of the container header
    if blocks < 1:
        raise HeaderError("the CRAM header container has no blocks")
    method = _byte(f)
    _byte(f)  # content type (FILE_HEADER)
    _itf8(f)  # content id
    size = _itf8(f)
    raw_size = _itf8(f)
    data = f.read(size)
    if len(data) < size:
        raise HeaderError("the CRAM header block is truncated")
    if method == 1:
        data = gzip.decompress(data)
    elif method == 2:
        data = bz2.decompress(data)
    elif method == 3:
        data = lzma.decompress(data)
    elif method != 0:
        raise HeaderError(f"CRAM header block compression method {method} is not supported")
    if len(data) < 4 or (method == 0 and len(data) != raw_size):
        raise HeaderError("the CRAM header block has the wrong size")
    (text_length,) = struct.unpack("<i", data[:4])
    return data[4 : 4 + text_length].decode("utf-8", errors="replace")


def _bam_text(path: Path) -> str:
    with gzip.open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8 or head[:4] != b"BAM\x01":
            raise HeaderError("not a BAM file")
        (length,) = struct.unpack("<i", head[4:8])
        return f.read(length).decode("utf-8", errors="replace")


def _sam_text(path: Path) -> str:
    with path.open("rb") as raw:
        magic = raw.read(2)
    opener = gzip.open if magic == b"\x1f\x8b" else open
    lines = []
    with opener(path, "rt", encoding="utf-8", errors="replace") as f:
        for line in f:
            if not line.startswith("@"):
                break
            lines.append(line)
    return "".join(lines)


def read_header_text(path: Path) -> str:
    """The SAM header text of a CRAM, BAM or SAM file (blocking: call in a thread)."""
    try:
        with path.open("rb") as f:
            magic = f.read(4)
            f.seek(0)
            if magic == b"CRAM":
                return _cram_text(f)
        if magic[:2] == b"\x1f\x8b":
            try:
                return _bam_text(path)
            except HeaderError:
                return _sam_text(path)
        return _sam_text(path)
    except (OSError, EOFError, zlib.error, lzma.LZMAError, struct.error) as exc:
        raise HeaderError(f"cannot read {path}: {exc}") from exc


def references(text: str) -> list[Reference]:
    """The ``@SQ`` lines of a SAM header text."""
    out = []
    for line in io.StringIO(text):
        if not line.startswith("@SQ"):
            continue
        tags = dict(
            field.split(":", 1) for field in line.rstrip("\r\n").split("\t")[1:] if ":" in field
        )
        length = tags.get("LN", "")
        md5 = tags.get("M5", "").strip().lower() or None
        out.append(
            Reference(
                name=tags.get("SN", ""), length=int(length) if length.isdigit() else None, md5=md5
            )
        )
    return out
