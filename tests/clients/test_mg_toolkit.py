"""MGnify's own toolkit (``mg-toolkit bulk_download``, PyPI ``mg-toolkit``) against the emulator.

mg-toolkit has no option for its API address: ``mg_toolkit.constants.API_BASE`` names
``https://www.ebi.ac.uk/metagenomics/api/latest``. The wrapper below sets that constant
(and the URLs built from it at import) to the emulator's ``/metagenomics/api/latest``
and runs the toolkit's own ``main`` unchanged. Every other address it uses comes from the
API's answers, which the emulator writes on its own host (``mgnify_public_links=False``).
A proxy that refuses every connection stands in for the network: only loopback works.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import os
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from mirror.emulator import Catalog, Emulator, MgnifyOptions

from .conftest import client_bin

pytestmark = pytest.mark.clients

WRAPPER = """
import os, sys
import mg_toolkit.constants as constants
import mg_toolkit  # its package binds the name bulk_download to the function
bulk = sys.modules["mg_toolkit.bulk_download"]
base = os.environ["MGNIFY_API_BASE"].rstrip("/")
urls = {
    "API_BASE": base,
    "MG_ANALYSES_BASE_URL": base + "/analyses",
    "MG_ANALYSES_DOWNLOADS_URL": base + "/analyses/{accession}/downloads",
}
for module in (constants, bulk):
    for name, value in urls.items():
        if hasattr(module, name):
            setattr(module, name, value)
from mg_toolkit.__main__ import main
sys.argv[0] = "mg-toolkit"
sys.exit(main())
"""

# mg-toolkit's own rule: these labels are not downloaded for amplicon analyses.
NON_AMPLICON = {
    "Predicted CDS with annotation",
    "Predicted CDS without annotation",
    "Processed reads with annotation",
    "Processed reads without annotation",
    "Predicted ORF without annotation",
    "Processed reads with pCDS",
}


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(Catalog.demo(), mgnify=MgnifyOptions(public_links=False)) as emulator:
        yield emulator


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(auto_decompress=False) as client:
        yield client


async def mg_toolkit(emu: Emulator, out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    base = emu.endpoints["mgnify"].removesuffix("/v1") + "/latest"
    refused = "http://127.0.0.1:9"  # the discard port: nothing listens
    env = {
        **os.environ,
        "MGNIFY_API_BASE": base,
        "HTTP_PROXY": refused,
        "HTTPS_PROXY": refused,
        "NO_PROXY": "127.0.0.1",
    }
    python = str(client_bin("mg-toolkit", "python"))
    command = [python, "-c", WRAPPER, "bulk_download", *args, "-o", str(out)]
    return await asyncio.to_thread(
        subprocess.run, command, capture_output=True, text=True, timeout=120, env=env
    )


async def expected(
    emu: Emulator, session: aiohttp.ClientSession, project: str, version: str, group: str
) -> dict[Path, tuple[bytes, str]]:
    """Relative path → (bytes the emulator serves, SHA1 it lists or "") for the files
    mg-toolkit's rules select, read from the emulator as any client would."""
    out: dict[Path, tuple[bytes, str]] = {}
    base = emu.endpoints["mgnify"]
    for analysis in emu.catalog.iter_mgnify_analyses():
        if version and analysis.pipeline_version != version:
            continue
        async with session.get(f"{base}/analyses/{analysis.accession}/downloads") as r:
            listed = {d["id"]: d for d in (await r.json())["data"]}
        for item in analysis.downloads:
            subdir = item.group_type.lower().replace(" ", "_")
            if group and subdir != group:
                continue
            if analysis.experiment_type == "amplicon" and item.label in NON_AMPLICON:
                continue
            async with session.get(listed[item.alias]["links"]["self"]) as r:
                body = await r.read()
            sha1 = listed[item.alias]["attributes"]["file-checksum"]["checksum"]
            path = Path(project, analysis.pipeline_version, subdir, item.alias)
            out[path] = (body, sha1)
    return out


def landed(out: Path) -> dict[Path, bytes]:
    return {
        p.relative_to(out): p.read_bytes()
        for p in out.rglob("*")
        if p.is_file() and not p.name.endswith("_metadata.tsv")
    }


async def test_bulk_download_by_ena_study_and_pipeline(
    emu: Emulator, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """``bulk_download -a ERP117001 -p 5.0``: every v5.0 file with its bytes and SHA1."""
    done = await mg_toolkit(emu, tmp_path, "-a", "ERP117001", "-p", "5.0")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Download complete!" in done.stdout
    want = await expected(emu, session, "ERP117001", "5.0", "")
    assert len(want) == 9
    got = landed(tmp_path)
    assert got == {path: body for path, (body, _) in want.items()}
    # The SHA1s the API lists are those of the bytes the toolkit wrote.
    sha1s = {path: sha1 for path, (_, sha1) in want.items() if sha1}
    assert sha1s
    for path, sha1 in sha1s.items():
        assert hashlib.sha1(got[path]).hexdigest() == sha1, path
    table = (tmp_path / "ERP117001" / "ERP117001_metadata.tsv").read_text()
    rows = list(csv.DictReader(table.splitlines(), delimiter="\t"))
    assert sorted(r["name"] for r in rows) == sorted(p.name for p in want)
    assert {r["pipeline_version"] for r in rows} == {"5.0"}
    client_requests = [e for e in emu.log if e.path.startswith("/metagenomics/api/")]
    assert [e for e in client_requests if e.status != 200] == []
    assert any(e.path.startswith("/metagenomics/api/latest/") for e in client_requests)


async def test_bulk_download_one_group_across_pipelines(
    emu: Emulator, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """``-g taxonomic_analysis_ssu_rrna`` over every pipeline: v5.0 and v4.1 write the
    group's name in different cases, and the toolkit files both under one name."""
    done = await mg_toolkit(
        emu, tmp_path, "-a", "MGYS00005001", "-g", "taxonomic_analysis_ssu_rrna"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    want = await expected(emu, session, "MGYS00005001", "", "taxonomic_analysis_ssu_rrna")
    assert {p.parts[1] for p in want} == {"5.0", "4.1"}
    assert landed(tmp_path) == {path: body for path, (body, _) in want.items()}
