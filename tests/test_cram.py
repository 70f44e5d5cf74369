"""CRAM references into a samtools REF_CACHE, byte-identical to what htslib writes.

The CRAM files are written by samtools, and the filled cache is checked by letting
samtools decode them from it with no FASTA and no network.
"""

from __future__ import annotations

import asyncio
import hashlib
import stat
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

import mirror
from mirror._models import Warning_
from mirror._verify import verify_local
from mirror.emulator import Catalog, CramReference, Emulator

from .conftest import FAST_RETRY, read_index
from .hts_files import (
    RefSeq,
    decode,
    header_m5s,
    make_reads,
    make_references,
    write_cram,
    write_fasta,
    write_sam,
)
from .inproc import mirror_main
from .state_schema_1 import downgrade_to_schema_1

UNKNOWN = "0123456789abcdef0123456789abcdef"


def cram_manifest(
    endpoints: dict[str, str], dest: Path, cache: Path, **source: Any
) -> dict[str, Any]:
    return {
        "version": 1,
        "dest": str(dest),
        "endpoints": endpoints,
        "sources": [{"cram_refs": {"cache": str(cache), **source}}],
    }


def entry(cache: Path, md5: str) -> Path:
    """``%2s/%2s/%s`` under ``cache``, as REF_CACHE names it."""
    return cache / md5[:2] / md5[2:4] / md5[4:]


def check_entry(cache: Path, md5: str, bases: bytes) -> None:
    data = entry(cache, md5).read_bytes()
    assert data == bases  # the raw uppercase sequence, no header, no newline
    assert data == data.upper()
    assert hashlib.md5(data).hexdigest() == md5
    assert stat.S_IMODE(entry(cache, md5).stat().st_mode) == 0o444


def check_cache(cache: Path, catalog: Catalog) -> None:
    for ref in catalog.cram_references:
        check_entry(cache, ref.md5, ref.bases())
    assert not list(cache.rglob("*.part"))


def registry_catalog(refs: Sequence[RefSeq]) -> Catalog:
    """The registry knows ``refs`` (as the FASTA has them: the emulator uppercases)."""
    return Catalog(
        cram_references=tuple(
            CramReference(name=r.name, length=r.length, sequence=r.bases) for r in refs
        )
    )


def samtools_cram(work: Path, refs: Sequence[RefSeq], version: str) -> tuple[Path, list[str]]:
    """A CRAM written by samtools from ``refs`` and reads on them; the FASTA is removed.

    samtools records the FASTA's path in ``@SQ UR``: with it gone, the cache is the only
    place a decoder can find the sequences.
    """
    reads = make_reads(refs, per_reference=8, seed=22)
    fasta, sam = work / "ref.fa", work / "in.sam"
    write_fasta(fasta, refs)
    write_sam(sam, refs, reads)
    cram = work / f"sample-{version}.cram"
    write_cram(sam, fasta, cram, version)
    fasta.unlink()
    (work / "ref.fa.fai").unlink(missing_ok=True)
    return cram, reads


def cram_requests(emu: Emulator) -> list[str]:
    return sorted(e.path for e in emu.log if e.path.startswith("/ena/cram/"))


@pytest.mark.parametrize("version", ["3.0", "3.1"])
async def test_a_cram_written_by_samtools_fills_the_cache_samtools_decodes_from(
    tmp_path: Path, version: str
) -> None:
    refs = make_references({"chr1": 6000, "chr2": 3500, "chrM": 1650}, seed=21)
    work = tmp_path / "aln"
    work.mkdir()
    # samtools runs in a thread: a child process waited for on the loop would block it.
    cram, reads = await asyncio.to_thread(samtools_cram, work, refs, version)
    assert cram.read_bytes()[:6] == b"CRAM" + bytes(int(n) for n in version.split("."))
    assert header_m5s(cram) == [r.md5 for r in refs]
    cache = tmp_path / "hts-ref"
    with pytest.raises(RuntimeError, match=r"cram_get_ref|reference"):
        await asyncio.to_thread(decode, cram, cache)  # nothing cached: samtools cannot decode

    async with Emulator(registry_catalog(refs), seed=7) as emu:
        doc = cram_manifest(emu.endpoints, tmp_path / "d", cache, crams=[f"{work}/*.cram"])
        summary = await mirror.run(doc, retry=FAST_RETRY)
        await emu.wait_idle()
        assert cram_requests(emu) == sorted(f"/ena/cram/md5/{r.md5}" for r in refs)

    assert (summary.planned, summary.verified, summary.exit_code) == (3, 3, 0)
    for ref in refs:
        check_entry(cache, ref.md5, ref.bases.upper().encode())
    assert sorted(p.relative_to(cache).as_posix() for p in cache.rglob("*") if p.is_file()) == (
        sorted(f"{r.md5[:2]}/{r.md5[2:4]}/{r.md5[4:]}" for r in refs)
    )
    # samtools, from the cache alone (REF_PATH and REF_CACHE), gives back every read.
    assert await asyncio.to_thread(decode, cram, cache) == reads


