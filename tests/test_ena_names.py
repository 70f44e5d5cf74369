"""ENA file names as the archive gives them: literal on disk, percent-encoded on the wire,
and never two files at one path."""

from __future__ import annotations

from pathlib import Path

import mirror
from mirror.emulator import Catalog, Emulator, EnaFile, EnaRun

from .conftest import FAST_RETRY, ena_manifest, file_requests, md5_of_file, read_index


def _run(
    accession: str,
    *,
    fastq: tuple[EnaFile, ...] = (),
    submitted: tuple[EnaFile, ...] = (),
    sra: tuple[EnaFile, ...] = (),
) -> EnaRun:
    n = accession[3:]
    return EnaRun(
        accession=accession,
        experiment=f"ERX{n}",
        sample=f"SAMEA{n}",
        secondary_sample=f"ERS{n}",
        study="PRJEB77001",
        secondary_study="ERP177001",
        fastq=fastq,
        submitted=submitted,
        sra=sra,
    )


async def test_hash_in_a_file_name_is_requested_encoded_and_kept_on_disk(tmp_path: Path) -> None:
    cram = "vol1/run/ERR325/ERR3256745/27604_8#1.cram"
    catalog = Catalog(runs=(_run("ERR3256745", submitted=(EnaFile(path=cram, size=3000),)),))
    async with Emulator(catalog) as emu:
        doc = ena_manifest(emu.endpoints, tmp_path, ["ERR3256745"], files=["submitted"])
        summary = await mirror.run(doc, retry=FAST_RETRY)
        await emu.wait_idle()
        local = tmp_path / "ena/ERR3256745/27604_8#1.cram"
        assert (summary.verified, summary.failed, summary.exit_code) == (1, 0, 0)
        assert local.read_bytes() == emu.file_bytes(cram)
        assert md5_of_file(local) == emu.file_md5(cram)
        # One request, for the whole name ('#' sent as %23, not cut off as a fragment).
        assert [(e.path, e.status) for e in file_requests(emu.log)] == [(f"/{cram}", 200)]
    (row,) = read_index(tmp_path)
    assert row["path"] == "ena/ERR3256745/27604_8#1.cram"
    assert row["url"].endswith("/vol1/run/ERR325/ERR3256745/27604_8%231.cram")
