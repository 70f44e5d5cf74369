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
        assert local.read_bytes() == emu.ena.file_bytes(cram)
        assert md5_of_file(local) == emu.ena.file_md5(cram)
        # One request, for the whole name ('#' sent as %23, not cut off as a fragment).
        assert [(e.path, e.status) for e in file_requests(emu.log)] == [(f"/{cram}", 200)]
    (row,) = read_index(tmp_path)
    assert row["path"] == "ena/ERR3256745/27604_8#1.cram"
    assert row["url"].endswith("/vol1/run/ERR325/ERR3256745/27604_8%231.cram")


async def test_files_sharing_a_name_all_land_or_fail_naming_the_clash(tmp_path: Path) -> None:
    run_dir = "vol1/run/ERR770/ERR7700001"
    fastq = EnaFile(path="vol1/fastq/ERR770/001/ERR7700001/ERR7700001_1.fastq.gz", size=1500)
    submitted = (
        EnaFile(path=f"{run_dir}/ERR7700001_1.fastq.gz", size=1700),
        EnaFile(path=f"{run_dir}/dup.fq", size=1100),
        EnaFile(path=f"{run_dir}/sub/dup.fq", size=1200),
        EnaFile(path=f"{run_dir}/sub2/dup.fq", size=1300),
    )
    catalog = Catalog(runs=(_run("ERR7700001", fastq=(fastq,), submitted=submitted),))
    async with Emulator(catalog) as emu:
        # The user's order of families does not decide where files land.
        doc = ena_manifest(emu.endpoints, tmp_path, ["ERR7700001"], files=["submitted", "fastq"])
        summary = await mirror.run(doc, retry=FAST_RETRY)
        await emu.wait_idle()
        landed = {
            "ERR7700001_1.fastq.gz": fastq.path,
            "submitted/ERR7700001_1.fastq.gz": submitted[0].path,
            "dup.fq": submitted[1].path,
            "submitted/dup.fq": submitted[2].path,
        }
        for rel, served in landed.items():
            assert (tmp_path / "ena/ERR7700001" / rel).read_bytes() == emu.ena.file_bytes(served)
        # The third 'dup.fq' has nowhere left to go: it fails, and is never requested.
        requested = sorted(e.path for e in file_requests(emu.log))
        assert requested == sorted(f"/{path}" for path in landed.values())
    assert (summary.planned, summary.verified, summary.failed, summary.exit_code) == (5, 4, 1, 1)
    rows = {row["path"]: row for row in read_index(tmp_path)}
    assert set(rows) == {f"ena/ERR7700001/{rel}" for rel in landed} | {
        "ena/ERR7700001/submitted/4/dup.fq"
    }
    clash = rows["ena/ERR7700001/submitted/4/dup.fq"]
    assert clash["status"] == "failed"
    assert "sub2/dup.fq" in clash["url"]
    assert f"{run_dir}/dup.fq" in clash["reason"]
    assert f"{run_dir}/sub/dup.fq" in clash["reason"]
    assert {rows[f"ena/ERR7700001/{rel}"]["status"] for rel in landed} == {"verified"}
