"""Every file the mirror writes goes through its destination: an in-memory one proves it.

The engine runs the ENA end-to-end path against the emulator with a destination that
keeps files in a dict. The files, their MD5s, the index and the metadata are all
there, with no ``.part`` left; on disk under ``dest`` there is only the state store.
"""

from __future__ import annotations

import hashlib
import io
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

import pytest

import mirror
from mirror import RetryPolicy
from mirror._dest import SLICES_SUFFIX, Destination, PartFile, SizedPart, Staged, temporary_name
from mirror._engine import Engine
from mirror._manifest import load_manifest
from mirror._paths import final_path, part_path
from mirror.emulator import Emulator, Fault, FilesOptions, md5_of

from .conftest import (
    FAST_RETRY,
    MIXED,
    ena_manifest,
    file_requests,
    mixed_expected,
    one_fastq_catalog,
)

PATH = "vol1/fastq/ERR700/001/ERR7000001/ERR7000001.fastq.gz"
LOCAL = "ena/ERR7000001/ERR7000001.fastq.gz"


def _missing(path: Path) -> FileNotFoundError:
    return FileNotFoundError(2, "No such file or directory", str(path))


class MemoryDestination:
    """Files in a dict, path → bytes. A file appears at its final path whole or not at
    all: landing moves the complete ``.part`` under one lock."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.files: dict[Path, bytearray] = {}
        self.modes: dict[Path, int] = {}
        #: Final paths in the order they landed.
        self.landed: list[Path] = []
        self._lock = threading.Lock()

    def final(self, path: str, root: str | None = None) -> Path:
        return final_path(self.root, path, root)

    def part(self, final: Path) -> Path:
        return part_path(final)

    def open_part(self, part: Path) -> PartFile:
        with self._lock:
            sidecar = part.with_name(part.name + SLICES_SUFFIX)
            if sidecar in self.files:
                self.files.pop(part, None)
                del self.files[sidecar]
            return _Part(self.files.setdefault(part, bytearray()))

    def open_sized(self, part: Path, size: int, fresh: bool) -> SizedPart:
        with self._lock:
            buf = self.files.setdefault(part, bytearray())
            if fresh:
                buf.clear()
            if len(buf) != size:
                buf[size:] = b""
                buf.extend(bytes(size - len(buf)))
            return _Sized(buf)

    def land(self, part: Path, final: Path, mode: int | None) -> None:
        with self._lock:
            if part not in self.files:
                raise _missing(part)
            self.files[final] = self.files.pop(part)
            if mode is not None:
                self.modes[final] = mode
            self.landed.append(final)

    def drop_empty(self, part: Path) -> None:
        with self._lock:
            if part in self.files and not self.files[part]:
                del self.files[part]

    def size(self, path: Path) -> int | None:
        with self._lock:
            buf = self.files.get(path)
            return len(buf) if buf is not None else None

    def exists(self, path: Path) -> bool:
        with self._lock:
            return path in self.files or any(path in p.parents for p in self.files)

    def is_file(self, path: Path) -> bool:
        with self._lock:
            return path in self.files

    def drop(self, path: Path) -> None:
        with self._lock:
            self.files.pop(path, None)

    def read_bytes(self, path: Path) -> bytes:
        with self._lock:
            if path not in self.files:
                raise _missing(path)
            return bytes(self.files[path])

    def open_read(self, path: Path) -> BinaryIO:
        return io.BytesIO(self.read_bytes(path))

    def hash(
        self, path: Path, algorithm: str = "md5", *, start: int = 0, limit: int | None = None
    ) -> tuple[str, int]:
        data = self.read_bytes(path)[start:]
        if limit is not None:
            data = data[:limit]
        return hashlib.new(algorithm, data).hexdigest(), len(data)

    def write_atomic(self, path: Path, data: bytes, *, tmp: Path | None = None) -> None:
        with self._lock:
            self.files[path] = bytearray(data)

    def stage(self, path: Path, *, tmp: Path | None = None) -> Staged:
        return _Staged(self, path, tmp or temporary_name(path))

    def replace(self, src: Path, dst: Path) -> None:
        with self._lock:
            if src not in self.files:
                raise _missing(src)
            self.files[dst] = self.files.pop(src)

    def link(self, src: Path, dst: Path, mode: int) -> None:
        with self._lock:
            self.files[dst] = bytearray(self.files[src])
            self.modes[dst] = mode

    def free(self, path: Path) -> int | None:
        return None

    def scratch(self, path: Path) -> Path:
        raise AssertionError(f"no scratch file expected on the ENA path ({path})")


class _Part:
    def __init__(self, buf: bytearray) -> None:
        self._buf = buf

    def size(self) -> int:
        return len(self._buf)

    def chunks(self) -> Iterator[bytes]:
        yield bytes(self._buf)

    def restart(self) -> None:
        self._buf.clear()

    def append(self, chunks: Sequence[bytes]) -> None:
        for data in chunks:
            self._buf.extend(data)

    def close(self) -> None:
        pass


class _Sized:
    def __init__(self, buf: bytearray) -> None:
        self._buf = buf

    def write_at(self, chunks: Sequence[bytes | memoryview], position: int) -> None:
        for data in chunks:
            self._buf[position : position + len(data)] = data
            position += len(data)

    def read_at(self, position: int, n: int) -> bytes:
        return bytes(self._buf[position : position + n])

    def close(self) -> None:
        pass


class _Staged:
    def __init__(self, dest: MemoryDestination, path: Path, tmp: Path) -> None:
        self.path = path
        self._dest = dest
        self._tmp = tmp
        self._text: list[str] | None = []

    def write(self, text: str) -> None:
        assert self._text is not None
        self._text.append(text)

    def finish(self) -> Path:
        if self._text is not None:
            self._dest.write_atomic(self._tmp, "".join(self._text).encode("utf-8"))
            self._text = None
        return self._tmp

    def commit(self) -> None:
        self._dest.replace(self.finish(), self.path)

    def abort(self) -> None:
        self._text = None
        self._dest.drop(self._tmp)


def _on_disk(dest: Path) -> list[str]:
    return sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())


def _index(files: MemoryDestination) -> list[dict[str, str]]:
    lines = files.read_bytes(files.root / "index.tsv").decode().splitlines()
    header = lines[0].split("\t")
    return [dict(zip(header, line.split("\t"), strict=True)) for line in lines[1:]]


async def _run(
    doc: dict[str, object], files: Destination, tuning: mirror.Tuning | None = None
) -> mirror.Summary:
    engine = Engine(load_manifest(doc), retry=FAST_RETRY, destination=files, tuning=tuning)
    return await engine.run()


@pytest.mark.parametrize("segmented", [False, True], ids=["streamed", "segmented"])
async def test_ena_end_to_end_writes_only_through_the_destination(
    emulator: Emulator, tmp_path: Path, segmented: bool
) -> None:
    # Segmented: every file over several Range connections, written at offsets.
    # 64 KiB slices: a few dozen per megabyte file, every offset path still taken.
    sliced = mirror.Tuning(transfer=mirror.TransferTuning(segment_min=1, slice=64 << 10))
    tuning = sliced if segmented else None
    dest = tmp_path / "data"
    files = MemoryDestination(dest)
    doc = ena_manifest(emulator.endpoints, dest, MIXED, files=["fastq", "submitted"])

    summary = await _run(doc, files, tuning)

    expected = mixed_expected()
    assert len(expected) >= 12
    assert (summary.planned, summary.verified, summary.failed) == (len(expected), len(expected), 0)
    for rel, served in expected.items():
        got = bytes(files.files[dest / rel])
        assert got == emulator.ena.file_bytes(served), rel
        assert hashlib.md5(got).hexdigest() == emulator.ena.file_md5(served)
    assert sorted(files.landed) == sorted(dest / rel for rel in expected)
    index = _index(files)
    assert {row["path"] for row in index} == set(expected)
    for row in index:
        assert row["status"] == "verified"
        assert row["md5"] == emulator.ena.file_md5(expected[row["path"]])
        assert int(row["bytes"]) == len(files.files[dest / row["path"]])
    runs_tsv = files.read_bytes(dest / "metadata/ena/runs.tsv").decode().splitlines()
    assert runs_tsv[0].split("\t")[0] == "run_accession"
    assert len(runs_tsv) == 1 + 8
    # Nothing else: no .part, no sidecar, no temporary file left in the destination.
    assert set(files.files) == {dest / rel for rel in expected} | {
        dest / "index.tsv",
        dest / "metadata/ena/runs.tsv",
        dest / "metadata/ena/runinfo_ftp.tsv",
        dest / "metadata/ena/analyses.tsv",
    }
    if segmented:
        # The segmented path really ran: files over one slice came in Range slices.
        sliced_paths = {e.path for e in file_requests(emulator.log) if e.range}
        big = {f"/{p}" for p in expected.values() if len(emulator.ena.file_bytes(p)) > 64 << 10}
        assert big
        assert big <= sliced_paths
    # On disk, only the state store (the store owns it, not the destination).
    assert _on_disk(dest)
    assert all(p.startswith(".mirror/state.sqlite") for p in _on_disk(dest))

    # A second run finds every file through the destination and fetches none.
    await emulator.wait_idle()
    before = len(emulator.log)
    again = await _run(doc, files, tuning)
    await emulator.wait_idle()
    assert (again.verified, again.skipped) == (len(expected), len(expected))
    assert file_requests(emulator.log[before:]) == []


async def test_a_part_in_the_destination_is_resumed_from_where_it_stopped(tmp_path: Path) -> None:
    dest = tmp_path / "data"
    files = MemoryDestination(dest)
    size = 3_000_000
    cut = [Fault(kind="truncate", host="ftp", match=f"/{PATH}", after_bytes=1 << 20, times=1)]
    async with Emulator(
        one_fastq_catalog(7, PATH, size), faults=cut, files=FilesOptions(bandwidth=2_000_000)
    ) as emu:
        doc = ena_manifest(emu.endpoints, dest, ["ERR7000001"], workers=2)
        first = await Engine(
            load_manifest(doc), retry=RetryPolicy(attempts=1), destination=files
        ).run()
        held = files.size(part_path(dest / LOCAL))
        assert first.failed == 1
        assert held is not None
        assert 0 < held <= 1 << 20
        assert dest / LOCAL not in files.files

        again = await _run(doc, files)

        await emu.wait_idle()
        requests = file_requests(emu.log)
    assert again.verified == 1
    assert requests[-1].range == f"bytes={held}-"
    assert hashlib.md5(files.files[dest / LOCAL]).hexdigest() == md5_of(PATH, size)
    assert part_path(dest / LOCAL) not in files.files
    assert all(p.startswith(".mirror/state.sqlite") for p in _on_disk(dest))
