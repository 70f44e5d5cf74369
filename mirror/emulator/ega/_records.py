"""EGA catalog records (datasets of files) and the bytes served for them, plain or rekeyed."""

from __future__ import annotations

import functools
import hashlib
import posixpath
import random
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from .._content import BLOCK_SIZE, content_block, iter_blocks, md5_of

__all__ = [
    "AVAILABLE",
    "EGA_DATASET",
    "EGA_FILE",
    "IV_SIZE",
    "EgaDataset",
    "EgaFile",
    "plain_md5",
    "stream_bytes",
    "stream_md5",
    "stream_pieces",
]

EGA_DATASET = re.compile(r"EGAD[0-9]{11}")
EGA_FILE = re.compile(r"EGAF[0-9]{11}")
# The Data API's metadata size counts the 16-byte IV of the archived .cip file, which
# plain downloads do not carry: pyega3 does `file_size -= 16`.
IV_SIZE = 16
# Generated names, after real ones: the seed's /arrays/331-01-3TD.CEL.cip and BAMs.
_KINDS = (("/arrays", ".CEL.cip"), ("/bams", ".bam.cip"), ("/vcfs", ".vcf.gz.cip"))


#: The Data API's ``fileStatus`` of a downloadable file; pyega3 skips every other value.
AVAILABLE = "available"


