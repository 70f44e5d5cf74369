"""MGnify v1 on the www host: JSON:API documents, page-number and cursor paging, files."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from yarl import URL

from mirror.emulator import (
    Catalog,
    Emulator,
    EnaOptions,
    Fault,
    MgnifyAnalysis,
    MgnifyDownload,
    MgnifyOptions,
    MgnifyStudy,
)

PUBLIC = "https://www.ebi.ac.uk/metagenomics/api/v1"
BIG = "MGYS00009001"


@pytest.fixture
async def big() -> AsyncIterator[Emulator]:
    """The demo plus two generated studies of 150 analyses each (300 in all)."""
    catalog = Catalog.demo().merge(Catalog.generate_mgnify(studies=2, analyses=150))
    async with Emulator(catalog, ena=EnaOptions(portal_rate_limit=None)) as emulator:
        yield emulator


def local(emu: Emulator, url: str) -> URL:
    """A link as the API wrote it (public host), pointed at the emulator, as a client must."""
    assert url.startswith(PUBLIC + "/"), url
    # encoded=True: an alias's %2F must reach the server as it was written.
    return URL(emu.endpoints["mgnify"] + url.removeprefix(PUBLIC), encoded=True)


async def get(session: aiohttp.ClientSession, url: str | URL, status: int = 200) -> dict[str, Any]:
    async with session.get(url) as response:
        assert response.status == status, await response.text()
        # emgapi's default renderer: plain application/json for JSON:API documents.
        assert response.headers["Content-Type"] == "application/json"
        doc: dict[str, Any] = await response.json()
    return doc


async def test_page_number_paging_follows_public_next_links(
    big: Emulator, session: aiohttp.ClientSession
) -> None:
    url: str | URL | None = f"{big.endpoints['mgnify']}/studies/{BIG}/analyses?page_size=40"
    seen: list[str] = []
    pages: list[dict[str, Any]] = []
    while url is not None:
        doc = await get(session, url)
        pages.append(doc)
        seen += [item["id"] for item in doc["data"]]
        assert all(item["type"] == "analysis-jobs" for item in doc["data"])
        nxt = doc["links"]["next"]
        url = local(big, nxt) if nxt is not None else None
    study = big.catalog.mgnify_study(BIG)
    assert study is not None
    assert sorted(seen) == sorted(a.accession for a in study.analyses)
    assert [p["meta"]["pagination"] for p in pages] == [
        {"page": n, "pages": 4, "count": 150} for n in (1, 2, 3, 4)
    ]
    first, last = pages[0]["links"], pages[-1]["links"]
    query = "page_size=40"
    assert first == {
        "first": f"{PUBLIC}/studies/{BIG}/analyses?page=1&{query}",
        "last": f"{PUBLIC}/studies/{BIG}/analyses?page=4&{query}",
        "next": f"{PUBLIC}/studies/{BIG}/analyses?page=2&{query}",
        "prev": None,
    }
    assert last["next"] is None
    assert last["prev"] == f"{PUBLIC}/studies/{BIG}/analyses?page=3&{query}"
    # emgapi's default ordering: newest pipeline first.
    versions = [a["attributes"]["pipeline-version"] for p in pages for a in p["data"]]
    assert versions == sorted(versions, reverse=True)
    assert {"4.1", "5.0"} == set(versions)
    analysis = pages[0]["data"][0]
    assert analysis["links"]["self"] == f"{PUBLIC}/analyses/{analysis['id']}"
    downloads = analysis["relationships"]["downloads"]["links"]["related"]
    assert downloads == f"{PUBLIC}/analyses/{analysis['id']}/downloads"
    assert set(analysis["attributes"]) >= {
        "accession",
        "pipeline-version",
        "experiment-type",
        "analysis-status",
        "complete-time",
    }


async def test_page_size_default_cap_and_bad_pages(
    big: Emulator, session: aiohttp.ClientSession
) -> None:
    base = f"{big.endpoints['mgnify']}/analyses"
    total = 303  # 150 + 150 + the demo's 3
    doc = await get(session, base)
    assert (len(doc["data"]), doc["meta"]["pagination"]) == (
        25,
        {"page": 1, "pages": 13, "count": total},
    )
    doc = await get(session, base + "?page_size=1000")
    assert (len(doc["data"]), doc["meta"]["pagination"]["pages"]) == (250, 2)
    assert doc["links"]["next"] == f"{PUBLIC}/analyses?page=2&page_size=1000"
    doc = await get(session, base + "?page_size=abc")
    assert len(doc["data"]) == 25
    doc = await get(session, base + "?page=last&page_size=100")
    assert (len(doc["data"]), doc["meta"]["pagination"]["page"]) == (3, 4)
    for page in ("5", "0", "x"):
        doc = await get(session, f"{base}?page={page}&page_size=100", status=404)
        assert doc["errors"][0]["detail"] == "Invalid page."


async def test_analysis_filters(big: Emulator, session: aiohttp.ClientSession) -> None:
    base = f"{big.endpoints['mgnify']}/analyses?study_accession={BIG}&page_size=250"
    study = big.catalog.mgnify_study(BIG)
    assert study is not None
    doc = await get(session, base + "&pipeline_version=4.1")
    expected = [a.accession for a in study.analyses if a.pipeline_version == "4.1"]
    assert sorted(item["id"] for item in doc["data"]) == expected
    assert doc["meta"]["pagination"]["count"] == len(expected)
    doc = await get(session, base + "&experiment_type=amplicon&pipeline_version=5.0")
    assert {
        (a["attributes"]["experiment-type"], a["attributes"]["pipeline-version"])
        for a in doc["data"]
    } == {("amplicon", "5.0")}
    # The study's ENA accession works too, and the nested route filters the same way.
    by_erp = await get(session, base.replace(BIG, study.secondary_accession))
    assert by_erp["meta"]["pagination"]["count"] == 150
    nested = await get(
        session, f"{big.endpoints['mgnify']}/studies/{BIG}/analyses?pipeline_version=4.1"
    )
    assert nested["meta"]["pagination"]["count"] == len(expected)
    bad = await get(session, base + "&pipeline_version=9.9", status=400)
    assert "9.9 is not one of the available choices" in bad["errors"][0]["detail"]


async def test_downloads_item_shape(emu: Emulator, session: aiohttp.ClientSession) -> None:
    doc = await get(session, f"{emu.endpoints['mgnify']}/analyses/MGYA00005002/downloads")
    assert doc["meta"]["pagination"] == {"page": 1, "pages": 1, "count": 3}
    items = {item["id"]: item for item in doc["data"]}
    otu = items["ERR3477397_MERGED_FASTQ_SSU_OTU.tsv"]
    assert otu == {
        "type": "analysis-job-downloads",
        "id": "ERR3477397_MERGED_FASTQ_SSU_OTU.tsv",
        "attributes": {
            "alias": "ERR3477397_MERGED_FASTQ_SSU_OTU.tsv",
            "description": {
                "label": "OTUs, counts and taxonomic assignments for SSU rRNA",
                "description": "",
            },
            "group-type": "taxonomic analysis SSU rRNA",
            "file-format": {"name": "TSV", "extension": "tsv", "compression": False},
            # Never back-filled: emgapi gives empty strings.
            "file-checksum": {"checksum": "", "checksum-algorithm": ""},
        },
        "relationships": {
            "pipeline": {
                "data": {"type": "pipelines", "id": "4.1"},
                "links": {"related": f"{PUBLIC}/pipelines/4.1"},
            }
        },
        "links": {
            "self": f"{PUBLIC}/analyses/MGYA00005002/file/ERR3477397_MERGED_FASTQ_SSU_OTU.tsv"
        },
    }
    reads = items["ERR3477397_MERGED_FASTQ.fasta.gz"]["attributes"]
    assert reads["file-checksum"] == {
        "checksum": emu.mgnify.download_sha1("MGYA00005002", "ERR3477397_MERGED_FASTQ.fasta.gz"),
        "checksum-algorithm": "SHA1",
    }
    chunked = await get(session, f"{emu.endpoints['mgnify']}/analyses/MGYA00005001/downloads")
    aliases = [item["id"] for item in chunked["data"]]
    assert [a for a in aliases if a.startswith("ERR3477396_MERGED_FASTQ_") and a[24].isdigit()] == [
        f"ERR3477396_MERGED_FASTQ_{n}.fasta.gz" for n in (1, 2, 3)
    ]
    failed = await get(session, f"{emu.endpoints['mgnify']}/analyses/MGYA00005003")
    assert failed["data"]["attributes"]["analysis-status"] == "QC not passed"
    empty = await get(session, f"{emu.endpoints['mgnify']}/analyses/MGYA00005003/downloads")
    assert (empty["data"], empty["meta"]["pagination"]["count"]) == ([], 0)


async def test_file_bytes_match_listed_sha1_and_ranges(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    doc = await get(session, f"{emu.endpoints['mgnify']}/analyses/MGYA00005001/downloads")
    for item in doc["data"]:
        async with session.get(local(emu, item["links"]["self"])) as response:
            body = await response.read()
            assert response.status == 200
            assert response.headers["Content-Type"] == "application/octet-stream"
            disposition = response.headers["Content-Disposition"]
        assert disposition == f"attachment; filename={item['id']}"
        assert hashlib.sha1(body).hexdigest() == item["attributes"]["file-checksum"]["checksum"]
        assert body == emu.mgnify.download_bytes("MGYA00005001", item["id"])
    url = local(emu, doc["data"][0]["links"]["self"])
    whole = emu.mgnify.download_bytes("MGYA00005001", doc["data"][0]["id"])
    async with session.get(url, headers={"Range": "bytes=1000-"}) as response:
        assert response.status == 206
        assert response.headers["Content-Range"] == f"bytes 1000-{len(whole) - 1}/{len(whole)}"
        assert await response.read() == whole[1000:]
        etag = response.headers["ETag"]
    headers = {"Range": "bytes=10-19", "If-Range": etag}
    async with session.get(url, headers=headers) as response:
        assert (response.status, await response.read()) == (206, whole[10:20])
    headers = {"Range": "bytes=10-19", "If-Range": '"changed"'}
    async with session.get(url, headers=headers) as response:
        assert (response.status, await response.read()) == (200, whole)
    async with session.get(url, headers={"Range": f"bytes={len(whole)}-"}) as response:
        assert response.status == 416


async def test_unsafe_alias_is_percent_encoded_and_served(
    session: aiohttp.ClientSession,
) -> None:
    evil = MgnifyDownload(
        alias="../../evil.txt", label="Evil", group_type="Statistics", format_name="TAB", size=99
    )
    study = MgnifyStudy(
        accession="MGYS00000666",
        analyses=(
            MgnifyAnalysis(accession="MGYA00000666", study="MGYS00000666", downloads=(evil,)),
        ),
    )
    async with Emulator(Catalog(mgnify_studies=(study,))) as emu:
        doc = await get(session, f"{emu.endpoints['mgnify']}/analyses/MGYA00000666/downloads")
        (item,) = doc["data"]
        assert item["links"]["self"] == f"{PUBLIC}/analyses/MGYA00000666/file/..%2F..%2Fevil.txt"
        assert item["attributes"]["alias"] == "../../evil.txt"
        async with session.get(local(emu, item["links"]["self"])) as response:
            assert response.status == 200
            assert await response.read() == emu.mgnify.download_bytes(
                "MGYA00000666", "../../evil.txt"
            )


async def test_cursor_pagination(session: aiohttp.ClientSession) -> None:
    downloads = tuple(
        MgnifyDownload(alias=f"part_{n}.tsv", label="Part", group_type="Statistics",
                       format_name="TSV", size=100 + n)
        for n in range(60)
    )  # fmt: skip
    analysis = MgnifyAnalysis(
        accession="MGYA00000777", study="MGYS00000777", downloads=downloads, cursor=True
    )
    study = MgnifyStudy(accession="MGYS00000777", analyses=(analysis,))
    async with Emulator(Catalog(mgnify_studies=(study,))) as emu:
        url: URL | None = URL(f"{emu.endpoints['mgnify']}/analyses/MGYA00000777/downloads")
        pages = []
        while url is not None:
            doc = await get(session, url)
            pages.append(doc)
            assert set(doc["links"]) == {"next", "prev"}
            assert doc["meta"] == {"pagination": {"count": 60}}
            url = local(emu, doc["links"]["next"]) if doc["links"]["next"] else None
        assert [len(p["data"]) for p in pages] == [25, 25, 10]
        assert [i["id"] for p in pages for i in p["data"]] == [d.alias for d in downloads]
        assert pages[0]["links"]["prev"] is None
        assert "cursor=" in pages[0]["links"]["next"]
        back = await get(session, local(emu, pages[2]["links"]["prev"]))
        assert [i["id"] for i in back["data"]] == [d.alias for d in downloads[25:50]]
        bad = await get(
            session, f"{emu.endpoints['mgnify']}/analyses/MGYA00000777/downloads?cursor=%%%", 404
        )
        assert bad["errors"][0]["detail"] == "Invalid cursor"


async def test_not_found_documents(emu: Emulator, session: aiohttp.ClientSession) -> None:
    base = emu.endpoints["mgnify"]
    for path in (
        "/studies/MGYS09999999",
        "/analyses/MGYA09999999",
        "/analyses/MGYA09999999/downloads",
        "/analyses/MGYA00005001/file/nothing.tsv",
    ):
        doc = await get(session, base + path, status=404)
        assert doc["errors"][0]["status"] == "404"
        assert doc["errors"][0]["detail"] == "Not found."


async def test_study_record_and_own_links(session: aiohttp.ClientSession) -> None:
    async with Emulator(mgnify=MgnifyOptions(public_links=False)) as emu:
        doc = await get(session, f"{emu.endpoints['mgnify']}/studies/ERP117001")
        assert doc["data"]["type"] == "studies"
        assert doc["data"]["id"] == "MGYS00005001"
        attributes = doc["data"]["attributes"]
        assert (attributes["bioproject"], attributes["secondary-accession"]) == (
            "PRJEB35001",
            "ERP117001",
        )
        related = doc["data"]["relationships"]["analyses"]["links"]["related"]
        assert related == f"{emu.endpoints['mgnify']}/studies/MGYS00005001/analyses"
        page = await get(session, related + "?page_size=1")
        assert page["links"]["next"].startswith(emu.endpoints["mgnify"] + "/studies/")
        # ?format=json: plain JSON, and every link carries the format on (DRF's reverse).
        async with session.get(related + "?format=json") as response:
            assert response.headers["Content-Type"] == "application/json"
            doc = await response.json()
        assert doc["data"][0]["links"]["self"].endswith("?format=json")


async def test_truncated_document_fault(emu: Emulator, session: aiohttp.ClientSession) -> None:
    emu.faults.add(Fault(kind="truncate", host="www", match="*/downloads", after_bytes=50, times=1))
    url = f"{emu.endpoints['mgnify']}/analyses/MGYA00005001/downloads"
    with pytest.raises(aiohttp.ClientPayloadError):
        async with session.get(url) as response:
            await response.read()
    assert (await get(session, url))["meta"]["pagination"]["count"] == 9
    await emu.wait_idle()
    assert [(e.host, e.status, e.fault) for e in emu.log] == [
        ("www", 200, "truncate"),
        ("www", 200, None),
    ]


def test_generated_study_is_deterministic_and_mixed() -> None:
    study = MgnifyStudy.generate(BIG, analyses=150, seed=0)
    assert study == MgnifyStudy.generate(BIG, analyses=150, seed=0)
    assert study != MgnifyStudy.generate(BIG, analyses=150, seed=1)
    analyses = study.analyses
    downloads = [d for a in analyses for d in a.downloads]
    assert len(analyses) == 150
    assert 8 * 150 <= len(downloads) <= 12 * 150
    assert {a.pipeline_version for a in analyses} == {"4.1", "5.0"}
    assert {d.group_type for d in downloads} >= {
        "Taxonomic analysis SSU rRNA",
        "taxonomic analysis SSU rRNA",
        "Functional analysis",
        "Sequence data",
        "Statistics",
        "non-coding RNAs",
    }
    assert {d.format_name for d in downloads} == {"TSV", "FASTA", "CSV", "JSON", "TAB"}
    assert any(d.alias.endswith("_MERGED_FASTQ_2.fasta.gz") for d in downloads)
    failed = [a for a in analyses if a.status == "QC not passed"]
    assert failed
    assert all(not a.downloads for a in failed)
    assert any(not d.sha1 for d in downloads)
    assert all(1024 <= d.size <= 64 * 1024 for d in downloads)
    catalog = Catalog(mgnify_studies=(study,))
    assert Catalog.from_dict(catalog.to_dict()) == catalog
