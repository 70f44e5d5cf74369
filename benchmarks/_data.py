"""Data sets on disk with known MD5s, and the check of every file a tool downloaded.

Contents come from the emulator's deterministic generator (``iter_range``), so the
MD5s the emulator's Portal API reports are the MD5s of the files nginx serves. A
data set is written once under ``WORK/www/<vol1 path>`` and reused by later runs of
the suite when every size matches a stamp written after its MD5s were checked.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from mirror.emulator import Catalog, GeneratedStudy, iter_range, md5_of

__all__ = ["Dataset", "FileSpec", "VerificationFailed", "prepare", "verify"]

_READ = 8 << 20
_HASH_THREADS = 2


class VerificationFailed(RuntimeError):
    """A tool left a file missing, short, long or with the wrong MD5."""


@dataclass(frozen=True, slots=True)
class FileSpec:
    """One catalog file: where it lives on the server and what it must hash to."""

    path: str  # vol1/fastq/...
    run: str  # its run accession (ebi-mirror puts it under ena/<run>/)
    size: int
    md5: str

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[1]


@dataclass(frozen=True)
class Dataset:
    name: str
    study: GeneratedStudy
    files: tuple[FileSpec, ...]

    @property
    def bytes(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def catalog(self) -> Catalog:
        return Catalog(generated_studies=(self.study,))

    def urls(self, base: str) -> list[str]:
        return [f"{base.rstrip('/')}/{f.path}" for f in self.files]


def _specs(study: GeneratedStudy) -> Iterator[tuple[str, str, int]]:
    for run in study.iter_runs():
        for item in run.fastq:
            yield item.path, run.accession, item.size


def _write(path: Path, rel: str, size: int) -> str:
    digest = hashlib.md5()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as out:
        for piece in iter_range(rel, size):
            out.write(piece)
            digest.update(piece)
    os.replace(tmp, path)
    return digest.hexdigest()


def hash_file(path: Path) -> tuple[str, int]:
    digest = hashlib.md5()
    n = 0
    with path.open("rb") as f:
        while chunk := f.read(_READ):
            digest.update(chunk)
            n += len(chunk)
    return digest.hexdigest(), n


def prepare(name: str, study: GeneratedStudy, www: Path, *, say: Callable[[str], None]) -> Dataset:
    """Write (or reuse) every file of ``study`` under ``www`` and return the data set."""
    stamp = www / ".stamps" / f"{name}.json"
    specs = list(_specs(study))
    known = _read_stamp(stamp, study)
    if known is not None and all(
        _size(www / rel) == size and rel in known for rel, _, size in specs
    ):
        files = tuple(FileSpec(rel, run, size, known[rel]) for rel, run, size in specs)
        return Dataset(name, study, files)
    total = sum(size for _, _, size in specs)
    say(f"writing data set {name}: {len(specs):,} files, {total / 2**30:.2f} GiB under {www}")

    def one(item: tuple[str, str, int]) -> FileSpec:
        rel, run, size = item
        path = www / rel
        expected = md5_of(rel, size)
        if _size(path) == size and hash_file(path)[0] == expected:
            return FileSpec(rel, run, size, expected)  # already there: checked once
        got = _write(path, rel, size)
        if got != expected:
            raise VerificationFailed(f"{rel}: wrote MD5 {got}, the emulator says {expected}")
        return FileSpec(rel, run, size, got)

    with ThreadPoolExecutor(_HASH_THREADS) as pool:
        files = tuple(pool.map(one, specs))
    stamp.parent.mkdir(parents=True, exist_ok=True)
    tmp = stamp.with_suffix(".tmp")
    tmp.write_text(
        json.dumps({"study": study.to_dict(), "md5": {f.path: f.md5 for f in files}}),
        encoding="utf-8",
    )
    os.replace(tmp, stamp)
    return Dataset(name, study, files)


def _read_stamp(stamp: Path, study: GeneratedStudy) -> dict[str, str] | None:
    try:
        data = json.loads(stamp.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("study") != study.to_dict():
        return None
    md5 = data.get("md5")
    return {str(k): str(v) for k, v in md5.items()} if isinstance(md5, dict) else None


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


@dataclass(frozen=True, slots=True)
class Checked:
    files: int
    bytes: int


def verify(tool: str, expected: Iterable[tuple[Path, int, str]]) -> Checked:
    """Check that every ``(local path, size, md5)`` is there, that long, with that MD5.

    Raises :class:`VerificationFailed` naming the first few bad files.
    """
    items = list(expected)

    def check(item: tuple[Path, int, str]) -> str | None:
        path, size, md5 = item
        got_size = _size(path)
        if got_size is None:
            return f"{path}: missing"
        if got_size != size:
            return f"{path}: {got_size} bytes, expected {size}"
        got, _ = hash_file(path)
        return None if got == md5 else f"{path}: MD5 {got}, expected {md5}"

    with ThreadPoolExecutor(_HASH_THREADS) as pool:
        errors = [e for e in pool.map(check, items) if e is not None]
    if errors:
        shown = "\n  ".join(errors[:10])
        more = f"\n  … and {len(errors) - 10} more" if len(errors) > 10 else ""
        raise VerificationFailed(
            f"{tool}: {len(errors)} of {len(items)} files wrong:\n  {shown}{more}"
        )
    return Checked(files=len(items), bytes=sum(size for _, size, _ in items))
