"""HTTPS mode, local links, the Browser API's run XML and the taxonomy lookups."""

from __future__ import annotations

import gzip
import hashlib
import ssl
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from mirror.emulator import Catalog, Emulator, EnaOptions, TlsOptions
from mirror.emulator.__main__ import main as emulator_main

from ..tls import TlsFiles, make_ca
from .helpers import emulator_options


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_ca(tmp_path_factory.mktemp("ca"))


@pytest.fixture
async def https_emu(tls: TlsFiles) -> AsyncIterator[Emulator]:
    async with Emulator(
        Catalog.demo(),
        ena=EnaOptions(portal_rate_limit=None),
        tls=TlsOptions(cert=tls.cert, key=tls.key),
    ) as emulator:
        yield emulator


def _trusting(tls: TlsFiles) -> aiohttp.ClientSession:
    context = ssl.create_default_context(cafile=str(tls.ca))
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context))


async def test_https_serves_every_host_and_verifies_against_the_test_ca(
    https_emu: Emulator, tls: TlsFiles
) -> None:
    assert all(url.startswith("https://127.0.0.1:") for url in https_emu.endpoints.values())
    path = "vol1/fastq/ERR164/007/ERR164407/ERR164407_1.fastq.gz"
    async with _trusting(tls) as session:
        async with session.get(https_emu.ena.file_url(path)) as response:
            body = await response.read()
        async with session.get(
            https_emu.ena.file_url(path), headers={"Range": "bytes=100-"}
        ) as response:
            assert response.status == 206
            assert await response.read() == body[100:]
    assert hashlib.md5(body).hexdigest() == https_emu.ena.file_md5(path)
    gzip.decompress(body)
    # Without the CA, verification fails: the TLS path is real.
    async with aiohttp.ClientSession() as plain:
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await plain.get(https_emu.endpoints["ena_portal"] + "/results")


async def test_tls_hosts_choose_which_hosts_speak_https(tls: TlsFiles) -> None:
    async with Emulator(
        Catalog.demo(), tls=TlsOptions(cert=tls.cert, key=tls.key, hosts=["www"])
    ) as emu:
        assert emu.endpoints["ena_portal"].startswith("https://")
        assert emu.endpoints["ena_files"].startswith("http://")


def test_tls_hosts_must_be_emulated_hosts(tls: TlsFiles) -> None:
    with pytest.raises(ValueError, match=r"unknown TLS host\(s\) \['wwww'\]"):
        TlsOptions(cert=tls.cert, key=tls.key, hosts=["wwww"])


async def test_local_links_keep_ftp_values_on_the_file_host(tls: TlsFiles) -> None:
    async with (
        Emulator(
            Catalog.demo(), tls=TlsOptions(cert=tls.cert, key=tls.key), local_links=True
        ) as emu,
        _trusting(tls) as session,
    ):
        url = emu.endpoints["ena_portal"] + "/filereport"
        params = {"accession": "ERR164407", "result": "read_run", "fields": "fastq_ftp,sra_ftp"}
        async with session.get(url, params=params) as response:
            text = await response.text()
        host = emu.endpoints["ena_files"].removeprefix("https://")
        row = dict(zip(*(line.split("\t") for line in text.splitlines()), strict=True))
        assert row["fastq_ftp"] == (
            f"{host}/vol1/fastq/ERR164/007/ERR164407/ERR164407_1.fastq.gz;"
            f"{host}/vol1/fastq/ERR164/007/ERR164407/ERR164407_2.fastq.gz"
        )
        assert row["sra_ftp"].startswith(f"{host}/vol1/")
        async with session.get("https://" + row["fastq_ftp"].split(";")[0]) as response:
            assert response.status == 200


async def test_public_links_by_default(emu: Emulator, session: aiohttp.ClientSession) -> None:
    url = emu.endpoints["ena_portal"] + "/filereport"
    params = {"accession": "ERR164407", "result": "read_run", "fields": "fastq_ftp"}
    async with session.get(url, params=params) as response:
        text = await response.text()
    assert "\tftp.sra.ebi.ac.uk/vol1/fastq/ERR164/007/ERR164407/ERR164407_1.fastq.gz;" in text


async def test_browser_run_xml_as_enas(emu: Emulator, session: aiohttp.ClientSession) -> None:
    async with session.get(emu.endpoints["ena_browser"] + "/xml/ERR164407") as response:
        assert response.status == 200
        assert response.content_type == "application/xml"
        root = ET.fromstring(await response.read())
    run = root.find("RUN")
    assert run is not None
    assert run.findtext("IDENTIFIERS/PRIMARY_ID") == "ERR164407"
    experiment = run.find("EXPERIMENT_REF")
    assert experiment is not None
    assert experiment.get("accession") == run.findtext("EXPERIMENT_REF/IDENTIFIERS/PRIMARY_ID")
    links = {x.findtext("DB"): x.findtext("ID") for x in run.iter("XREF_LINK")}
    record = next(emu.catalog.runs_for("ERR164407", "run"))
    assert links["ENA-STUDY"] == record.secondary_study
    assert links["ENA-SAMPLE"] == record.secondary_sample
    assert links["ENA-FASTQ-FILES"] == (
        "https://www.ebi.ac.uk/ena/portal/api/filereport?accession=ERR164407"
        "&result=read_run&fields=run_accession,fastq_ftp,fastq_md5,fastq_bytes"
    )
    for path in ("/xml/ERR164407/", "/xml/ERR999999"):
        async with session.get(emu.endpoints["ena_browser"] + path) as response:
            assert response.status == 404


async def test_taxonomy_lookups(emu: Emulator, session: aiohttp.ClientSession) -> None:
    base = emu.taxonomy_url
    async with session.get(base + "/scientific-name/Homo%20sapiens") as response:
        assert response.status == 200
        (taxon,) = await response.json()
    assert (taxon["taxId"], taxon["scientificName"]) == ("9606", "Homo sapiens")
    async with session.get(base + "/tax-id/408170") as response:
        assert (await response.json())["scientificName"] == "human gut metagenome"
    async with session.get(base + "/scientific-name/Nonexistent%20thing") as response:
        assert (response.status, await response.text()) == (404, "No results.")


async def test_cli_serves_https(tmp_path: Path, tls: TlsFiles) -> None:
    async with emulator_options(
        "--tls-cert", str(tls.cert), "--tls-key", str(tls.key), "--local-links"
    ) as ready:
        assert ready["endpoints"]["ena_files"].startswith("https://127.0.0.1:")
        async with (
            _trusting(tls) as session,
            session.get(ready["endpoints"]["ena_browser"] + "/xml/ERR164407") as response,
        ):
            text = await response.text()
        assert ready["endpoints"]["ena_portal"] + "/filereport?accession=ERR164407" in text


def test_cli_refuses_a_certificate_without_its_key(
    tls: TlsFiles, capsys: pytest.CaptureFixture[str]
) -> None:
    # Refused before anything is served: the command's main() in this process says it.
    assert emulator_main(["--tls-cert", str(tls.cert)]) == 2
    assert capsys.readouterr().err == "mirror.emulator: --tls-cert and --tls-key go together\n"
