"""ffq (pachterlab/ffq, from PyPI) against the emulator, unchanged.

``ffq RUN`` reads the Browser API's ``xml/RUN`` (``https://www.ebi.ac.uk/ena/browser/
api/xml``), follows its ``ENA-FASTQ-FILES`` link (a Portal /filereport URL) and prints
the run's files with MD5s and sizes. It also asks NCBI's E-utilities ``efetch`` for
copies of the run on AWS/GCP/NCBI, on every run lookup; NCBI is not one of the
archives the emulator serves, so the test answers it from a loopback stub with an
empty ``EXPERIMENT_PACKAGE_SET`` (no copies elsewhere), routed like the EBI hosts.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from .emulated import Emulated, emulated, python_of

pytestmark = pytest.mark.clients

RUN = "ERR164407"
_NO_COPIES = (
    '<?xml version="1.0" encoding="UTF-8" ?>\n<EXPERIMENT_PACKAGE_SET>\n</EXPERIMENT_PACKAGE_SET>\n'
)


async def _efetch(_request: web.Request) -> web.Response:
    return web.Response(text=_NO_COPIES, content_type="text/xml")


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[Emulated]:
    async with emulated(tmp_path) as emulated_world:
        app = web.Application()
        app.router.add_get("/entrez/eutils/efetch.fcgi", _efetch)
        runner = web.AppRunner(app)
        await runner.setup()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(emulated_world.tls.cert, emulated_world.tls.key)
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
        await site.start()
        port = runner.addresses[0][1]
        emulated_world.env["EMU_CONNECT"] += f",eutils.ncbi.nlm.nih.gov:443=127.0.0.1:{port}"
        try:
            yield emulated_world
        finally:
            await runner.cleanup()


async def test_ffq_run_metadata_and_files(world: Emulated, tmp_path: Path) -> None:
    done = await world.run(python_of("ffq"), "ffq", RUN, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    run = json.loads(done.stdout)[RUN]
    record = next(world.emu.catalog.runs_for(RUN, "run"))
    assert (run["accession"], run["experiment"], run["study"], run["sample"]) == (
        RUN,
        record.experiment,
        record.secondary_study,
        record.secondary_sample,
    )
    assert run["files"]["ftp"] == [
        {
            "accession": RUN,
            "filename": f.path.rsplit("/", 1)[1],
            "filetype": "fastq",
            "filesize": f.size,
            "filenumber": n,
            "md5": world.emu.ena.file_md5(f.path),
            "urltype": "ftp",
            "url": f"ftp://ftp.sra.ebi.ac.uk/{f.path}",
        }
        for n, f in enumerate(record.fastq, start=1)
    ]
    await world.emu.wait_idle()
    assert [(e.path, e.status) for e in world.emu.log] == [
        (f"/ena/browser/api/xml/{RUN}", 200),
        ("/ena/portal/api/filereport", 200),
    ]


async def test_ffq_ftp_links(world: Emulated, tmp_path: Path) -> None:
    done = await world.run(python_of("ffq"), "ffq", "--ftp", RUN, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    links = json.loads(done.stdout)
    record = next(world.emu.catalog.runs_for(RUN, "run"))
    assert [(x["url"], x["md5"], x["filesize"]) for x in links] == [
        (f"ftp://ftp.sra.ebi.ac.uk/{f.path}", world.emu.ena.file_md5(f.path), f.size)
        for f in record.fastq
    ]


async def test_ffq_unknown_run_fails_as_on_ena(world: Emulated, tmp_path: Path) -> None:
    done = await world.run(python_of("ffq"), "ffq", "ERR9999999", cwd=tmp_path)
    assert done.returncode != 0
    assert "Provided accession is invalid" in done.stderr
