"""Parallel Range slices against the emulator: a slow slice, a resume from a scattered sidecar."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from mirror import _segments
from mirror._config import HostLimit
from mirror._dest import LocalDestination, SizedPart
from mirror._http import Http
from mirror._models import FileTask
from mirror._tuning import TransferTuning
from mirror.emulator import Catalog, Emulator, Fault, md5_of

from .conftest import one_fastq_catalog

SIZE = 12 << 20
SLICE = 1 << 20
PATH = "vol1/fastq/ERR600/001/ERR6000001/ERR6000001.fastq.gz"


def catalog() -> Catalog:
    return one_fastq_catalog(6, PATH, SIZE)


def task(emu: Emulator) -> FileTask:
    return FileTask(
        source="ena",
        accession="ERR6000001",
        url=emu.ena.file_url(PATH),
        path="ERR6000001.fastq.gz",
        size=SIZE,
        checksum=md5_of(PATH, SIZE),
    )


#: Slices of 1 MiB written 64 KiB at a time: the real sizes scaled down 64-fold.
SMALL_BATCHES = TransferTuning(flush_bytes=64 << 10)


def limits(_host: str) -> HostLimit:
    return HostLimit(connections=8)


async def test_resume_with_far_slices_done_and_the_first_one_not_finishes(tmp_path: Path) -> None:
    # A killed run left every slice but the first complete, the first a quarter done:
    # only the rest of that one slice is asked for, and the file hashes whole.
    async with Emulator(catalog()) as emu, Http(limits) as http:
        body = emu.ena.file_bytes(PATH)
        final = tmp_path / "out" / "ERR6000001.fastq.gz"
        final.parent.mkdir()
        part = final.with_name(final.name + ".part")
        count = SIZE // SLICE
        done = [SLICE // 4] + [SLICE] * (count - 1)
        part.with_name(part.name + ".slices").write_text(
            json.dumps({"size": SIZE, "slice": SLICE, "checksum": md5_of(PATH, SIZE), "done": done})
        )
        part.write_bytes(body[: SLICE // 4] + b"\0" * (SLICE - SLICE // 4) + body[SLICE:])
        got = await asyncio.wait_for(
            _segments.fetch_segmented(
                task(emu), final, http, connections=4, slice_size=SLICE, transfer=SMALL_BATCHES
            ),
            timeout=30,
        )
        await emu.wait_idle()
        ranges = [e.range for e in emu.log if e.path.endswith(".fastq.gz")]
    assert got.md5 == md5_of(PATH, SIZE)
    assert final.read_bytes() == body
    assert ranges == [f"bytes={SLICE // 4}-{SLICE - 1}"]
    assert not part.exists()
    assert not part.with_name(part.name + ".slices").exists()


async def test_a_slow_first_slice_does_not_hold_back_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On a real link one connection is often slower than the rest: the hasher waits
    # for the frontier, and the other slices must go on meanwhile, not queue behind it.
    writes: list[tuple[int, int]] = []
    real_pwritev = os.pwritev

    def recording_pwritev(fd: int, buffers: Any, offset: int) -> int:
        n = real_pwritev(fd, buffers, offset)
        writes.append((offset, n))
        return n

    monkeypatch.setattr(os, "pwritev", recording_pwritev)
    async with Emulator(catalog()) as emu, Http(limits) as http:
        # Slow enough that the other slices have a second (not a quarter of one) to
        # finish before the slow one is half done, on a loaded 2-core machine too.
        emu.faults.add(Fault(kind="slow", match=f"*{PATH}", offset=0, bytes_per_second=1 << 19))
        final = tmp_path / "out" / "ERR6000001.fastq.gz"
        got = await _segments.fetch_segmented(
            task(emu), final, http, connections=4, slice_size=SLICE, transfer=SMALL_BATCHES
        )
        assert final.read_bytes() == emu.ena.file_bytes(PATH)
    assert got.md5 == md5_of(PATH, SIZE)
    assert sum(n for _, n in writes) == SIZE
    # Every other slice was written while the slow one had less than half of its bytes.
    last_other = max(i for i, (offset, _) in enumerate(writes) if offset >= SLICE)
    first_slow = sum(n for offset, n in writes[:last_other] if offset < SLICE)
    assert first_slow < SLICE // 2, f"{first_slow} bytes of the slow slice came first"


async def test_slices_of_a_file_whose_md5_changed_are_not_joined(tmp_path: Path) -> None:
    # The sidecar says every slice but the first is done, for another MD5 of the same
    # size (the archive regenerated the file): all of it is fetched again.
    async with Emulator(catalog()) as emu, Http(limits) as http:
        final = tmp_path / "out" / "ERR6000001.fastq.gz"
        final.parent.mkdir()
        part = final.with_name(final.name + ".part")
        count = SIZE // SLICE
        done = [0] + [SLICE] * (count - 1)
        part.with_name(part.name + ".slices").write_text(
            json.dumps({"size": SIZE, "slice": SLICE, "checksum": "0" * 32, "done": done})
        )
        part.write_bytes(b"\x55" * SIZE)  # the old file's bytes
        got = await asyncio.wait_for(
            _segments.fetch_segmented(task(emu), final, http, connections=4, slice_size=SLICE),
            timeout=30,
        )
        await emu.wait_idle()
        ranges = sorted(e.range or "" for e in emu.log if e.path.endswith(".fastq.gz"))
        body = emu.ena.file_bytes(PATH)
    assert got.md5 == md5_of(PATH, SIZE)
    assert final.read_bytes() == body
    assert len(ranges) == count


class _CountingDest(LocalDestination):
    """The local file system, counting the bytes read back from a sliced ``.part``."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.read_back = 0

    def open_sized(self, part: Path, size: int, fresh: bool) -> SizedPart:
        held = super().open_sized(part, size, fresh)
        outer = self

        class Counting:
            def write_at(self, chunks: Sequence[bytes | memoryview], position: int) -> None:
                held.write_at(chunks, position)

            def read_at(self, position: int, n: int) -> bytes:
                data = held.read_at(position, n)
                outer.read_back += len(data)
                return data

            def close(self) -> None:
                held.close()

        return Counting()


async def test_slices_landing_at_the_frontier_are_hashed_from_memory(tmp_path: Path) -> None:
    # One connection: every batch lands where the hash stands, so no byte is read
    # back from the .part to hash it; the digest is still the file's.
    async with Emulator(catalog()) as emu, Http(limits) as http:
        final = tmp_path / "out" / "ERR6000001.fastq.gz"
        final.parent.mkdir()
        dest = _CountingDest(final.parent)
        got = await asyncio.wait_for(
            _segments.fetch_segmented(
                task(emu),
                final,
                http,
                connections=1,
                slice_size=SLICE,
                transfer=SMALL_BATCHES,
                dest=dest,
            ),
            timeout=30,
        )
        body = emu.ena.file_bytes(PATH)
    assert got.md5 == md5_of(PATH, SIZE)
    assert final.read_bytes() == body
    assert dest.read_back == 0