async def test_five_checksums_one_unknown_then_a_cram_files_m5_tags(tmp_path: Path) -> None:
    catalog = Catalog.generate_cram(count=4, length=50_000, seed=3)
    md5s = [r.md5 for r in catalog.cram_references] + [UNKNOWN]
    # The refs and the CRAM that names them are made while nothing else runs.
    refs = [RefSeq(r.name, r.bases().decode()) for r in catalog.cram_references]
    refs += make_references({"not_registered": 900}, seed=4)
    work = tmp_path / "aln"
    work.mkdir()
    await asyncio.to_thread(samtools_cram, work, refs, "3.0")

    async with Emulator(catalog, seed=7) as emu:

        async def command(*args: str) -> subprocess.CompletedProcess[str]:
            done = await asyncio.to_thread(mirror_main, *args)
            await emu.wait_idle()
            return done

        cache = tmp_path / "hts-ref"
        manifest = tmp_path / "m.yaml"
        manifest.write_text(
            yaml.safe_dump(cram_manifest(emu.endpoints, tmp_path / "d", cache, md5=md5s))
        )
        run = await command("run", str(manifest))
        assert run.returncode == 1, run.stderr
        check_cache(cache, catalog)
        assert not entry(cache, UNKNOWN).exists()
        status = await command("status", str(manifest))
        failed = [line.split("\t") for line in status.stdout.splitlines() if "\tfailed\t" in line]
        assert [f[0] for f in failed] == [str(entry(cache, UNKNOWN))]
        assert "404" in failed[0][2]

        # Entries already present and valid cost no request.
        before = len(emu.log)
        again = await command("run", str(manifest))
        assert again.returncode == 1
        assert [e.path for e in emu.log[before:] if "/ena/cram/" in e.path] == [
            f"/ena/cram/md5/{UNKNOWN}"
        ]

        # The same driven by the @SQ M5 tags of a CRAM written by samtools, into a fresh
        # cache; one of its references is not in the registry.
        cache2 = tmp_path / "hts-ref-2"
        manifest2 = tmp_path / "m2.yaml"
        manifest2.write_text(
            yaml.safe_dump(
                cram_manifest(emu.endpoints, tmp_path / "d2", cache2, crams=[f"{work}/*.cram"])
            )
        )
        run2 = await command("run", str(manifest2))
        assert run2.returncode == 1
        check_cache(cache2, catalog)
        assert not entry(cache2, refs[-1].md5).exists()
        assert f"/ena/cram/md5/{refs[-1].md5}" in [e.path for e in emu.log]


async def test_sha1_names_are_filed_under_their_md5_and_index_and_verify_agree(
    tmp_path: Path,
) -> None:
    catalog = Catalog.generate_cram(count=2, length=20_000, seed=5)
    cache = tmp_path / "hts-ref"
    dest = tmp_path / "d"
    async with Emulator(catalog, seed=7) as emu:
        doc = cram_manifest(
            emu.endpoints, dest, cache, sha1=[r.sha1 for r in catalog.cram_references]
        )
        summary = await mirror.run(doc, retry=FAST_RETRY)
        assert (summary.verified, summary.exit_code) == (2, 0)
        check_cache(cache, catalog)
        # Every row of the index names a file that is there, with the MD5 it lists.
        rows = read_index(dest)
        assert sorted(row["md5"] for row in rows) == sorted(r.md5 for r in catalog.cram_references)
        for row in rows:
            assert row["status"] == "verified"
            data = await asyncio.to_thread(Path(row["path"]).read_bytes)
            assert hashlib.md5(data).hexdigest() == row["md5"]
        assert await verify_local(dest, None) == (2, [])

        # A re-run asks nothing, and the files it lists are still there.
        emu.clear_log()
        summary = await mirror.run(doc, retry=FAST_RETRY)
        assert (summary.exit_code, cram_requests(emu)) == (0, [])
        assert read_index(dest) == rows
        assert (await verify_local(dest, None))[1] == []

        # An entry removed from the cache is filed again from the fetched file.
        first = catalog.cram_references[0]
        entry(cache, first.md5).unlink()
        summary = await mirror.run(doc, retry=FAST_RETRY)
        assert (summary.skipped, summary.exit_code, cram_requests(emu)) == (1, 0, [])
        check_cache(cache, catalog)