@dataclass(frozen=True, kw_only=True, slots=True)
class EgaFile:
    """One archived file. ``size`` is the plain size: the length of a plain download
    and of a REST v2 stream; the Data API lists ``size + 16``.

    ``file_name`` is the archive path: REST v2 shows it as given (the seed's
    ``/arrays/…``), the Data API without a leading slash (``EGAZ…/b37/x.bam.cip``).
    ``status`` is the Data API's ``fileStatus``; a name ending ``.gpg`` is a legacy
    GPG-encrypted file, which the Data API lists but does not serve.
    """

    file_id: str
    file_name: str
    size: int
    dataset: str
    status: str = AVAILABLE

    def __post_init__(self) -> None:
        if EGA_FILE.fullmatch(self.file_id) is None:
            raise ValueError(f"EGA file id {self.file_id!r} is not like EGAF00000000001")
        if EGA_DATASET.fullmatch(self.dataset) is None:
            raise ValueError(f"EGA dataset id {self.dataset!r} is not like EGAD00000000001")
        if not self.file_name.strip("/") or "//" in self.file_name:
            raise ValueError(f"EGA file name must be a clean path, got {self.file_name!r}")
        if not self.status:
            raise ValueError(f"{self.file_id}: fileStatus must not be empty")
        if self.size < 0:
            raise ValueError(f"file size must be >= 0, got {self.size}")

    @property
    def content_key(self) -> str:
        """What the plain bytes are generated from (see ``iter_range``)."""
        return f"ega/{self.file_id}"

    @property
    def display_name(self) -> str:
        """The Data API's ``displayFileName``: the base name (pyega3 strips ``.cip``)."""
        return posixpath.basename(self.file_name)

    @property
    def legacy_gpg(self) -> bool:
        """A GPG-encrypted file of the old archive: listed, never served plain."""
        return self.file_name.endswith(".gpg")

    @property
    def downloadable(self) -> bool:
        """Whether the Data API serves its bytes."""
        return self.status == AVAILABLE and not self.legacy_gpg

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "file_id": self.file_id,
            "file_name": self.file_name,
            "size": self.size,
        }
        if self.status != AVAILABLE:
            doc["status"] = self.status
        return doc

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], dataset: str) -> EgaFile:
        return cls(
            file_id=data["file_id"],
            file_name=data["file_name"],
            size=int(data["size"]),
            dataset=data.get("dataset", dataset),
            status=str(data.get("status", AVAILABLE)),
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class EgaDataset:
    """An EGA dataset (EGAD…) and its files, in listing order."""

    dataset_id: str
    files: tuple[EgaFile, ...] = ()

    def __post_init__(self) -> None:
        if EGA_DATASET.fullmatch(self.dataset_id) is None:
            raise ValueError(f"EGA dataset id {self.dataset_id!r} is not like EGAD00000000001")
        for item in self.files:
            if item.dataset != self.dataset_id:
                raise ValueError(
                    f"{item.file_id} says dataset {item.dataset}, not {self.dataset_id}"
                )

    def to_dict(self) -> dict[str, Any]:
        return {"dataset_id": self.dataset_id, "files": [item.to_dict() for item in self.files]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EgaDataset:
        dataset = data["dataset_id"]
        return cls(
            dataset_id=dataset,
            files=tuple(EgaFile.from_dict(item, dataset) for item in data.get("files", ())),
        )

    @classmethod
    def generate(
        cls,
        dataset: str = "EGAD00010000805",
        files: int = 5,
        size: int = 256 * 1024,
        seed: int = 0,
        *,
        size_spread: float = 0.0,
        first_file: int | None = None,
    ) -> EgaDataset:
        """``files`` files with sizes ``size`` (± ``size_spread``, a fraction).

        File numbers run from ``first_file``, by default the dataset's number times
        1000 (so datasets generated apart never share an EGAF), wrapped to 11 digits.
        """
        if files < 0 or size < 0 or not 0.0 <= size_spread < 1.0:
            raise ValueError("files and size must be >= 0, size_spread within [0, 1)")
        if EGA_DATASET.fullmatch(dataset) is None:
            raise ValueError(f"EGA dataset id {dataset!r} is not like EGAD00000000001")
        rng = random.Random(f"{seed}\0{dataset}")
        start = int(dataset[4:]) * 1000 + 1 if first_file is None else first_file
        made = []
        for j in range(files):
            folder, suffix = _KINDS[j % len(_KINDS)]
            spread = int(size * size_spread)
            made.append(
                EgaFile(
                    file_id=f"EGAF{(start + j) % 10**11:011d}",
                    file_name=f"{folder}/{rng.randrange(100, 1000)}-{j + 1:02d}-3TD{suffix}",
                    size=size + rng.randint(-spread, spread) if spread else size,
                    dataset=dataset,
                )
            )
        return cls(dataset_id=dataset, files=tuple(made))


def plain_md5(file: EgaFile) -> str:
    """MD5 hex of the plain bytes: the Data API's ``plainChecksum``."""
    return md5_of(file.content_key, file.size)


@functools.lru_cache(maxsize=32)
def _stream_block(file: EgaFile, rekey: str) -> bytes:
    # Not AES: the plain block XOR a keystream drawn from (file, rekey), so each
    # rekey's stream (and its MD5) differs, deterministically. Rotating this block
    # per chunk, as the plain content rotates its own, makes the stream the plain
    # bytes XOR a position-dependent keystream, served at the plain content's speed.
    plain = content_block(file.content_key, file.size)
    material = f"ega-rekey\0{file.file_id}\0{rekey}".encode()
    key = hashlib.shake_128(material).digest(len(plain))
    # Whole-buffer int XOR runs at memory speed in CPython; a byte loop would not.
    mixed = int.from_bytes(plain, "little") ^ int.from_bytes(key, "little")
    return mixed.to_bytes(len(plain), "little")


def stream_pieces(
    file: EgaFile, rekey: str, start: int, end: int, chunk: int = BLOCK_SIZE
) -> Iterator[memoryview]:
    """The REST v2 download stream ``[start, end)`` for a ticket requested with ``rekey``."""
    if not 0 <= start <= end <= file.size:
        raise ValueError(f"range [{start}, {end}) outside stream of {file.size} bytes")
    if start == end:
        return iter(())
    return iter_blocks(_stream_block(file, rekey), start, end, chunk)


def stream_bytes(file: EgaFile, rekey: str) -> bytes:
    """The whole stream a ticket with ``rekey`` serves; for small files."""
    return b"".join(stream_pieces(file, rekey, 0, file.size))


@functools.lru_cache(maxsize=1024)
def stream_md5(file: EgaFile, rekey: str) -> str:
    """MD5 hex of the whole stream for ``rekey``: what ``/results`` reports (cached)."""
    digest = hashlib.md5()
    for piece in stream_pieces(file, rekey, 0, file.size):
        digest.update(piece)
    return digest.hexdigest()
