"""EnteroBase end to end: token auth, offset paging, the rate, incremental pulls, secrets."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml

import mirror
from mirror.emulator import Catalog, Emulator, EnterobaseOptions, Fault

from .conftest import FAST_RETRY, mirror_cmd, read_index

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


@pytest.mark.slow  # runs the mirror command (and the emulator) in child processes, as a user would
def test_250_records_paged_verified_rate_kept_and_token_never_written(
    emulator_process: Any, tmp_path: Path
) -> None:
    catalog = Catalog.generate_enterobase(records=250, seed=2, serotypes=("Agona",))
    emu = emulator_process(catalog, "--enterobase-token", TOKEN, "--enterobase-rate-limit", "25")
    dest = tmp_path / "data"
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        yaml.safe_dump(
            enterobase_manifest(
                emu.endpoints,
                dest,
                query={"serotype": "Agona"},
                only_fields=["strain_name", "serotype"],
            )
        )
    )

    run = mirror_cmd("run", str(manifest), "--json", "-vvv", env={"ENTEROBASE_TOKEN": TOKEN})
    assert run.returncode == 0, run.stderr[-2000:]
    rows = read_index(dest)
    assert len(rows) == 250
    assert {r["status"] for r in rows} == {"verified"}
    for r in rows:
        assert r["path"] == f"enterobase/senterica/{r['accession']}.fasta"
        assert (dest / r["path"]).read_bytes().startswith(b">")
        assert r["verified_by"] == "size"
    kept = (dest / "metadata/enterobase/senterica/assemblies.jsonl").read_text().splitlines()
    assert len(kept) == 250
    assert all("strain_name" in json.loads(line) for line in kept)

    log = [e for e in emu.log() if e["host"] == "enterobase"]
    pages = [e for e in log if e["path"].endswith("/senterica/assemblies")]
    assert len(pages) == 3  # 100 + 100 + 50, by links.paging.next
    assert [e["status"] for e in log if e["status"] != 200] == []
    assert windows([e["t"] for e in log]) <= 25

    # The token is in no output, no log line and no file under dest (the state store too).
    for text in (run.stdout, run.stderr, emu.log_path.read_text()):
        assert TOKEN not in text
    for path in dest.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path


@pytest.mark.slow  # runs the mirror command (and the emulator) in child processes, as a user would
def test_missing_token_exits_2_before_any_request(emulator_process: Any, tmp_path: Path) -> None:
    emu = emulator_process(Catalog.generate_enterobase(records=5))
    manifest = tmp_path / "m.yaml"
    manifest.write_text(yaml.safe_dump(enterobase_manifest(emu.endpoints, tmp_path / "d")))
    env = {"ENTEROBASE_TOKEN": "", "NETRC": str(tmp_path / "no-netrc")}
    run = mirror_cmd("run", str(manifest), env=env)
    assert run.returncode == 2
    assert "ENTEROBASE_TOKEN is not set" in run.stderr
    assert "Traceback" not in run.stderr
    assert emu.log() == []


@pytest.mark.slow  # runs the mirror command (and the emulator) in child processes, as a user would
def test_refused_token_says_tokens_expire(emulator_process: Any, tmp_path: Path) -> None:
    emu = emulator_process(Catalog.generate_enterobase(records=5), "--enterobase-token", TOKEN)
    manifest = tmp_path / "m.yaml"
    manifest.write_text(yaml.safe_dump(enterobase_manifest(emu.endpoints, tmp_path / "d")))
    run = mirror_cmd("run", str(manifest), env={"ENTEROBASE_TOKEN": "an-old-token"})
    assert run.returncode == 2
    assert "refused the API token" in run.stderr
    assert "expire every six months" in run.stderr
    assert "an-old-token" not in run.stderr


async def test_reldate_rerun_fetches_only_new_records_and_assemblies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENTEROBASE_TOKEN", TOKEN)
    catalog = Catalog.generate_enterobase(records=40, seed=4)
    async with Emulator(
        catalog,
        enterobase=EnterobaseOptions(tokens=(TOKEN,), rate_limit=None),
        today=date(2024, 6, 1),
    ) as emu:
        first = await mirror.run(enterobase_manifest(emu.endpoints, tmp_path), retry=FAST_RETRY)
        assert (first.planned, first.verified) == (40, 40)
        new = emu.enterobase.release("senterica", 5)
        await emu.wait_idle()
        before = len(emu.log)
        doc = enterobase_manifest(emu.endpoints, tmp_path, reldate=1)
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
    assert len(rows) == 45  # earlier assemblies stay in the index
    kept = (tmp_path / "metadata/enterobase/senterica/assemblies.jsonl").read_text()
    assert len(kept.splitlines()) == 45


@pytest.mark.slow  # the emulator's Retry-After pauses take real seconds (mirror.run takes no clock)
async def test_faults_on_enterobase_still_end_verified(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENTEROBASE_TOKEN", TOKEN)
    faults = [
        Fault(kind="status", host="enterobase", status=503, probability=0.1, times=3),
        Fault(
            kind="status", host="enterobase", status=429, retry_after=1, probability=0.1, times=2
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
    catalog = Catalog.generate_enterobase(records=60, seed=9)
    async with Emulator(
        catalog,
        faults=faults,
        seed=3,
        enterobase=EnterobaseOptions(tokens=(TOKEN,), rate_limit=None),
    ) as emu:
        summary = await mirror.run(
            enterobase_manifest(emu.endpoints, tmp_path, rate=100), retry=FAST_RETRY
        )
        await emu.wait_idle()
        kinds = {e.fault for e in emu.log if e.fault}
        expected = {
            r.assembly_barcode: emu.enterobase.fasta("senterica", r.assembly_barcode)
            for r in catalog.enterobase_assemblies
        }
    assert (summary.planned, summary.verified, summary.failed) == (60, 60, 0)
    assert {"status", "reset", "truncate"} <= kinds
    for barcode, data in expected.items():
        assert (tmp_path / f"enterobase/senterica/{barcode}.fasta").read_bytes() == data
