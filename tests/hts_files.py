"""Alignment files for the tests, written and read by samtools (Debian's ``samtools``).

The CRAM and BAM files come from samtools itself, not from a writer of our own, so
the tests do not share the reader's reading of the specification. Only the inputs
are made here: a reference FASTA (soft-masked lowercase, N runs, an ambiguity code),
a SAM file whose ``@SQ`` lines carry ``M5`` tags computed as htslib computes them
(MD5 of the uppercased sequence, no newlines), and reads with substitutions,
insertions, deletions, soft clips and one unmapped read.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

# Proxies would let htslib reach a network; a decode from the cache must not.
_PROXIES = ("http_proxy", "https_proxy", "ftp_proxy", "all_proxy", "no_proxy")


@dataclass(frozen=True, slots=True)
class RefSeq:
    """One reference sequence as a FASTA holds it (case as written)."""

    name: str
    bases: str

    @property
    def md5(self) -> str:
        """The ``@SQ M5`` tag: MD5 of the uppercased sequence."""
        return hashlib.md5(self.bases.upper().encode()).hexdigest()

    @property
    def length(self) -> int:
        return len(self.bases)


def make_references(lengths: Mapping[str, int], seed: int) -> list[RefSeq]:
    rng = random.Random(seed)
    refs = []
    for name, length in lengths.items():
        bases = [rng.choice("ACGT") for _ in range(length)]
        mask = rng.randrange(length // 2)
        for i in range(mask, mask + length // 8):  # a soft-masked (lowercase) stretch
            bases[i] = bases[i].lower()
        gap = rng.randrange(length // 2, length - 20)
        bases[gap : gap + 10] = "N" * 10
        bases[rng.randrange(length)] = "R"
        refs.append(RefSeq(name, "".join(bases)))
    return refs


def write_fasta(path: Path, refs: Sequence[RefSeq], width: int = 60) -> None:
    lines = []
    for ref in refs:
        lines.append(f">{ref.name} test sequence")
        lines += [ref.bases[i : i + width] for i in range(0, ref.length, width)]
    path.write_text("\n".join(lines) + "\n")


def header_text(refs: Sequence[RefSeq]) -> str:
    lines = ["@HD\tVN:1.6\tSO:coordinate"]
    lines += [f"@SQ\tSN:{r.name}\tLN:{r.length}\tM5:{r.md5}" for r in refs]
    lines.append("@RG\tID:rg1\tSM:sample1")
    return "\n".join(lines) + "\n"


def make_reads(refs: Sequence[RefSeq], per_reference: int, seed: int) -> list[str]:
    """SAM records, coordinate-sorted, 30 to 60 bases, with the usual CIGAR operations."""
    rng = random.Random(seed)
    reads: list[tuple[int, int, str]] = []
    for index, ref in enumerate(refs):
        upper = ref.bases.upper()
        for n in range(per_reference):
            length = rng.randint(30, 60)
            pos = rng.randrange(ref.length - length - 10)
            seq = list(upper[pos : pos + length])
            kind = n % 5
            if kind == 1:  # a substitution
                i = rng.randrange(length)
                seq[i] = "A" if seq[i] != "A" else "C"
                cigar = f"{length}M"
            elif kind == 2:  # an insertion
                seq[10:10] = list("GGT")
                cigar = f"10M3I{length - 10}M"
            elif kind == 3:  # a deletion
                seq = list(upper[pos : pos + 12] + upper[pos + 16 : pos + length + 4])
                cigar = f"12M4D{length - 12}M"
            elif kind == 4:  # a soft clip
                seq[:4] = list("TTTT")
                cigar = f"4S{length - 4}M"
            else:
                cigar = f"{length}M"
            qual = "".join(chr(33 + rng.randint(2, 40)) for _ in seq)
            flag = 16 if rng.random() < 0.5 else 0
            fields = [f"r{index}_{n}", str(flag), ref.name, str(pos + 1), "60", cigar]
            fields += ["*", "0", "0", "".join(seq), qual, "RG:Z:rg1"]
            reads.append((index, pos, "\t".join(fields)))
    reads.sort()
    unmapped = [
        "u1",
        "4",
        "*",
        "0",
        "0",
        "*",
        "*",
        "0",
        "0",
        "ACGTACGTNNACGT",
        "I" * 14,
        "RG:Z:rg1",
    ]
    return [line for _, _, line in reads] + ["\t".join(unmapped)]


def write_sam(path: Path, refs: Sequence[RefSeq], reads: Sequence[str]) -> None:
    path.write_text(header_text(refs) + "".join(read + "\n" for read in reads))


def samtools_bin() -> str:
    found = shutil.which("samtools")
    if found is None:
        raise RuntimeError("samtools is not installed (Debian: apt-get install samtools)")
    return found


def offline_env(cache: Path | None) -> dict[str, str]:
    """samtools' environment: references from ``cache`` only, no proxy, no network."""
    env = {k: v for k, v in os.environ.items() if k.lower() not in _PROXIES}
    env.pop("REF_PATH", None)
    env.pop("REF_CACHE", None)
    if cache is not None:
        pattern = f"{cache}/%2s/%2s/%s"
        # REF_PATH set to the cache alone: htslib's default would add the EBI registry.
        env["REF_PATH"] = pattern
        env["REF_CACHE"] = pattern
    else:
        env["REF_PATH"] = "/nonexistent/%s"  # never the network default
    return env


def samtools(*args: str | Path, env: Mapping[str, str] | None = None) -> str:
    proc = subprocess.run(
        [samtools_bin(), *map(str, args)],
        capture_output=True,
        text=True,
        env=dict(env) if env is not None else offline_env(None),
        timeout=60,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"samtools {' '.join(map(str, args))}: {proc.stderr.strip()}")
    return proc.stdout


def write_cram(
    sam: Path, fasta: Path, out: Path, version: str, *, level: int | None = None
) -> None:
    """``samtools view -C -T fasta``; ``level=0`` leaves the header block raw."""
    options = ["--output-fmt-option", f"version={version}"]
    if level is not None:
        options += ["--output-fmt-option", f"level={level}"]
    samtools("view", "-C", "-T", fasta, *options, "-o", out, sam)


def write_bam(sam: Path, out: Path) -> None:
    samtools("view", "-b", "-o", out, sam)


def decode(cram: Path, cache: Path) -> list[str]:
    """The reads of ``cram`` as samtools decodes them from the reference cache alone.

    ``decode_md=0``: htslib would otherwise add MD/NM tags the input never had.
    """
    out = samtools("view", "--input-fmt-option", "decode_md=0", cram, env=offline_env(cache))
    return out.splitlines()


def header_m5s(path: Path) -> list[str]:
    """The ``@SQ M5`` tags as samtools reads them."""
    tags = []
    for line in samtools("view", "-H", "--no-PG", path).splitlines():
        if line.startswith("@SQ\t"):
            fields = dict(f.split(":", 1) for f in line.split("\t")[1:])
            tags.append(fields["M5"])
    return tags
