"""CRAM reference sequences: deterministic IUPAC sequences and the checksums that name them."""

from __future__ import annotations

import functools
import hashlib
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CramReference", "generate_cram_references"]

# Bases as a reference FASTA has them: almost all ACGT, IUPAC ambiguity codes here and
# there, and N runs (gaps, telomeres). The registry serves them uppercase, and the
# ``@SQ M5`` MD5 is of the uppercase sequence, so only uppercase is ever generated.
_ACGT = bytes(b"ACGT"[i % 4] for i in range(256))
_AMBIGUOUS = b"RYKMSWBDHV"
# One ambiguity code per this many bases on average, and one N run per this many.
_AMBIGUOUS_EVERY = 4096
_N_RUN_EVERY = 65536
_N_RUN_MAX = 1000
# What an explicit sequence may hold: letters (any IUPAC code, any case) and the
# '*' and '-' that refget allows; samtools' seq_cache_populate.pl keeps them as is.
_ALLOWED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz*-")


@dataclass(frozen=True, kw_only=True, slots=True)
class CramReference:
    """One reference sequence of the registry, named by the MD5 and SHA1 of its bases.

    The bases are generated from (name, length, seed) unless ``sequence`` gives them;
    an explicit sequence may be lowercase (as a soft-masked FASTA is), and is served
    and checksummed uppercase, as the registry does. Generated bases are held in
    memory while served (an LRU of a few), so keep references to tens of MiB.
    """

    name: str
    length: int
    seed: int = 0
    sequence: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.name or any(c.isspace() for c in self.name):
            raise ValueError(f"a CRAM reference needs a name without spaces, got {self.name!r}")
        if self.length < 1:
            raise ValueError(f"CRAM reference {self.name}: length must be >= 1")
        if self.sequence is not None:
            if len(self.sequence) != self.length:
                raise ValueError(
                    f"CRAM reference {self.name}: sequence has {len(self.sequence)} bases, "
                    f"length says {self.length}"
                )
            if not set(self.sequence.encode("ascii", "replace")) <= _ALLOWED:
                raise ValueError(f"CRAM reference {self.name}: sequence holds non-IUPAC characters")

    def bases(self) -> bytes:
        """The uppercase sequence as served: no header, no newlines."""
        return _bases(self.name, self.length, self.seed, self.sequence)

    @property
    def md5(self) -> str:
        """MD5 hex of the uppercase bases: the ``@SQ M5`` tag, the registry's key."""
        return _digest("md5", self.name, self.length, self.seed, self.sequence)

    @property
    def sha1(self) -> str:
        return _digest("sha1", self.name, self.length, self.seed, self.sequence)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "length": self.length}
        if self.seed:
            data["seed"] = self.seed
        if self.sequence is not None:
            data["sequence"] = self.sequence
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CramReference:
        unknown = set(data) - {"name", "length", "seed", "sequence"}
        if unknown:
            raise ValueError(f"unknown CRAM reference key(s): {', '.join(sorted(unknown))}")
        return cls(
            name=data["name"],
            length=data["length"],
            seed=data.get("seed", 0),
            sequence=data.get("sequence"),
        )


def _generate(name: str, length: int, seed: int) -> bytes:
    # SHAKE-128 keyed by the whole identity gives the bulk cheaply (a 100 MiB
    # reference takes ~0.3 s); the sparse features come from an RNG seeded by it.
    key = f"cram\0{name}\0{length}\0{seed}".encode()
    stream = hashlib.shake_128(key).digest(length + 32)
    rng = random.Random(stream[length:])
    bases = bytearray(stream[:length].translate(_ACGT))
    for _ in range(1 + length // _N_RUN_EVERY):
        run = rng.randint(1, max(1, min(_N_RUN_MAX, length // 16)))
        start = rng.randrange(length - run + 1)
        bases[start : start + run] = b"N" * run
    # After the N runs, so that even a short reference keeps its one ambiguity code.
    for _ in range(max(1, length // _AMBIGUOUS_EVERY)):
        bases[rng.randrange(length)] = rng.choice(_AMBIGUOUS)
    return bytes(bases)


@functools.lru_cache(maxsize=8)
def _bases(name: str, length: int, seed: int, sequence: str | None) -> bytes:
    if sequence is not None:
        return sequence.upper().encode("ascii")
    return _generate(name, length, seed)


@functools.lru_cache(maxsize=4096)
def _digest(algorithm: str, name: str, length: int, seed: int, sequence: str | None) -> str:
    return hashlib.new(algorithm, _bases(name, length, seed, sequence)).hexdigest()


def generate_cram_references(
    count: int = 5,
    length: int = 64 * 1024,
    seed: int = 0,
    *,
    prefix: str = "chr",
    size_spread: float = 0.0,
) -> tuple[CramReference, ...]:
    """``count`` generated references ``{prefix}1…``, lengths ``length`` ± ``size_spread``."""
    if count < 0:
        raise ValueError("count must be >= 0")
    if not 0.0 <= size_spread < 1.0:
        raise ValueError("size_spread must be within [0, 1)")
    rng = random.Random(f"cram-lengths\0{seed}\0{length}")
    references = []
    for index in range(1, count + 1):
        jitter = 1.0 + size_spread * (2.0 * rng.random() - 1.0) if size_spread else 1.0
        references.append(
            CramReference(name=f"{prefix}{index}", length=max(1, round(length * jitter)), seed=seed)
        )
    return tuple(references)
