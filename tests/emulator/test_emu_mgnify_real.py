"""The emulated MGnify API against answers rendered by MGnify's own server code.

The recordings (``tests/fixtures/real-responses/mgnify/``) describe study MGYS00000001
(ENA ERP136943) with one analysis, MGYA00000001, and its 47 downloads. The emulator is
given the same records, so its documents can be compared with the recorded ones: the
same keys in the same places, the same value types, the same links, the same errors.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from mirror.emulator import Catalog, Emulator, MgnifyAnalysis, MgnifyDownload, MgnifyStudy
from tests.replay import RECORDINGS

RECORDED = RECORDINGS / "mgnify"
PUBLIC = "https://www.ebi.ac.uk/metagenomics/api/v1"
INDEX: dict[str, dict[str, Any]] = json.loads((RECORDED / "_index.json").read_text())


def recorded(name: str) -> Any:
    return json.loads((RECORDED / name).read_text())


def recorded_study() -> MgnifyStudy:
    """MGYS00000001 as the recordings describe it, for the emulator to serve."""
    study = recorded("study_MGYS00000001.json")["data"]
    analysis = recorded("analysis_MGYA00000001.json")["data"]
    items = recorded("analysis_MGYA00000001_downloads_ps100.json")["data"]
    downloads = tuple(
        MgnifyDownload(
            alias=item["attributes"]["alias"],
            label=item["attributes"]["description"]["label"],
            description=item["attributes"]["description"]["description"],
            group_type=item["attributes"]["group-type"],
            format_name=item["attributes"]["file-format"]["name"],
            format_extension=item["attributes"]["file-format"]["extension"],
            compression=item["attributes"]["file-format"]["compression"],
            size=1000 + n,
            sha1=bool(item["attributes"]["file-checksum"]["checksum"]),
            pipeline=item["relationships"]["pipeline"]["data"]["id"],
        )
        for n, item in enumerate(items)
    )
    attrs = analysis["attributes"]
    rel = analysis["relationships"]
    return MgnifyStudy(
        accession=study["id"],
        bioproject=study["attributes"]["bioproject"],
        secondary_accession=study["attributes"]["secondary-accession"],
        name=study["attributes"]["study-name"],
        biomes=tuple(b["id"] for b in study["relationships"]["biomes"]["data"]),
        analyses=(
            MgnifyAnalysis(
                accession=analysis["id"],
                study=study["id"],
                pipeline_version=attrs["pipeline-version"],
                experiment_type=attrs["experiment-type"],
                sample=rel["sample"]["data"]["id"],
                assembly=rel["assembly"]["data"]["id"],
                downloads=downloads,
                complete_time=attrs["complete-time"],
                instrument_platform=attrs["instrument-platform"],
                instrument_model=attrs["instrument-model"],
            ),
        ),
    )


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(Catalog(mgnify_studies=(recorded_study(),))) as emulator:
        yield emulator


def shape(value: Any) -> Any:
    """Keys and value types, lists as the shape of their first item.

    Key order is not compared: emgapi's own order follows a Python set for some objects.
    """
    if isinstance(value, dict):
        return sorted((key, shape(item)) for key, item in value.items())
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__


def resources(doc: dict[str, Any]) -> list[dict[str, Any]]:
    data = doc["data"]
    return data if isinstance(data, list) else [data]


async def fetch(
    session: aiohttp.ClientSession, emu: Emulator, path: str, *, prefix: str = "v1"
) -> tuple[int, str, Any]:
    """``path`` (as the recordings' index names it, ``/v1/...``) asked of the emulator."""
    base = emu.endpoints["mgnify"].removesuffix("/v1") + "/" + prefix
    async with session.get(base + path.removeprefix("/v1")) as response:
        return response.status, response.content_type, await response.json()


# pv41: the test database behind the recordings has no 4.1 pipeline, the public service
# has; the emulator's choices are the public ones (the 400 is checked with pv5).
@pytest.mark.parametrize(
    "name", sorted(n for n in INDEX if "downloads" not in n and not n.endswith("pv41.json"))
)
async def test_studies_and_analyses_as_recorded(
    emu: Emulator, session: aiohttp.ClientSession, name: str
) -> None:
    """Status, content type, top-level links and every object's shape, for each recording."""
    want = INDEX[name]
    status, kind, doc = await fetch(session, emu, want["path"])
    real = recorded(name)
    assert (status, kind) == (want["status"], want["content_type"])
    if "errors" in real:
        # The JSON:API exception handler's document as recorded (no "source" on a 404).
        assert doc == real
        return
    assert shape(doc) == shape(real)
    assert doc.get("links") == real.get("links")
    assert doc.get("meta") == real.get("meta")
    for got, expected in zip(resources(doc), resources(real), strict=True):
        assert got["links"] == expected["links"]
        if got["type"] != "analysis-jobs":
            continue
        # An analysis: every attribute and relationship (links and ids) as recorded;
        # only the summary is the emulator's own.
        assert shape(got) == shape(expected)
        assert got["relationships"] == expected["relationships"]
        assert {k: v for k, v in got["attributes"].items() if k != "analysis-summary"} == {
            k: v
            for k, v in expected["attributes"].items()
            if k not in ("analysis-summary", "last-update")
        } | {"last-update": got["attributes"]["complete-time"]}


async def test_study_relationships_and_attributes_as_recorded(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    _, _, doc = await fetch(session, emu, "/v1/studies/MGYS00000001")
    real = recorded("study_MGYS00000001.json")["data"]
    got = doc["data"]
    assert list(got["attributes"]) == list(real["attributes"])
    assert got["attributes"]["is-private"] is False
    assert got["relationships"] == real["relationships"]
    assert got["links"] == real["links"]


@pytest.mark.parametrize("name", sorted(n for n in INDEX if "_downloads" in n))
async def test_download_pages_as_recorded(
    emu: Emulator, session: aiohttp.ClientSession, name: str
) -> None:
    """Page size, page number and every link of each recorded downloads page."""
    want = INDEX[name]
    status, kind, doc = await fetch(session, emu, want["path"])
    real = recorded(name)
    assert (status, kind) == (want["status"], want["content_type"])
    assert doc["links"] == real["links"]
    assert doc["meta"] == real["meta"]
    assert len(doc["data"]) == len(real["data"])
    for got, expected in zip(doc["data"], real["data"], strict=True):
        assert shape(got) == shape(expected)
        assert got["links"] == expected["links"]
        assert got["relationships"] == expected["relationships"]
        checksum = got["attributes"].pop("file-checksum")
        recorded_checksum = expected["attributes"].pop("file-checksum")
        assert got["attributes"] == expected["attributes"]
        # The recorded SHA1 is an invented value; the emulator's is that of its bytes.
        assert checksum["checksum-algorithm"] == recorded_checksum["checksum-algorithm"]
        assert bool(checksum["checksum"]) == bool(recorded_checksum["checksum"])


async def test_latest_is_v1(emu: Emulator, session: aiohttp.ClientSession) -> None:
    """``/api/latest`` (mg-toolkit's base) answers as ``/api/v1``, links naming v1."""
    for path in ("/v1/studies/ERP136943/analyses?page_size=100", "/v1/analyses/MGYA00000001"):
        assert await fetch(session, emu, path, prefix="latest") == await fetch(session, emu, path)
    status, _, doc = await fetch(
        session, emu, "/v1/analyses?study_accession=ERP136943&pipeline_version=5.0", prefix="latest"
    )
    assert status == 200
    assert [a["id"] for a in doc["data"]] == ["MGYA00000001"]
    url = doc["data"][0]["relationships"]["downloads"]["links"]["related"]
    assert url == f"{PUBLIC}/analyses/MGYA00000001/downloads"
    base = emu.endpoints["mgnify"].removesuffix("/v1") + "/latest"
    alias = "ERZ8153470_FASTA.fasta.gz"
    async with session.get(f"{base}/analyses/MGYA00000001/file/{alias}") as latest:
        body = await latest.read()
    async with session.get(f"{emu.endpoints['mgnify']}/analyses/MGYA00000001/file/{alias}") as v1:
        assert body == await v1.read()
    assert len(body) == 1000


@pytest.mark.parametrize("accession", ["MGYS00000001", "ERP136943", "PRJEB52249", "MGYS1"])
async def test_study_by_any_accession_emgapi_takes(
    emu: Emulator, session: aiohttp.ClientSession, accession: str
) -> None:
    """emgapi's study lookup: the MGYS number, the ENA study or the BioProject."""
    status, _, doc = await fetch(session, emu, f"/v1/studies/{accession}/analyses")
    assert status == 200
    assert [a["id"] for a in doc["data"]] == ["MGYA00000001"]
    status, _, doc = await fetch(session, emu, f"/v1/studies/{accession}")
    assert (status, doc["data"]["id"]) == (200, "MGYS00000001")
