"""A full or read-only destination stops the run with one line; the next run resumes.

These mount a real small tmpfs and a read-only bind mount (they need root, for
mount), so the kernel itself answers ENOSPC and EROFS; each mount is undone by the
test or fixture that made it.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from mirror._exceptions import DestinationError, collapsed
from mirror.emulator import Catalog, EnaFile, EnaRun, md5_of

from .conftest import ena_manifest, md5_of_file, mirror_cmd
from .inproc import mirror_main

SIZE = 3_000_000
PATHS = [f"vol1/fastq/ERR900/00{i}/ERR900000{i}/ERR900000{i}.fastq.gz" for i in range(1, 5)]


def catalog() -> Catalog:
    runs = tuple(
        EnaRun(
            accession=f"ERR900000{i}",
            experiment=f"ERX900000{i}",
            sample=f"SAMEA900000{i}",
            secondary_sample=f"ERS900000{i}",
            study="PRJEB90001",
            secondary_study="ERP190001",
            library_layout="SINGLE",
            fastq=(EnaFile(path=path, size=SIZE),),
        )
        for i, path in enumerate(PATHS, start=1)
    )
    return Catalog(runs=runs)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB tmpfs: room for two of the four 3 MB files, not for the third."""
    where = tmp_path / "disk"
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


def run(manifest: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return mirror_main("run", str(manifest), "-q", *extra)


@pytest.mark.slow  # the run stopped by the full disk is a child process (its claims end with it)
def test_full_disk_stops_the_run_with_one_line_and_the_next_run_resumes(
    emulator_thread: Any, tmp_path: Path, small_disk: Path
) -> None:
    emu = emulator_thread(catalog())
    dest = small_disk / "data"
    manifest = tmp_path / "m.yaml"
    doc = ena_manifest(emu.endpoints, dest, [f"ERR900000{i}" for i in range(1, 5)], workers=1)
    manifest.write_text(yaml.safe_dump(doc))

    # A child process: the store is on the full disk too, so the run cannot write that
    # it left the pull; its claims end with its process, as a user's run's do.
    full = mirror_cmd("run", str(manifest), "-q")
    assert full.returncode == 1, full.stderr
    lines = full.stderr.strip().splitlines()
    assert len(lines) == 1, full.stderr
    (line,) = lines
    assert "Traceback" not in full.stderr
    assert "No space left on device" in line
    assert ".fastq.gz.part" in line
    assert str(small_disk) in line
    assert "needs" in line
    assert "MB more" in line
    assert "free" in line
    # Stopped at the first full write: the files after it were never asked for, and
    # none is marked failed (no "failed" line per file, nothing failed in the state).
    asked = {e["path"] for e in emu.log() if e["host"] == "ftp"}
    assert len(asked) == 3
    status = mirror_main("status", str(manifest))
    counts = {line.split()[0]: int(line.split()[1]) for line in status.stdout.splitlines()}
    assert counts == {"verified": 2, "pending": 2, "failed": 0}, status.stdout + status.stderr
    parts = list(dest.rglob("*.part"))
    assert len(parts) == 1
    assert parts[0].stat().st_size > 0
    kept = parts[0].stat().st_size

    # Room is made (the filesystem grows); the next run resumes the partial file.
    subprocess.run(["mount", "-o", "remount,size=32m", str(small_disk)], check=True)
    before = len(emu.log())
    again = run(manifest)
    assert again.returncode == 0, again.stderr
    for i, path in enumerate(PATHS, start=1):
        got = dest / f"ena/ERR900000{i}/ERR900000{i}.fastq.gz"
        assert md5_of_file(got) == md5_of(path, SIZE)
    resumed = [e for e in emu.log()[before:] if e["host"] == "ftp" and e["range"]]
    assert [e["range"] for e in resumed] == [f"bytes={kept}-"]
    assert not list(dest.rglob("*.part"))


def test_read_only_destination_stops_the_run_with_one_line(
    emulator_thread: Any, tmp_path: Path
) -> None:
    emu = emulator_thread(catalog())
    dest = tmp_path / "data"
    manifest = tmp_path / "m.yaml"
    doc = ena_manifest(emu.endpoints, dest, [f"ERR900000{i}" for i in range(1, 5)], workers=2)
    manifest.write_text(yaml.safe_dump(doc))
    first = run(manifest)
    assert first.returncode == 0, first.stderr
    # The files are lost, and their directory is now read-only (a read-only bind
    # mount: root ignores permission bits); the state and metadata stay writable.
    for f in dest.rglob("*.fastq.gz"):
        f.unlink()
    files = dest / "ena"
    subprocess.run(["mount", "--bind", str(files), str(files)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(files)], check=True)
        before = len(emu.log())
        ro = run(manifest)
    finally:
        subprocess.run(["umount", str(files)], check=True)
    assert ro.returncode == 1, ro.stderr
    assert "Traceback" not in ro.stderr
    lines = ro.stderr.strip().splitlines()
    assert len(lines) == 1, ro.stderr
    assert "Read-only file system" in lines[0]
    assert str(files) in lines[0]
    # Stopped at the first write: not every file tried and failed one by one.
    assert len([e for e in emu.log()[before:] if e["host"] == "ftp"]) <= 2
    status = mirror_main("status", str(manifest))
    counts = {line.split()[0]: int(line.split()[1]) for line in status.stdout.splitlines()}
    # Nothing failed. (A file the stop came before is still 'verified' from the first
    # run: its absence is found when the next run plans it.)
    assert counts["failed"] == 0, status.stdout
    assert counts["verified"] + counts["pending"] == 4, status.stdout

    again = run(manifest)
    assert again.returncode == 0, again.stderr
    for i, path in enumerate(PATHS, start=1):
        assert md5_of_file(files / f"ERR900000{i}/ERR900000{i}.fastq.gz") == md5_of(path, SIZE)


def test_workers_stopped_by_one_disk_together_make_one_error() -> None:
    first = DestinationError("cannot write a.part: No space left on device", path="a.part")
    second = DestinationError("cannot write b.part: No space left on device", path="b.part")
    with pytest.raises(DestinationError) as caught, collapsed():
        raise ExceptionGroup("workers", [first, second])
    assert caught.value is first
    assert getattr(caught.value, "__notes__", []) == []
