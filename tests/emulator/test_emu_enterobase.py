"""EnteroBase API v2.0 on its own host: token auth, paging, filters, reldate, 503s, FASTA."""

from __future__ import annotations

import asyncio
import base64
import datetime
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from mirror.emulator import Catalog, Emulator, EnterobaseAssembly, EnterobaseOptions, Fault

from .helpers import emulator_options

PUBLIC = "http://enterobase.warwick.ac.uk"
TODAY = datetime.date(2024, 6, 1)
RECORDS = 120


def basic(token: str, password: str = "") -> dict[str, str]:
    """EnteroBase's scheme: the API token is the Basic user name, the password empty."""
    pair = base64.b64encode(f"{token}:{password}".encode()).decode()
    return {"Authorization": f"Basic {pair}"}


AUTH = basic("test-token")


@pytest.fixture
async def ebase() -> AsyncIterator[Emulator]:
    async with Emulator(
        Catalog.generate_enterobase(records=RECORDS),
        today=TODAY,
        enterobase=EnterobaseOptions(
            rate_limit=None, tokens=("test-token", "old-token"), expired_tokens=("old-token",)
        ),
    ) as emulator:
        yield emulator


def local(emu: Emulator, url: str) -> str:
    """A link as EnteroBase wrote it (http, public host), pointed at the emulator."""
    assert url.startswith(PUBLIC + "/"), url
    return emu.endpoints["enterobase"].removesuffix("/api/v2.0") + url.removeprefix(PUBLIC)


