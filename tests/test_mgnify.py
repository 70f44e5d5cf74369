"""MGnify end to end against the emulator: pages, filters, SHA1, unsafe names, faults."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

import mirror
from mirror import SourceTuning, Tuning
from mirror.emulator import (
    Catalog,
    Emulator,
    Fault,
    MgnifyAnalysis,
    MgnifyDownload,
    MgnifyStudy,
)

from .conftest import FAST_RETRY, read_index

STUDY = "MGYS00009001"


def mgnify_manifest(emu: Emulator, dest: Path, **source: Any) -> dict[str, Any]:
    return {
        "version": 1,
        "dest": str(dest),
        "workers": 8,
        "endpoints": emu.endpoints,
        "sources": [{"mgnify": source}],
    }


def expected_files(
    catalog: Catalog, version: str, groups: set[str], formats: set[str]
) -> dict[str, MgnifyDownload]:
    out = {}
    for analysis in catalog.iter_mgnify_analyses():
        if analysis.pipeline_version != version:
            continue
        for d in analysis.downloads:
            if d.group_type.casefold() in groups and d.format_name.casefold() in formats:
                out[f"mgnify/{analysis.accession}/{d.alias}"] = d
    return out


#: Small pages, so that a few analyses and downloads span several of them.
PAGE = 10
SMALL_PAGES = Tuning(sources=SourceTuning(mgnify_page=PAGE))


async def test_study_of_25_analyses_filtered_ends_with_exactly_the_expected_files(
    tmp_path: Path,
) -> None:
    # 25 analyses, 18 of them pipeline 5.0: the filtered listing is two pages of 10.
    catalog = Catalog.generate_mgnify(seed=6, analyses=25)
    assert sum(a.pipeline_version == "5.0" for a in catalog.iter_mgnify_analyses()) == 18
    groups = {"taxonomic analysis ssu rrna", "functional analysis"}
    formats = {"tsv", "fasta"}
    expected = expected_files(catalog, "5.0", groups, formats)
    assert len(expected) > 40
    async with Emulator(catalog) as emu:
        doc = mgnify_manifest(
            emu,
            tmp_path,
            studies=[STUDY],
            pipeline_version="5.0",
            groups=["Taxonomic analysis SSU rRNA", "FUNCTIONAL ANALYSIS"],
            formats=["tsv", "FASTA"],
        )
        summary = await mirror.run(doc, retry=FAST_RETRY, tuning=SMALL_PAGES)
        await emu.wait_idle()
        log = emu.log
        for path, d in expected.items():
            analysis = path.split("/")[1]
            assert (tmp_path / path).read_bytes() == emu.mgnify.download_bytes(analysis, d.alias)

        before = len(emu.log)
        again = await mirror.run(doc, retry=FAST_RETRY, tuning=SMALL_PAGES)
        await emu.wait_idle()
        rerun_files = [e for e in emu.log[before:] if "/file/" in e.path]

    assert (summary.planned, summary.verified, summary.failed) == (len(expected),) * 2 + (0,)
    assert summary.exit_code == 0
    rows = {r["path"]: r for r in read_index(tmp_path)}
    assert set(rows) == set(expected)
    for path, d in expected.items():
        row = rows[path]
        assert row["status"] == "verified"
        assert row["verified_by"] == ("sha1" if d.sha1 else "size")
        assert row["md5"] == hashlib.md5((tmp_path / path).read_bytes()).hexdigest()
    # The analyses list spans two pages, fetched with the page size asked for.
    listing = [e for e in log if e.path.endswith(f"/studies/{STUDY}/analyses")]
    assert len(listing) == 2
    assert all(
        f"page_size={PAGE}" in e.query and "pipeline_version=5.0" in e.query for e in listing
    )
    # Each analysis's JSON record is kept.
    kept = {p.stem for p in (tmp_path / "metadata" / "mgnify").glob("MGYA*.json")}
    assert {p.split("/")[1] for p in expected} <= kept
    assert (again.verified, again.skipped, again.exit_code) == (len(expected),) * 2 + (0,)
    assert rerun_files == []


async def test_cursor_paged_downloads_and_analyses_without_downloads(tmp_path: Path) -> None:
    catalog = Catalog.generate_mgnify(seed=5, analyses=12, cursor=True)
    async with Emulator(catalog) as emu:
        doc = mgnify_manifest(emu, tmp_path, studies=[STUDY])
        warnings: list[str] = []
        # Pages of 4: each list of 11 downloads is three pages, two of them by cursor.
        tuning = Tuning(sources=SourceTuning(mgnify_page=4))
        async with mirror.Mirror(doc, retry=FAST_RETRY, tuning=tuning) as m:
            async for event in m.events():
                if event.kind == "warning":
                    warnings.append(getattr(event, "message", ""))
        cursors = [e for e in emu.log if e.path.endswith("/downloads") and "cursor=" in e.query]
    everything = sum(len(a.downloads) for a in catalog.iter_mgnify_analyses())
    assert (m.summary.planned, m.summary.verified) == (everything, everything)
    # Lists of more than a page were walked by their cursors (links.next).
    pages = [max(1, -(-len(a.downloads) // 4)) for a in catalog.iter_mgnify_analyses()]
    assert len(cursors) == sum(n - 1 for n in pages)
    assert len(cursors) > 10
    # Older analyses were never back-filled with SHA1s: checked by size instead.
    assert {r["verified_by"] for r in read_index(tmp_path)} == {"sha1", "size"}
    no_downloads = [a.accession for a in catalog.iter_mgnify_analyses() if not a.downloads]
    assert no_downloads
    for acc in no_downloads:
        assert any(acc in w and "no downloads" in w for w in warnings)


async def test_a_filter_that_matches_nothing_fails_the_entry_naming_what_exists(
    tmp_path: Path,
) -> None:
    catalog = Catalog.generate_mgnify(seed=5, analyses=6)
    formats = sorted(
        {d.format_name for a in catalog.iter_mgnify_analyses() for d in a.downloads},
        key=str.casefold,
    )
    async with Emulator(catalog) as emu:
        doc = mgnify_manifest(emu, tmp_path, studies=[STUDY], formats=["TSVV"])
        summary = await mirror.run(doc, retry=FAST_RETRY)
        files = [e for e in emu.log if "/file/" in e.path]
    assert (summary.planned, summary.exit_code, files) == (0, 1, [])
    [error] = summary.errors
    assert error.startswith("sources[0].mgnify: nothing to download: ")
    assert f"formats 'TSVV' matched no download (the formats listed: {', '.join(formats)})" in (
        error
    )


async def test_one_filter_value_that_matches_nothing_is_a_warning(tmp_path: Path) -> None:
    catalog = Catalog.generate_mgnify(seed=5, analyses=6)
    async with Emulator(catalog) as emu:
        doc = mgnify_manifest(emu, tmp_path, studies=[STUDY], formats=["TSV", "tssv"])
        warnings: list[str] = []
        async with mirror.Mirror(doc, retry=FAST_RETRY) as m:
            async for event in m.events():
                if event.kind == "warning":
                    warnings.append(getattr(event, "message", ""))
    assert m.summary.planned == m.summary.verified > 0
    assert m.summary.exit_code == 0
    assert [w for w in warnings if "matched no download" in w] == [
        w for w in warnings if w.startswith("MGnify: formats 'tssv' matched no download")
    ]
    assert any("matched no download" in w for w in warnings)


def _files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def evil_catalog() -> Catalog:
    downloads = (
        MgnifyDownload(
            alias="good.tsv",
            label="x",
            group_type="Functional analysis",
            format_name="TSV",
            size=4000,
        ),
        MgnifyDownload(
            alias="../../evil.txt",
            label="x",
            group_type="Functional analysis",
            format_name="TSV",
            size=100,
        ),
    )
    analysis = MgnifyAnalysis(accession="MGYA00007001", study="MGYS00007001", downloads=downloads)
    return Catalog(mgnify_studies=(MgnifyStudy(accession="MGYS00007001", analyses=(analysis,)),))


async def test_unsafe_alias_fails_alone_and_nothing_lands_outside_dest(tmp_path: Path) -> None:
    dest = tmp_path / "inside" / "dest"
    async with Emulator(evil_catalog()) as emu:
        summary = await mirror.run(
            mgnify_manifest(emu, dest, analyses=["MGYA00007001"]), retry=FAST_RETRY
        )
        await emu.wait_idle()
        requested = [e.path for e in emu.log if "/file/" in e.path]
    assert (summary.planned, summary.verified, summary.failed, summary.exit_code) == (2, 1, 1, 1)
    landed = sorted(str(p.relative_to(tmp_path)) for p in _files_under(tmp_path))
    assert "inside/dest/mgnify/MGYA00007001/good.tsv" in landed
    assert not any(p.endswith("evil.txt") for p in landed)
    assert all("evil" not in p for p in requested)
    (row,) = [r for r in read_index(dest) if r["status"] == "failed"]
    assert "unsafe file name '../../evil.txt'" in row["reason"]


@pytest.mark.slow  # one Retry-After pause of a real second (mirror.run takes no clock)
async def test_faults_on_the_api_and_files_still_end_verified(tmp_path: Path) -> None:
    catalog = Catalog.generate_mgnify(seed=8, analyses=10)
    faults = [
        Fault(kind="status", host="www", status=429, retry_after=1, probability=0.1, times=1),
        Fault(kind="status", host="www", status=503, probability=0.1, times=2),
        Fault(kind="reset", host="www", match="*/file/*", after_bytes=1000, probability=0.1),
        Fault(kind="truncate", host="www", match="*/file/*", after_bytes=500, probability=0.1),
    ]
    async with Emulator(catalog, faults=faults, seed=4) as emu:
        doc = mgnify_manifest(emu, tmp_path, studies=[STUDY])
        # A configured rate, as www.ebi.ac.uk has one, far above what loopback reaches:
        # each 429/503 halves it and the run goes on at full pace. (An unconfigured host
        # is held at the pace it had when it first complained, 3 requests a second here,
        # until it recovers; tests/test_gate.py times that on a virtual clock.)
        host = emu.endpoints["mgnify"].split("//", 1)[1].split("/", 1)[0]
        doc["hosts"] = {host: {"rate": 1000}}
        summary = await mirror.run(doc, retry=FAST_RETRY)
        await emu.wait_idle()
        statuses = {e.status for e in emu.log if e.fault == "status"}
        kinds = {e.fault for e in emu.log if e.fault}
        files = {
            f"mgnify/{a.accession}/{d.alias}": emu.mgnify.download_bytes(a.accession, d.alias)
            for a in catalog.iter_mgnify_analyses()
            for d in a.downloads
        }
    assert (summary.planned, summary.verified, summary.failed) == (len(files), len(files), 0)
    assert {"status", "reset", "truncate"} <= kinds
    assert statuses == {429, 503}
    for path, data in files.items():
        assert (tmp_path / path).read_bytes() == data
