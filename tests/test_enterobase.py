"""EnteroBase end to end: token auth, offset paging, the rate, incremental pulls, secrets."""

from __future__ import annotations

import asyncio
import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml

import mirror
from mirror import SourceTuning, Tuning
from mirror.emulator import Catalog, Emulator, EnterobaseOptions, Fault

from .conftest import FAST_RETRY, mirror_cmd, read_index
from .inproc import mirror_main

TOKEN = "eb-SECRET-token-7f3a9c"


def enterobase_manifest(
    endpoints: dict[str, str], dest: Path, *, rate: float = 25, **source: Any
) -> dict[str, Any]:
    host = endpoints["enterobase"].split("//", 1)[1].split("/", 1)[0]
    return {
        "version": 1,
        "dest": str(dest),
        "workers": 8,
        "endpoints": endpoints,
        # EnteroBase's policy is one request at a time; a test may go faster.
        "hosts": {host: {"rate": rate, "connections": 2}},
        "sources": [{"enterobase": {"database": "senterica", "assemblies": True, **source}}],
    }


def windows(times: list[float]) -> int:
    times = sorted(times)
    j = best = 0
    for i, t in enumerate(times):
        while times[j] <= t - 1.0:
            j += 1
        best = max(best, i - j + 1)
    return best


#: Small pages, so that a few records span several of them.
PAGE = 10


@pytest.mark.slow  # the rate is kept on the real clock the emulator counts it on (over 1 s)
async def test_records_paged_verified_and_the_rate_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 25 records in pages of 10 and their 25 assemblies: 28 requests at 25 a second,
    # which the emulator enforces (a 503 past it).
    monkeypatch.setenv("ENTEROBASE_TOKEN", TOKEN)
    catalog = Catalog.generate_enterobase(records=25, seed=2, serotypes=("Agona",))
    options = EnterobaseOptions(tokens=(TOKEN,), rate_limit=25)
    async with Emulator(catalog, enterobase=options) as emu:
        doc = enterobase_manifest(
            emu.endpoints,
            tmp_path,
            query={"serotype": "Agona"},
            only_fields=["strain_name", "serotype"],
        )
        tuning = Tuning(sources=SourceTuning(enterobase_page=PAGE))
        summary = await mirror.run(doc, retry=FAST_RETRY, tuning=tuning)
        await emu.wait_idle()
        log = [e for e in emu.log if e.host == "enterobase"]
    assert (summary.planned, summary.verified, summary.exit_code) == (25, 25, 0)
    rows = read_index(tmp_path)
    assert len(rows) == 25
    assert {r["status"] for r in rows} == {"verified"}
    for r in rows:
        assert r["path"] == f"enterobase/senterica/{r['accession']}.fasta"
        assert (tmp_path / r["path"]).read_bytes().startswith(b">")
        assert r["verified_by"] == "size"
    kept = (tmp_path / "metadata/enterobase/senterica/assemblies.jsonl").read_text().splitlines()
    assert len(kept) == 25
    assert all("strain_name" in json.loads(line) for line in kept)

    pages = [e for e in log if e.path.endswith("/senterica/assemblies")]
    assert len(pages) == 3  # 10 + 10 + 5, by links.paging.next
    assert [e.status for e in log if e.status != 200] == []
    assert len(log) == 28
    assert windows([e.t for e in log]) <= 25


@pytest.mark.slow  # runs the mirror command in a child process, as a user would
async def test_the_token_is_never_written(tmp_path: Path) -> None:
    catalog = Catalog.generate_enterobase(records=5, seed=2, serotypes=("Agona",))
    options = EnterobaseOptions(tokens=(TOKEN,), rate_limit=25)
    async with Emulator(catalog, enterobase=options) as emu:
        dest = tmp_path / "data"
        manifest = tmp_path / "m.yaml"
        doc = enterobase_manifest(emu.endpoints, dest, only_fields=["strain_name", "serotype"])
        manifest.write_text(yaml.safe_dump(doc))
        run = await asyncio.to_thread(
            mirror_cmd, "run", str(manifest), "--json", "-vvv", env={"ENTEROBASE_TOKEN": TOKEN}
        )
        log = list(emu.log)
    assert run.returncode == 0, run.stderr[-2000:]
    assert {r["status"] for r in read_index(dest)} == {"verified"}
    assert len([e for e in log if e.path.endswith("/upload/download")]) == 5
    # The token is in no output, no log line and no file under dest (the state store too).
    assert "DEBUG" in run.stderr  # -vvv: the debug lines too
    for text in (run.stdout, run.stderr, repr(log)):
        assert TOKEN not in text
    for path in dest.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path


