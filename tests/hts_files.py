"""Writing small CRAM 3.0, BAM and SAM files whose headers carry @SQ M5 tags (fixtures).

Written from the CRAM 3.0 specification (file definition, container header with
CRC32, one FILE_HEADER block), independently of the reader under test.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path


def itf8(value: int) -> bytes:
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
    if value < 0x80:
        return bytes([value])
    return bytes([0xFF]) + value.to_bytes(8, "big")  # the 9-byte form is always valid


def header_text(refs: Sequence[tuple[str, int, str]]) -> str:
    lines = ["@HD\tVN:1.6\tSO:coordinate"]
    lines += [f"@SQ\tSN:{name}\tLN:{length}\tM5:{md5}" for name, length, md5 in refs]
    return "\n".join(lines) + "\n"


def write_cram(path: Path, text: str, *, gzip_block: bool = False) -> None:
    raw = struct.pack("<i", len(text.encode())) + text.encode()
    data = gzip.compress(raw) if gzip_block else raw
    block = bytes([1 if gzip_block else 0, 0]) + itf8(0) + itf8(len(data)) + itf8(len(raw))
    block += data
    block += struct.pack("<I", zlib.crc32(block))
    header = struct.pack("<i", len(block)) + itf8(0) + ltf8(0) + ltf8(0) + itf8(1) + itf8(1)
    header += itf8(0)
    header += struct.pack("<I", zlib.crc32(header))
    definition = b"CRAM" + bytes([3, 0]) + b"test-fixture".ljust(20, b"\0")
    # An EOF container follows real files; readers of the header never reach it.
    path.write_bytes(definition + header + block)


def write_bam(path: Path, text: str) -> None:
    body = b"BAM\x01" + struct.pack("<i", len(text.encode())) + text.encode()
    body += struct.pack("<i", 0)  # no references in the binary section
    path.write_bytes(gzip.compress(body))


def write_sam(path: Path, text: str) -> None:
    path.write_text(text + "r1\t4\t*\t0\t0\t*\t*\t0\t0\tACGT\tIIII\n")
