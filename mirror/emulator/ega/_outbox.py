"""EGA's Live Outbox: datasets of Crypt4GH files, and the writer that lays them out on disk
as the outbox's SFTP server shows them (``EGAD…/<display name>.c4gh``)."""

from __future__ import annotations

import functools
import hashlib
import io
import os
import random
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._content import Buffer, iter_range

__all__ = [
    "C4GH_HEADER_SIZE",
    "CHECKSUM_TYPES",
    "OutboxDataset",
    "OutboxFile",
    "c4gh_size",
    "reencrypt_header",
    "write_c4gh",
    "write_outbox",
]

EGA_DATASET = re.compile(r"EGAD[0-9]{11}")
EGA_FILE = re.compile(r"EGAF[0-9]{11}")
#: Plaintext checksum algorithms the metadata API names (``unencrypted_checksum_type``).
CHECKSUM_TYPES = ("SHA256", "MD5")
# Crypt4GH: 64 KiB plaintext segments, each stored as nonce(12) | ciphertext | MAC(16).
_SEGMENT = 65536
_SEGMENT_OVERHEAD = 28
#: The header of a file encrypted for one recipient: magic, version and packet count
#: (16 bytes), one data-key packet (108 bytes).
C4GH_HEADER_SIZE = 16 + 108
# Generated display names, after the kinds of files EGA datasets hold.
_NAMES = ("sample_{n}.bam", "sample_{n}.bam.bai", "calls_{n}.vcf.gz", "reads_{n}.R1.fastq.gz")
_SUFFIXES = ("gz", "bz2", "zst", "bai", "crai", "tbi", "csi")


def c4gh_size(plain: int, recipients: int = 1) -> int:
    """Bytes of a Crypt4GH file of ``plain`` plaintext bytes encrypted for ``recipients``
    keys: the outbox listing's size and the metadata API's ``filesize``."""
    segments = -(-plain // _SEGMENT)
    return 16 + 108 * recipients + plain + _SEGMENT_OVERHEAD * segments


@dataclass(frozen=True, kw_only=True, slots=True)
class OutboxFile:
    """One file of an outbox dataset.

    ``name`` is the display name (``sample_3.bam``): the outbox serves it as
    ``<name>.c4gh``, or ``<name>.unavailable.c4gh`` while it is ``unavailable`` (on cold
    storage, listed but unreadable). ``size`` is the plaintext size; the plaintext is
    generated from the accession. ``checksum_type`` is SHA256 or MD5: EGA publishes
    either, so clients treat it as data.
    """

    accession: str
    name: str
    size: int
    dataset: str
    checksum_type: str = "SHA256"
    unavailable: bool = False

    def __post_init__(self) -> None:
        if EGA_FILE.fullmatch(self.accession) is None:
            raise ValueError(f"EGA file id {self.accession!r} is not like EGAF50000000001")
        if EGA_DATASET.fullmatch(self.dataset) is None:
            raise ValueError(f"EGA dataset id {self.dataset!r} is not like EGAD50000000001")
        if not self.name or "/" in self.name or self.name in (".", ".."):
            raise ValueError(f"{self.accession}: display name {self.name!r} is not a file name")
        if self.size < 0:
            raise ValueError(f"{self.accession}: size must be >= 0, got {self.size}")
        if self.checksum_type not in CHECKSUM_TYPES:
            raise ValueError(f"{self.accession}: checksum type must be one of {CHECKSUM_TYPES}")

    @property
    def content_key(self) -> str:
        """What the plaintext is generated from (see ``iter_range``)."""
        return f"ega-outbox/{self.accession}"

    @property
    def c4gh_name(self) -> str:
        """The name in the outbox listing."""
        return f"{self.name}.unavailable.c4gh" if self.unavailable else f"{self.name}.c4gh"

    @property
    def c4gh_size(self) -> int:
        """Bytes of the ``.c4gh`` file for one recipient key."""
        return c4gh_size(self.size)

    @property
    def extension(self) -> str:
        """The metadata API's ``extension``: the last suffix, with the one before it when
        the last is a compression or index suffix (``vcf.gz``, ``bam.bai``)."""
        parts = self.name.split(".")[1:]
        if len(parts) >= 2 and parts[-1] in _SUFFIXES:
            return ".".join(parts[-2:])
        return parts[-1] if parts else ""

    def plain(self, start: int = 0, end: int | None = None) -> Iterator[Buffer]:
        """The plaintext ``[start, end)`` in pieces."""
        return iter_range(self.content_key, self.size, start, end)

    @property
    def checksum(self) -> str:
        """Hex digest of the plaintext by ``checksum_type`` (computed once)."""
        return _digest(self.content_key, self.size, self.checksum_type)

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"accession": self.accession, "name": self.name, "size": self.size}
        if self.checksum_type != "SHA256":
            doc["checksum_type"] = self.checksum_type
        if self.unavailable:
            doc["unavailable"] = True
        return doc

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], dataset: str) -> OutboxFile:
        return cls(
            accession=data["accession"],
            name=data["name"],
            size=int(data["size"]),
            dataset=dataset,
            checksum_type=str(data.get("checksum_type", "SHA256")),
            unavailable=bool(data.get("unavailable", False)),
        )


@functools.lru_cache(maxsize=256)
def _digest(key: str, size: int, kind: str) -> str:
    digest = hashlib.sha256() if kind == "SHA256" else hashlib.md5()
    for piece in iter_range(key, size):
        digest.update(piece)
    return digest.hexdigest()