async def test_missing_token_exits_2_before_any_request(tmp_path: Path) -> None:
    async with Emulator(Catalog.generate_enterobase(records=5)) as emu:
        manifest = tmp_path / "m.yaml"
        manifest.write_text(yaml.safe_dump(enterobase_manifest(emu.endpoints, tmp_path / "d")))
        env = {"ENTEROBASE_TOKEN": "", "NETRC": str(tmp_path / "no-netrc")}
        run = await asyncio.to_thread(mirror_main, "run", str(manifest), env=env)
        log = list(emu.log)
    assert run.returncode == 2
    assert "ENTEROBASE_TOKEN is not set" in run.stderr
    assert "Traceback" not in run.stderr
    assert log == []


async def test_refused_token_says_tokens_expire(tmp_path: Path) -> None:
    options = EnterobaseOptions(tokens=(TOKEN,))
    async with Emulator(Catalog.generate_enterobase(records=5), enterobase=options) as emu:
        manifest = tmp_path / "m.yaml"
        manifest.write_text(yaml.safe_dump(enterobase_manifest(emu.endpoints, tmp_path / "d")))
        env = {"ENTEROBASE_TOKEN": "an-old-token"}
        run = await asyncio.to_thread(mirror_main, "run", str(manifest), env=env)
    assert run.returncode == 2
    assert "refused the API token" in run.stderr
    assert "expire every six months" in run.stderr
    assert "an-old-token" not in run.stderr


async def test_reldate_rerun_fetches_only_new_records_and_assemblies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENTEROBASE_TOKEN", TOKEN)
    catalog = Catalog.generate_enterobase(records=15, seed=4)
    async with Emulator(
        catalog,
        enterobase=EnterobaseOptions(tokens=(TOKEN,), rate_limit=None),
        today=date(2024, 6, 1),
    ) as emu:
        # Not about the rate: the emulator keeps none, the host's is set high.
        first = await mirror.run(
            enterobase_manifest(emu.endpoints, tmp_path, rate=1000), retry=FAST_RETRY
        )
        assert (first.planned, first.verified) == (15, 15)
        new = emu.enterobase.release("senterica", 5)
        await emu.wait_idle()
        before = len(emu.log)
        doc = enterobase_manifest(emu.endpoints, tmp_path, rate=1000, reldate=1)
        second = await mirror.run(doc, retry=FAST_RETRY)
        await emu.wait_idle()
        downloads = [e for e in emu.log[before:] if e.path.endswith("/upload/download")]
    new_barcodes = {r.assembly_barcode for r in new}
    assert (second.planned, second.verified, second.failed) == (5, 5, 0)
    assert len(downloads) == 5
    assert {
        q.split("assembly_barcode=")[1].split("&")[0] for q in (e.query for e in downloads)
    } == new_barcodes
    rows = read_index(tmp_path)
    assert len(rows) == 20  # earlier assemblies stay in the index
    kept = (tmp_path / "metadata/enterobase/senterica/assemblies.jsonl").read_text()
    assert len(kept.splitlines()) == 20


@pytest.mark.slow  # one Retry-After pause of a real second (mirror.run takes no clock)
async def test_faults_on_enterobase_still_end_verified(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENTEROBASE_TOKEN", TOKEN)
    faults = [
        Fault(kind="status", host="enterobase", status=503, probability=0.1, times=3),
        Fault(
            kind="status", host="enterobase", status=429, retry_after=1, probability=0.1, times=1
        ),
        Fault(
            kind="reset",
            host="enterobase",
            match="*/upload/download",
            after_bytes=300,
            probability=0.15,
        ),
        Fault(
            kind="truncate",
            host="enterobase",
            match="*/upload/download",
            after_bytes=200,
            probability=0.15,
        ),
    ]
    catalog = Catalog.generate_enterobase(records=30, seed=9)
    async with Emulator(
        catalog,
        faults=faults,
        seed=3,
        enterobase=EnterobaseOptions(tokens=(TOKEN,), rate_limit=None),
    ) as emu:
        # A rate far above what loopback reaches: each 429/503 halves it and the run
        # goes on at full pace (the halving itself is timed in tests/test_gate.py).
        summary = await mirror.run(
            enterobase_manifest(emu.endpoints, tmp_path, rate=1000), retry=FAST_RETRY
        )
        await emu.wait_idle()
        kinds = {e.fault for e in emu.log if e.fault}
        statuses = {e.status for e in emu.log if e.fault == "status"}
        expected = {
            r.assembly_barcode: emu.enterobase.fasta("senterica", r.assembly_barcode)
            for r in catalog.enterobase_assemblies
        }
    assert (summary.planned, summary.verified, summary.failed) == (30, 30, 0)
    assert {"status", "reset", "truncate"} <= kinds
    assert statuses == {429, 503}
    for barcode, data in expected.items():
        assert (tmp_path / f"enterobase/senterica/{barcode}.fasta").read_bytes() == data
