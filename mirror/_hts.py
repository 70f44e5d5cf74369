"""Reading the ``@SQ`` lines (and their ``M5`` tags) from CRAM, BAM and SAM headers.

No samtools needed. What the formats say (hts-specs, CRAMv3.pdf §6–§8, SAMv1.pdf §4.2):

* CRAM (CRAMv3.tex "File definition", "Container header structure", "Block
  structure"; CRAMv2.1.tex for 2.x): a 26-byte file definition (``CRAM``, major,
  minor, 20-byte file id), then the header container. Its header: ``int32`` length,
  ITF8 reference sequence id, ITF8 start, ITF8 alignment span, ITF8 number of
  records, record counter (LTF8 in 3.x, ITF8 in 2.x), LTF8 bases, ITF8 number of
  blocks, ITF8 array of landmarks, and in 3.x an ``int32`` CRC32 of all of it.
  Its first block (byte method, byte content type 0 = FILE_HEADER, ITF8 content id,
  ITF8 compressed and raw sizes, the data, and in 3.x a CRC32) holds an ``int32``
  text length and the SAM header text. 3.0 and 3.1 share this layout. The header
  block is raw or gzip (the only compression the specification allows for it).
* BAM: BGZF (concatenated gzip members) of ``BAM\\1``, ``int32 l_text``, the text.
* SAM: the ``@``-lines at the top of the text file (gzip-compressed or not).
"""

from __future__ import annotations

import gzip
import io
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

__all__ = ["HeaderError", "Reference", "read_header_text", "references"]


class HeaderError(ValueError):
    """The file is not a CRAM/BAM/SAM file we can read a header from."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Reference:
    """One ``@SQ`` line: its name, length and ``M5`` (MD5 of the uppercased sequence)."""

    name: str
    length: int | None
    md5: str | None


class _Reader(Protocol):
    def read(self, n: int, /) -> bytes: ...


class _Recorder:
    """Reads from ``f`` and keeps what it read, for the CRC32 that follows it."""

    def __init__(self, f: _Reader) -> None:
        self.f = f
        self.seen = bytearray()

    def read(self, n: int, /) -> bytes:
        data = self.f.read(n)
        self.seen += data
        return data

    def take(self) -> bytes:
        """The bytes read since the last call."""
        out = bytes(self.seen)
        self.seen.clear()
        return out


def _itf8(f: _Reader) -> int:
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


def _ltf8(f: _Reader) -> int:
    first = _byte(f)
    extra = 0
    mask = 0x80
    while extra < 8 and first & mask:
        extra += 1
        mask >>= 1
    value = first & (mask - 1) if extra < 7 else 0
    for _ in range(extra):
        value = (value << 8) | _byte(f)
    return value - (1 << 64) if value & (1 << 63) else value


def _byte(f: _Reader) -> int:
    b = f.read(1)
    if not b:
        raise HeaderError("the file ends inside the CRAM header")
    return b[0]


def _exactly(f: _Reader, n: int, what: str) -> bytes:
    data = f.read(n)
    if len(data) < n:
        raise HeaderError(f"the file ends inside {what}")
    return data


def _check_crc(f: _Recorder, what: str) -> None:
    covered = f.take()
    (stored,) = struct.unpack("<I", _exactly(f, 4, what))
    f.take()
    if zlib.crc32(covered) != stored:
        raise HeaderError(f"{what} fails its CRC32 check (damaged, or not CRAM)")


_METHODS = {2: "bzip2", 3: "lzma", 4: "rANS 4x8", 5: "rANS Nx16", 6: "adaptive arithmetic"}
_METHODS |= {7: "fqzcomp", 8: "name tokeniser"}


def _cram_text(f: _Reader) -> str:
    definition = _exactly(f, 26, "the CRAM file definition")
    if definition[:4] != b"CRAM":
        raise HeaderError("not a CRAM file")
    major, minor = definition[4], definition[5]
    if major not in (2, 3):
        raise HeaderError(f"CRAM version {major}.{minor} is not supported (2.x and 3.x are)")
    crc = major >= 3  # CRAM 3 added a CRC32 to container and block headers
    tape = _Recorder(f)
    # The header container's header: length, reference id, start, span, records,
    # record counter (LTF8 since 3.0, ITF8 before), bases, blocks, landmarks, CRC32.
    _exactly(tape, 4, "the CRAM header container")  # length of its blocks
    for _ in range(4):  # reference sequence id, start, alignment span, number of records
        _itf8(tape)
    _ltf8(tape) if crc else _itf8(tape)  # record counter
    _ltf8(tape)  # bases
    blocks = _itf8(tape)
    for _ in range(_itf8(tape)):  # landmarks
        _itf8(tape)
    if crc:
        _check_crc(tape, "the CRAM header container")
    if blocks < 1:
        raise HeaderError("the CRAM header container has no blocks")
    tape.take()
    # Its first block: method, content type, content id, sizes, data, CRC32.
    method = _byte(tape)
    content_type = _byte(tape)
    _itf8(tape)  # content id
    size = _itf8(tape)
    raw_size = _itf8(tape)
    if content_type != 0:
        raise HeaderError(f"the first CRAM block holds content type {content_type}, not the header")
    if size < 0 or raw_size < 4:
        raise HeaderError("the CRAM header block has an impossible size")
    data = _exactly(tape, size, "the CRAM header block")
    if crc:
        _check_crc(tape, "the CRAM header block")
    # CRAMv3 allows only gzip for this block; samtools writes it gzip (raw at level 0).
    if method == 1:
        data = gzip.decompress(data)
    elif method != 0:
        name = _METHODS.get(method, "unknown")
        raise HeaderError(
            f"the CRAM header block is compressed with method {method} ({name}); "
            "only raw and gzip header blocks can be read"
        )
    if len(data) != raw_size:
        raise HeaderError(
            f"the CRAM header block holds {len(data)} bytes, its header says {raw_size}"
        )
    (text_length,) = struct.unpack("<i", data[:4])
    if not 0 <= text_length <= len(data) - 4:
        raise HeaderError(f"the CRAM header text length {text_length} exceeds its block")
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
    """The SAM header text of a CRAM, BAM or SAM file (blocking: call in a thread).

    Raises :class:`HeaderError` naming ``path`` and what is wrong with it.
    """
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
    except HeaderError as exc:
        raise HeaderError(f"{path}: {exc}") from exc
    except (OSError, EOFError, zlib.error, struct.error) as exc:
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