@dataclass(frozen=True, kw_only=True, slots=True)
class OutboxDataset:
    """A dataset in the outbox (EGA's versioned ``EGAD5…``) and its files, listing order."""

    dataset_id: str
    files: tuple[OutboxFile, ...] = ()

    def __post_init__(self) -> None:
        if EGA_DATASET.fullmatch(self.dataset_id) is None:
            raise ValueError(f"EGA dataset id {self.dataset_id!r} is not like EGAD50000000001")
        names: set[str] = set()
        for item in self.files:
            if item.dataset != self.dataset_id:
                raise ValueError(f"{item.accession} says dataset {item.dataset}")
            if item.name in names:
                raise ValueError(f"{self.dataset_id}: display name {item.name} twice")
            names.add(item.name)

    def to_dict(self) -> dict[str, Any]:
        return {"dataset_id": self.dataset_id, "files": [item.to_dict() for item in self.files]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OutboxDataset:
        dataset = data["dataset_id"]
        return cls(
            dataset_id=dataset,
            files=tuple(OutboxFile.from_dict(item, dataset) for item in data.get("files", ())),
        )

    @classmethod
    def generate(
        cls,
        dataset: str = "EGAD50000000001",
        files: int = 5,
        sizes: Sequence[int] = (256 * 1024,),
        seed: int = 0,
        *,
        unavailable: Iterable[int] = (),
        md5: Iterable[int] = (),
    ) -> OutboxDataset:
        """``files`` files; file ``j`` has size ``sizes[j % len(sizes)]``.

        ``unavailable`` and ``md5`` are file indices (0-based): those files are on cold
        storage, or publish an MD5 instead of a SHA256. Accessions are ``EGAF5`` and ten
        digits, numbered from the dataset's number times 1000 plus one.
        """
        if files < 0 or not sizes or min(sizes) < 0:
            raise ValueError("files must be >= 0, sizes non-empty and >= 0")
        if EGA_DATASET.fullmatch(dataset) is None:
            raise ValueError(f"EGA dataset id {dataset!r} is not like EGAD50000000001")
        cold, md5s = frozenset(unavailable), frozenset(md5)
        rng = random.Random(f"{seed}\0{dataset}")
        start = int(dataset[5:]) * 1000 + 1
        made = []
        for j in range(files):
            number = rng.randrange(1, 100) * 100 + j + 1
            made.append(
                OutboxFile(
                    accession=f"EGAF5{(start + j) % 10**10:010d}",
                    name=_NAMES[j % len(_NAMES)].format(n=number),
                    size=sizes[j % len(sizes)],
                    dataset=dataset,
                    checksum_type="MD5" if j in md5s else "SHA256",
                    unavailable=j in cold,
                )
            )
        return cls(dataset_id=dataset, files=tuple(made))


class _PlainReader(io.RawIOBase):
    """The generated plaintext as a readable file, so ``crypt4gh.lib.encrypt`` streams it."""

    def __init__(self, pieces: Iterator[Buffer]) -> None:
        self._pieces = pieces
        self._rest = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        target = memoryview(buffer).cast("B")
        filled = 0
        while filled < len(target):
            if not self._rest:
                piece = next(self._pieces, None)
                if piece is None:
                    break
                self._rest = memoryview(piece).cast("B")
            take = min(len(target) - filled, len(self._rest))
            target[filled : filled + take] = self._rest[:take]
            self._rest = self._rest[take:]
            filled += take
        return filled


def write_c4gh(file: OutboxFile, path: Path, recipient_public_key: bytes) -> None:
    """Write ``file``'s plaintext to ``path`` encrypted for ``recipient_public_key`` (the raw
    32-byte X25519 key), with a one-packet header; streamed, never whole in memory."""
    # Imported here: the emulator's other hosts need none of it.
    import crypt4gh.lib

    # A fresh writer key per file, as an archive's re-encryption makes one.
    keys = [(0, os.urandom(32), recipient_public_key)]
    with open(path, "wb", buffering=1 << 20) as out:
        crypt4gh.lib.encrypt(keys, _PlainReader(file.plain()), out)
        written = out.tell()
    if written != file.c4gh_size:
        raise RuntimeError(f"{path}: wrote {written} bytes, expected {file.c4gh_size}")


def reencrypt_header(path: Path, secret_key: bytes, recipient_public_key: bytes) -> None:
    """Give the Crypt4GH file at ``path`` a new header for the same recipient: the same
    session key and length, different bytes (a fresh writer key and nonce), the payload
    untouched; what EGA's outbox does on every download. ``secret_key`` is the
    recipient's (raw 32 bytes), which opens the old header."""
    import crypt4gh.header

    with open(path, "r+b") as f:
        packets = list(crypt4gh.header.parse(f))
        length = f.tell()
        fresh = crypt4gh.header.reencrypt(
            packets, [(0, secret_key, None)], [(0, os.urandom(32), recipient_public_key)]
        )
        header = crypt4gh.header.serialize(fresh)
        if len(header) != length:
            raise RuntimeError(f"{path}: new header of {len(header)} bytes, not {length}")
        f.seek(0)
        f.write(header)


def write_outbox(
    datasets: Iterable[OutboxDataset], root: Path, recipient_public_key: bytes
) -> list[Path]:
    """Lay out ``datasets`` under ``root`` as the outbox shows them: ``root/EGAD…/<name>.c4gh``
    (mode 0o444) and ``<name>.unavailable.c4gh`` (mode 0o000: a server that serves as
    another user than the owner cannot read it), dataset directories mode 0o555.

    Pass ``catalog.outbox_datasets``. Returns the paths written, in catalog order.
    """
    written: list[Path] = []
    for dataset in datasets:
        folder = root / dataset.dataset_id
        folder.mkdir(parents=True, exist_ok=True)
        for item in dataset.files:
            path = folder / item.c4gh_name
            write_c4gh(item, path, recipient_public_key)
            os.chmod(path, 0o000 if item.unavailable else 0o444)
            written.append(path)
        os.chmod(folder, 0o555)
    return written
