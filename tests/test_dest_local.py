"""The local destination's own promises: modes, atomic replacement, nothing left behind."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest

from mirror._dest import SLICES_SUFFIX, LocalDestination


@pytest.mark.parametrize("fsync", [False, True])
def test_land_gives_the_mode_and_renames_in_one_call(tmp_path: Path, fsync: bool) -> None:
    files = LocalDestination(tmp_path, fsync=fsync)
    final = files.final("a/b.txt")
    part = files.part(final)
    held = files.open_part(part)
    held.append([b"one ", b"two"])
    held.close()

    files.land(part, final, 0o444)

    assert final.read_bytes() == b"one two"
    assert stat.S_IMODE(final.stat().st_mode) == 0o444
    assert not part.exists()


def test_a_part_left_by_a_segmented_download_is_not_continued(tmp_path: Path) -> None:
    files = LocalDestination(tmp_path)
    part = files.part(files.final("big.bin"))
    part.write_bytes(bytes(100))  # full size, with holes
    sidecar = part.with_name(part.name + SLICES_SUFFIX)
    sidecar.write_text("{}")

    held = files.open_part(part)

    assert held.size() == 0
    held.close()
    assert not sidecar.exists()


def test_write_atomic_replaces_whole_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    files = LocalDestination(tmp_path)
    path = tmp_path / "metadata" / "x.json"
    files.write_atomic(path, b"old")
    files.write_atomic(path, b"new")
    assert path.read_bytes() == b"new"
    assert os.listdir(path.parent) == ["x.json"]


def test_a_staged_file_appears_only_when_committed(tmp_path: Path) -> None:
    files = LocalDestination(tmp_path)
    path = tmp_path / "index.tsv"
    path.write_text("before\n")
    staged = files.stage(path)
    staged.write("after\n")
    assert path.read_text() == "before\n"
    staged.commit()
    assert path.read_text() == "after\n"

    dropped = files.stage(path)
    dropped.write("never\n")
    dropped.abort()
    assert path.read_text() == "after\n"
    assert os.listdir(tmp_path) == ["index.tsv"]


def test_hash_reads_from_an_offset(tmp_path: Path) -> None:
    files = LocalDestination(tmp_path)
    path = tmp_path / "f"
    path.write_bytes(b"abcdef")
    assert files.hash(path, start=2) == (hashlib.md5(b"cdef").hexdigest(), 4)
    assert files.hash(path, "sha1", limit=3) == (hashlib.sha1(b"abc").hexdigest(), 3)