async def test_two_caches_with_one_dest_each_get_every_reference(tmp_path: Path) -> None:
    catalog = Catalog.generate_cram(count=2, length=5_000, seed=9)
    md5s = [r.md5 for r in catalog.cram_references]
    dest = tmp_path / "d"
    first, second, third = (tmp_path / name for name in ("cache-a", "cache-b", "cache-c"))
    async with Emulator(catalog, seed=7) as emu:
        # Two entries of one manifest: the same checksums into two caches.
        doc = cram_manifest(emu.endpoints, dest, first, md5=md5s)
        doc["sources"].append({"cram_refs": {"cache": str(second), "md5": md5s}})
        summary = await mirror.run(doc, retry=FAST_RETRY)
        assert (summary.planned, summary.verified, summary.exit_code) == (4, 4, 0)
        check_cache(first, catalog)
        check_cache(second, catalog)

        # A later run with the same dest and a third cache: nothing taken for missing.
        warnings: list[str] = []
        async with mirror.Mirror(
            cram_manifest(emu.endpoints, dest, third, md5=md5s), retry=FAST_RETRY
        ) as m:
            async for event in m.events():
                if isinstance(event, Warning_):
                    warnings.append(event.message)
        assert (m.summary.planned, m.summary.verified, m.summary.skipped) == (2, 2, 0)
        assert warnings == []
        check_cache(third, catalog)

    rows = read_index(dest)
    assert sorted(row["path"] for row in rows) == sorted(
        str(entry(cache, md5)) for cache in (first, second, third) for md5 in md5s
    )
    assert {row["status"] for row in rows} == {"verified"}
    checked, bad = await verify_local(dest, None)
    assert checked >= 2
    assert bad == []


async def test_a_store_that_keyed_cache_entries_by_path_alone_is_rekeyed(tmp_path: Path) -> None:
    catalog = Catalog.generate_cram(count=2, length=5_000, seed=13)
    md5s = [r.md5 for r in catalog.cram_references]
    dest, cache = tmp_path / "d", tmp_path / "hts-ref"
    async with Emulator(catalog, seed=7) as emu:
        doc = cram_manifest(emu.endpoints, dest, cache, md5=md5s)
        assert (await mirror.run(doc, retry=FAST_RETRY)).verified == 2
        # The rows as an earlier version wrote them: the path alone, without the root.
        await asyncio.to_thread(
            downgrade_to_schema_1, dest / ".mirror" / "state.sqlite", rooted_keys=False
        )
        entry(cache, md5s[0]).unlink()
        summary = await mirror.run(doc, retry=FAST_RETRY)
        assert (summary.planned, summary.verified) == (1, 1)
    rows = read_index(dest)
    assert sorted(row["path"] for row in rows) == sorted(str(entry(cache, m)) for m in md5s)
    check_cache(cache, catalog)


async def test_an_unreadable_cram_fails_the_pull_by_name_the_others_land(tmp_path: Path) -> None:
    refs = make_references({"chr1": 2000, "chr2": 1500}, seed=31)
    work = tmp_path / "aln"
    work.mkdir()
    cram, _ = await asyncio.to_thread(samtools_cram, work, refs, "3.1")
    bad = work / "cut.cram"
    bad.write_bytes(cram.read_bytes()[:40])
    cache = tmp_path / "hts-ref"
    async with Emulator(registry_catalog(refs), seed=7) as emu:
        doc = cram_manifest(emu.endpoints, tmp_path / "d", cache, crams=[f"{work}/*.cram"])
        summary = await mirror.run(doc, retry=FAST_RETRY)
    assert (summary.planned, summary.verified, summary.exit_code) == (2, 2, 1)
    assert summary.errors == (
        f"sources[0].cram_refs: cannot list the references of {bad}: "
        "the file ends inside the CRAM header",
    )
    for ref in refs:
        check_entry(cache, ref.md5, ref.bases.upper().encode())
