"""A server file name near the file system's limit downloads under its own name."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import mirror
from mirror._paths import NAME_MAX
from mirror.emulator import Emulator

from .conftest import FAST_RETRY, ena_manifest, md5_of_file, one_fastq_catalog, read_index

#: 253 bytes: the final name fits (NAME_MAX is 255), ``NAME.part`` would not.
NAME = "ERR7000001_" + "x" * (253 - len("ERR7000001_.fastq.gz")) + ".fastq.gz"
SIZE = 300_000


@pytest.mark.parametrize("segmented", [False, True], ids=["one-stream", "segmented"])
async def test_a_253_character_name_downloads_verifies_and_lands_whole(
    tmp_path: Path, segmented: bool
) -> None:
    assert len(os.fsencode(NAME)) == 253 < NAME_MAX
    # Segmented: the Range slices, their sidecar and its temporary file.
    sliced = mirror.Tuning(transfer=mirror.TransferTuning(segment_min=1, slice=64 << 10))
    served = f"vol1/fastq/ERR700/001/ERR7000001/{NAME}"
    dest = tmp_path / "data"
    async with Emulator(one_fastq_catalog(7, served, SIZE), seed=7) as emu:
        doc = ena_manifest(emu.endpoints, dest, ["ERR7000001"])
        summary = await mirror.run(doc, retry=FAST_RETRY, tuning=sliced if segmented else None)
        ranged = [e for e in emu.log if e.host == "ftp" and e.range]

    assert (summary.verified, summary.failed, summary.exit_code) == (1, 0, 0)
    final = dest / "ena/ERR7000001" / NAME
    assert final.read_bytes() == emu.ena.file_bytes(served)
    assert md5_of_file(final) == emu.ena.file_md5(served)
    assert os.listdir(final.parent) == [NAME]  # no partial file left behind
    (row,) = read_index(dest)
    assert (row["path"], row["status"]) == (f"ena/ERR7000001/{NAME}", "verified")
    assert len(ranged) == (5 if segmented else 0)