async def get(
    session: aiohttp.ClientSession,
    url: str,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Any:
    async with session.get(url, headers=AUTH if headers is None else headers) as response:
        assert response.status == status, await response.text()
        return await response.json()


async def test_basic_token_auth(ebase: Emulator, session: aiohttp.ClientSession) -> None:
    url = ebase.endpoints["enterobase"] + "/senterica/strains?limit=1"
    assert len((await get(session, url))["Strains"]) == 1
    refused = {
        "missing": {},
        "wrong": basic("nope"),
        "expired": basic("old-token"),
        "token-as-password": basic("", "test-token"),
        "bearer": {"Authorization": "Bearer test-token"},
    }
    for case, headers in refused.items():
        async with session.get(url, headers=headers) as response:
            assert response.status == 401, case
            assert response.headers["WWW-Authenticate"].startswith("Basic")
            assert "error" in await response.json()


async def test_limit_offset_paging_to_the_end(
    ebase: Emulator, session: aiohttp.ClientSession
) -> None:
    url: str | None = ebase.endpoints["enterobase"] + "/senterica/assemblies?limit=50"
    seen: list[str] = []
    pages = []
    while url is not None:
        doc = await get(session, url)
        pages.append(doc)
        seen += [record["assembly_barcode"] for record in doc["Assemblies"]]
        nxt = doc["links"]["paging"].get("next")
        url = local(ebase, nxt) if nxt else None
    assert seen == sorted(r.assembly_barcode for r in ebase.enterobase.records())
    assert [len(p["Assemblies"]) for p in pages] == [50, 50, 20]
    assert {p["links"]["total_records"] for p in pages} == {RECORDS}
    assert pages[-1]["links"]["paging"].get("next") is None
    first_next = pages[0]["links"]["paging"]["next"]
    assert first_next.startswith(f"{PUBLIC}/api/v2.0/senterica/assemblies?")
    assert "offset=50" in first_next
    assert pages[0]["links"]["paging"].get("previous") is None
    record = pages[0]["Assemblies"][0]
    assert record["download_fasta_link"] == (
        f"{PUBLIC}/upload/download?assembly_barcode={record['assembly_barcode']}&database=senterica"
    )
    assert record["download_fastq_link"].endswith("&file_format=fastq")
    assert record["assembly_status"] == "Assembled"
    # Descending, and the end of the list: paging is an empty dict.
    doc = await get(
        session, ebase.endpoints["enterobase"] + "/senterica/assemblies?sortorder=desc&limit=500"
    )
    assert [r["assembly_barcode"] for r in doc["Assemblies"]] == seen[::-1]
    assert doc["links"]["paging"] == {}


async def test_only_fields_both_forms(ebase: Emulator, session: aiohttp.ClientSession) -> None:
    base = ebase.endpoints["enterobase"] + "/senterica/assemblies?limit=5"
    repeated = await get(session, base + "&only_fields=n50&only_fields=download_fasta_link")
    comma = await get(session, base + "&only_fields=n50,download_fasta_link")
    assert repeated["Assemblies"] == comma["Assemblies"]
    assert all(set(r) == {"n50", "download_fasta_link"} for r in repeated["Assemblies"])
    # The real next link keeps only the first value of a repeated parameter (the
    # wiki's own examples): a client following it blindly loses fields.
    nxt = repeated["links"]["paging"]["next"]
    assert "only_fields=n50" in nxt
    assert "download_fasta_link" not in nxt
    following = await get(session, local(ebase, nxt))
    assert all(set(r) == {"n50"} for r in following["Assemblies"])
    # The docs' prose spelling is not a parameter: it is ignored like any unknown one.
    prose = await get(session, base + "&onlyfields=n50")
    assert len(prose["Assemblies"][0]) > 2


async def test_field_filters(ebase: Emulator, session: aiohttp.ClientSession) -> None:
    records = ebase.enterobase.records()
    agona = sorted(r.assembly_barcode for r in records if r.serotype == "Agona")
    assert 0 < len(agona) < RECORDS
    base = ebase.endpoints["enterobase"] + "/senterica"
    doc = await get(session, base + "/assemblies?limit=500&serotype=Agona")
    assert [r["assembly_barcode"] for r in doc["Assemblies"]] == agona
    doc = await get(session, base + "/strains?limit=500&serotype=Agona&assembly_status=Assembled")
    assert {r["serotype"] for r in doc["Strains"]} == {"Agona"}
    assert doc["links"]["total_records"] == len(agona)
    doc = await get(session, base + "/strains?limit=1&serotype=Agona,Typhimurium&no_such=1")
    assert doc["links"]["total_records"] == RECORDS
    one = records[7]
    doc = await get(session, base + f"/assemblies/{one.assembly_barcode}")
    assert [r["n50"] for r in doc["Assemblies"]] == [one.n50]
    assert doc["links"] == {"paging": {}, "records": 1, "total_records": 1}
    doc = await get(session, base + f"/assemblies?barcode={one.assembly_barcode}")
    assert doc["links"]["total_records"] == 1
    doc = await get(session, base + "/assemblies?limit=5&orderby=n50")
    n50s = [r["n50"] for r in doc["Assemblies"]]
    assert n50s == sorted(r.n50 for r in records)[:5]


async def test_reldate_sees_only_runtime_releases(
    ebase: Emulator, session: aiohttp.ClientSession
) -> None:
    url = ebase.endpoints["enterobase"] + "/senterica/assemblies?reldate=1&limit=500"
    assert (await get(session, url))["Assemblies"] == []
    assert ebase.today == TODAY
    released = ebase.enterobase.release("senterica", 3)
    assert {r.release_date for r in released} == {TODAY}
    doc = await get(session, url)
    assert [r["assembly_barcode"] for r in doc["Assemblies"]] == [
        r.assembly_barcode for r in released
    ]
    everything = await get(session, url.replace("reldate=1", "reldate=400"))
    assert everything["links"]["total_records"] == RECORDS + 3
    ebase.set_today(TODAY + datetime.timedelta(days=1))
    assert (await get(session, url))["Assemblies"] == []
    assert len((await get(session, url.replace("reldate=1", "reldate=2")))["Assemblies"]) == 3


async def test_straindata_is_a_dict_by_strain_barcode(
    ebase: Emulator, session: aiohttp.ClientSession
) -> None:
    doc = await get(session, ebase.endpoints["enterobase"] + "/senterica/straindata?limit=5")
    data = doc["straindata"]
    assert isinstance(data, dict)
    records = {r.strain_barcode: r for r in ebase.enterobase.records()}
    assert len(data) == 5
    for barcode, row in data.items():
        assert row["strain_barcode"] == barcode
        assert row["assembly_barcode"] == records[barcode].assembly_barcode
        assert row["download_fasta_link"].startswith(f"{PUBLIC}/upload/download?")
        assert row["serotype"] == records[barcode].serotype


async def test_rate_limit_gives_503_past_three_a_second(session: aiohttp.ClientSession) -> None:
    async with Emulator(Catalog.demo()) as emu:
        url = emu.endpoints["enterobase"] + "/senterica/strains?limit=1"

        async def one() -> tuple[int, str | None]:
            async with session.get(url, headers=AUTH) as response:
                await response.read()
                return response.status, response.headers.get("Retry-After")

        answers = await asyncio.gather(*(one() for _ in range(5)))
        await emu.wait_idle()
        log = emu.log
    assert sorted(answers) == [(200, None)] * 3 + [(503, None)] * 2
    assert sorted((e.status, e.fault) for e in log) == [(200, None)] * 3 + [(503, "rate_limit")] * 2


async def test_download_link_needs_the_token(
    ebase: Emulator, session: aiohttp.ClientSession
) -> None:
    doc = await get(session, ebase.endpoints["enterobase"] + "/senterica/assemblies?limit=1")
    record = doc["Assemblies"][0]
    url = local(ebase, record["download_fasta_link"])
    async with session.get(url) as response:
        assert response.status == 401
    expected = ebase.enterobase.fasta("senterica", record["assembly_barcode"])
    async with session.get(url, headers=AUTH) as response:
        assert response.status == 200
        assert response.headers["Content-Length"] == str(len(expected))
        body = await response.read()
    assert body == expected
    lines = body.decode().splitlines()
    assert lines[0] == ">contig_1"
    assert all(line.startswith(">contig_") or set(line) <= set("ACGT") for line in lines)
    assert all(len(line) <= 60 for line in lines if not line.startswith(">"))
    async with session.get(url, headers={**AUTH, "Range": "bytes=100-"}) as response:
        assert (response.status, await response.read()) == (206, expected[100:])
    async with session.get(local(ebase, record["download_fastq_link"]), headers=AUTH) as response:
        assert response.status == 404


async def test_token_never_reaches_the_log(tmp_path: Path, session: aiohttp.ClientSession) -> None:
    secret = "s3cret-T0KEN-value"
    log_path = tmp_path / "requests.jsonl"
    async with Emulator(
        Catalog.demo(),
        log_path=log_path,
        enterobase=EnterobaseOptions(tokens=(secret,), rate_limit=None),
    ) as emu:
        headers = basic(secret)
        doc = await get(
            session, emu.endpoints["enterobase"] + "/senterica/assemblies?limit=1", 200, headers
        )
        link = local(emu, doc["Assemblies"][0]["download_fasta_link"])
        async with session.get(link, headers=headers) as response:
            assert response.status == 200
            await response.read()
        await emu.wait_idle()
        entries = emu.log
    assert [(e.host, e.path) for e in entries] == [
        ("enterobase", "/api/v2.0/senterica/assemblies"),
        ("enterobase", "/upload/download"),
    ]
    text = log_path.read_text() + repr(entries)
    for needle in (secret, headers["Authorization"].split()[1]):
        assert needle not in text


async def test_faults_on_the_enterobase_host(
    ebase: Emulator, session: aiohttp.ClientSession
) -> None:
    ebase.faults.add(Fault(kind="status", status=502, host="enterobase", times=1))
    ebase.faults.add(Fault(kind="status", status=500, host="www"))
    url = ebase.endpoints["enterobase"] + "/senterica/strains?limit=2"
    async with session.get(url, headers=AUTH) as response:
        assert response.status == 502
    assert len((await get(session, url))["Strains"]) == 2
    await ebase.wait_idle()
    assert [(e.host, e.status, e.fault) for e in ebase.log] == [
        ("enterobase", 502, "status"),
        ("enterobase", 200, None),
    ]


async def test_own_links_when_asked(session: aiohttp.ClientSession) -> None:
    async with Emulator(enterobase=EnterobaseOptions(public_links=False, rate_limit=None)) as emu:
        doc = await get(session, emu.endpoints["enterobase"] + "/senterica/assemblies?limit=2")
        own = emu.endpoints["enterobase"].removesuffix("/api/v2.0")
        assert doc["links"]["paging"]["next"].startswith(own + "/api/v2.0/senterica/assemblies?")
        assert doc["Assemblies"][0]["download_fasta_link"].startswith(own + "/upload/download?")


def test_generator_is_deterministic() -> None:
    catalog = Catalog.generate_enterobase(records=40, seed=3, serotypes=("Agona",))
    assert catalog == Catalog.generate_enterobase(records=40, seed=3, serotypes=("Agona",))
    records = catalog.enterobase_assemblies
    assert records[0].assembly_barcode == "SAL_AA0001AA_AS"
    assert len({r.strain_barcode for r in records}) == 40
    assert {r.serotype for r in records} == {"Agona"}
    assert all(r.release_date < datetime.date(2024, 6, 1) for r in records)
    assert Catalog.from_dict(catalog.to_dict()) == catalog
    assert isinstance(EnterobaseAssembly.generate("ecoli", 1)[0].assembly_barcode, str)
    assert EnterobaseAssembly.generate("ecoli", 1)[0].assembly_barcode.startswith("ESC_")


async def test_cli_serves_mgnify_and_enterobase(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    async with emulator_options(
        "--enterobase-token", "tok-a", "--enterobase-token", "tok-b",
        "--enterobase-rate-limit", "0", "--today", "2024-06-01",
    ) as ready:  # fmt: skip
        endpoints = ready["endpoints"]
        assert endpoints["mgnify"].endswith("/metagenomics/api/v1")
        assert endpoints["enterobase"].endswith("/api/v2.0")
        url = endpoints["enterobase"] + "/senterica/assemblies?reldate=30"
        for token, status in (("tok-b", 200), ("test-token", 401)):
            async with session.get(url, headers=basic(token)) as response:
                assert response.status == status
                if status == 200:
                    assert (await response.json())["links"]["total_records"] == 12
        async with session.get(endpoints["mgnify"] + "/studies/MGYS00005001") as response:
            assert response.status == 200
