"""MGnify API v2 end to end against the emulator: paged analyses, size and v1 SHA1
verification, ENA accessions, private data behind a Webin JWT and expiring signed links."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

import mirror
from mirror._config import HostLimit
from mirror._credentials import Secret
from mirror._exceptions import CredentialsError, ManifestError
from mirror._http import Http
from mirror._manifest import load_manifest
from mirror._metadata import MetadataWriter
from mirror._models import WarningEvent
from mirror._seam import SourceContext
from mirror.emulator import (
    Catalog,
    Emulator,
    Fault,
    MgnifyAnalysis,
    MgnifyDownload,
    MgnifyOptions,
    MgnifyStudy,
)
from mirror.emulator._content import content_bytes
from mirror.emulator.mgnify._records import download_key
from mirror.emulator.mgnify._v2 import index_size
from mirror.sources.mgnify import MgnifySpec
from mirror.sources.mgnify_v2 import MgnifyV2Source, normal_pipeline
from mirror.sources.mgnify_webin import WebinLogin, WebinSession

from .conftest import FAST_RETRY, read_index

STUDY = "MGYS00009101"
PRIVATE = "MGYA91010151"
USER, PASSWORD = "Webin-1001", "emulated-webin-password"
WEBIN = {"MGNIFY_WEBIN_USER": USER, "MGNIFY_WEBIN_PASSWORD": PASSWORD}


def manifest(emu: Emulator, dest: Path, **source: Any) -> dict[str, Any]:
    return {
        "version": 1,
        "dest": str(dest),
        "workers": 8,
        "endpoints": emu.endpoints,
        "sources": [{"mgnify": {"api": "v2", **source}}],
    }


def expected_files(catalog: Catalog, *, private: bool = False) -> dict[str, bytes]:
    """Every file the v2 study serves (index files too), by mirror path."""
    out: dict[str, bytes] = {}
    for analysis in catalog.iter_mgnify_analyses():
        if bool(analysis.owner) and not private:
            continue
        for d in analysis.downloads:
            key = download_key(analysis.accession, d.alias)
            path = f"mgnify/{analysis.accession}/{d.alias}"
            out[path] = content_bytes(key, d.size)
            for kind in d.index_types:
                out[f"{path}.{kind}"] = content_bytes(f"{key}.{kind}", index_size(d.size))
    return out


def stored(root: Path) -> dict[Path, bytes]:
    """Every file under ``root`` (files, index, metadata, state store) and its bytes."""
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


def legacy(catalog: Catalog) -> list[str]:
    return [
        a.accession
        for a in catalog.iter_mgnify_analyses()
        if not a.owner and float(a.pipeline_version) < 6
    ]


async def test_study_of_150_analyses_two_pages_every_file_verified(tmp_path: Path) -> None:
    catalog = Catalog.generate_mgnify_v2(seed=3, analyses=150)
    expected = expected_files(catalog)
    old = legacy(catalog)
    async with Emulator(catalog) as emu:
        wrong_alias = "taxonomy"
        wrong = old[0]
        emu.mgnify.wrong_sha1(wrong, wrong_alias)
        summary = await mirror.run(manifest(emu, tmp_path, studies=[STUDY]), retry=FAST_RETRY)
        await emu.wait_idle()
        log = emu.log

    wrong_path = f"mgnify/{wrong}/{wrong_alias}"
    # 150 analyses, two files each, and a .fai for each of the 50 V6 contigs.
    assert len(expected) == 350
    assert (summary.planned, summary.verified, summary.failed) == (350, 349, 1)
    assert summary.exit_code == 1
    rows = {r["path"]: r for r in read_index(tmp_path)}
    for path, data in expected.items():
        if path == wrong_path:
            assert not (tmp_path / path).exists()
            continue
        assert (tmp_path / path).read_bytes() == data, path
        analysis = path.split("/")[1]
        by_sha1 = analysis in old and not path.endswith(".fai")
        assert rows[path]["verified_by"] == ("sha1" if by_sha1 else "size"), path
        assert rows[path]["md5"] == hashlib.md5(data).hexdigest()
    assert rows[wrong_path]["status"] == "failed"
    assert "SHA1 mismatch" in rows[wrong_path]["reason"]
    assert wrong_path in rows[wrong_path]["reason"]

    api = [e for e in log if e.path.startswith("/metagenomics/api/v2/")]
    pages = [e for e in api if e.path.endswith(f"/studies/{STUDY}/analyses/")]
    # The count (150) and the capped page (100) say two pages: no empty third one.
    assert sorted(e.query for e in pages) == ["page=1&page_size=100", "page=2&page_size=100"]
    analyses = [e for e in api if "/analyses/MGYA" in e.path]
    assert len(analyses) == 150
    assert len({e.path for e in analyses}) == 150
    study = [e for e in api if e.path.endswith(f"/studies/{STUDY}")]
    assert len(study) == 1
    assert len(api) == 1 + 2 + 150
    # One v1 listing per legacy analysis (its files fit one page), none for V6 ones.
    v1 = [e for e in log if e.path.startswith("/metagenomics/api/v1/")]
    assert sorted(e.path for e in v1) == sorted(
        f"/metagenomics/api/v1/analyses/{a}/downloads" for a in old
    )
    assert len(v1) == 100
    files = [e for e in log if e.path.startswith("/pub/databases/metagenomics/mgnify_results/")]
    # Each file fetched once, but the one whose v1 SHA1 is wrong (tried again, 3 times).
    assert len(files) == 349 + 3


async def test_filters_pipeline_spellings_groups_and_formats(tmp_path: Path) -> None:
    catalog = Catalog.generate_mgnify_v2(seed=3, analyses=12, private=0)
    async with Emulator(catalog) as emu:
        summary = await mirror.run(
            manifest(
                emu,
                tmp_path,
                studies=[STUDY],
                pipeline_version="6.0",
                groups=["SEQUENCE DATA"],
                formats=["fasta"],
            ),
            retry=FAST_RETRY,
        )
    v6 = [a for a in catalog.iter_mgnify_analyses() if a.pipeline_version == "6.0"]
    planned = {r["path"] for r in read_index(tmp_path)}
    assert planned == {
        p
        for a in v6
        for p in (
            f"mgnify/{a.accession}/{a.downloads[0].alias}",
            f"mgnify/{a.accession}/{a.downloads[0].alias}.fai",
        )
    }
    assert summary.exit_code == 0
    assert [normal_pipeline(v) for v in ("V5", "5.0", "5", "v4.1", "4.1", "V6.1")] == [
        "5",
        "5",
        "5",
        "4.1",
        "4.1",
        "6.1",
    ]


async def test_ena_accession_by_insdc_route_and_by_search_fallback(tmp_path: Path) -> None:
    catalog = Catalog.generate_mgnify_v2(seed=1, analyses=3, private=0)
    expected = expected_files(catalog)
    for deployed in (True, False):
        dest = tmp_path / str(deployed)
        async with Emulator(catalog, mgnify=MgnifyOptions(insdc_route=deployed)) as emu:
            summary = await mirror.run(manifest(emu, dest, studies=["ERP169101"]), retry=FAST_RETRY)
            await emu.wait_idle()
            asked = [
                (e.path.removeprefix("/metagenomics/api/v2"), e.query, e.status)
                for e in emu.log
                if e.path.startswith("/metagenomics/api/v2/studies")
            ]
        assert summary.verified == len(expected)
        assert {r["path"] for r in read_index(dest)} == set(expected)
        if deployed:
            assert asked[0] == ("/studies/insdc/ERP169101", "", 200)
            assert not any(path == "/studies/" for path, _, _ in asked)
        else:
            assert asked[0] == ("/studies/insdc/ERP169101", "", 404)
            assert asked[1] == ("/studies/", "search=ERP169101&page_size=100", 200)
        assert (f"/studies/{STUDY}/analyses/", "page=1&page_size=100", 200) in asked


async def test_private_analysis_without_login_is_not_found_and_public_rest_lands(
    tmp_path: Path,
) -> None:
    catalog = Catalog.generate_mgnify_v2(seed=1, analyses=2, private=1)
    async with Emulator(catalog) as emu:
        summary = await mirror.run(
            manifest(emu, tmp_path, analyses=[PRIVATE, "MGYA91010001"]), retry=FAST_RETRY
        )
        await emu.wait_idle()
        statuses = [e.status for e in emu.log if e.path.endswith(f"/analyses/{PRIVATE}")]
    assert statuses == [404]
    assert summary.verified == 3
    assert summary.exit_code == 0


async def test_private_links_expire_mid_file_and_resume_with_a_fresh_link(
    tmp_path: Path,
) -> None:
    size = 256 * 1024
    catalog = Catalog.generate_mgnify_v2(seed=1, analyses=0, private=1, private_size=size)
    analysis = next(catalog.iter_mgnify_analyses())
    alias = analysis.downloads[0].alias
    async with Emulator(catalog, mgnify=MgnifyOptions(link_lifetime=600), seed=1) as emu:
        # The first request is cut after 100 KiB; when it ends, an hour has passed.
        emu.faults.add(
            Fault(
                kind="truncate",
                host="www",
                match="*/private-data/*",
                after_bytes=100 * 1024,
                times=1,
            )
        )
        emu.mgnify.advance_after(analysis.accession, 3600)
        summary = await mirror.run(
            manifest(emu, tmp_path, analyses=[analysis.accession]),
            retry=FAST_RETRY,
            credentials=WEBIN,
        )
        await emu.wait_idle()
        log = emu.log
        targets = emu.mgnify.private_targets
    path = tmp_path / f"mgnify/{analysis.accession}/{alias}"
    assert summary.exit_code == 0
    assert path.read_bytes() == emu.mgnify.download_bytes(analysis.accession, alias)
    files = [e for e in log if "/private-data/" in e.path]
    assert [(e.status, e.range) for e in files] == [
        (200, None),
        (410, "bytes=102400-"),
        (206, "bytes=102400-"),
    ]
    # Resumed, not started again: the bytes sent add up to the file once.
    assert sum(e.bytes for e in files if e.status in (200, 206)) == size
    # The fresh link came from the analysis, asked for again (with the JWT).
    details = [e for e in log if e.path.endswith(f"/analyses/{analysis.accession}")]
    assert [e.status for e in details] == [200, 200]
    assert targets[1] == targets[0]
    assert targets[2] != targets[1]
    # Neither the password, a JWT (base64url JSON: "eyJ…") nor a link's signature is
    # kept anywhere: not in the files, the index, the metadata or the state store.
    for kept, data in stored(tmp_path).items():
        assert PASSWORD.encode() not in data, kept
        assert b"eyJ" not in data, kept
        assert re.search(rb"token=[0-9a-f]{64}", data) is None, kept
    assert PASSWORD not in repr(log)
    assert "eyJ" not in repr(log)
    logins = [e for e in log if e.path.endswith("/auth/sliding")]
    assert len(logins) == 1
    assert logins[0].form is None


async def test_signed_link_sent_byte_for_byte(tmp_path: Path) -> None:
    catalog = Catalog.generate_mgnify_v2(seed=1, analyses=0, private=1, private_size=4096)
    analysis = next(catalog.iter_mgnify_analyses())
    async with Emulator(catalog) as emu:
        summary = await mirror.run(
            manifest(emu, tmp_path, analyses=[analysis.accession]),
            retry=FAST_RETRY,
            credentials=WEBIN,
        )
        targets = emu.mgnify.private_targets
    record = json.loads((tmp_path / f"metadata/mgnify/{analysis.accession}.json").read_text())
    # The link as the API gave it (its token kept out of the metadata).
    listed = urlsplit(record["downloads"][0]["url"])
    # The path carries %2F, %3D, + and //, which a client must not normalise.
    assert all(part in listed.path for part in ("%2F", "%3D", "+", "//"))
    assert summary.exit_code == 0
    assert len(targets) == 1
    sent = urlsplit(targets[0])
    assert sent.path == listed.path
    assert sent.query.split("&")[0] == listed.query.split("&")[0]  # expires=…


async def test_jwt_refreshed_before_it_expires_and_login_again_when_refused(
    tmp_path: Path,
) -> None:
    catalog = Catalog.generate_mgnify_v2(seed=1, analyses=1, private=1)
    options = MgnifyOptions(jwt_lifetime=600, jwt_refresh_lifetime=3600)
    start = time.time()
    moved = [0.0]

    def now() -> float:
        return start + moved[0]

    def advance(seconds: float) -> None:
        # The client's clock and the emulator's, moved together.
        moved[0] += seconds
        emu.mgnify.advance(seconds)

    async with (
        Emulator(catalog, mgnify=options) as emu,
        Http(lambda host: HostLimit(), retry=FAST_RETRY) as http,
    ):
        ctx = SourceContext(
            http=http,
            endpoints=emu.endpoints,
            metadata=MetadataWriter(tmp_path / "metadata"),
            warn=lambda message: None,
        )
        login = WebinLogin(username=Secret(USER), password=Secret(PASSWORD))
        spec = MgnifySpec(analyses=("MGYA91010002",), api="v2")
        source = MgnifyV2Source(spec, ctx, login, now=now)
        session = source.session
        assert isinstance(session, WebinSession)
        first = await session.bearer()
        assert await session.bearer() == first  # fresh: reused, nothing asked
        # 9 of its 10 minutes later: refreshed before it expires.
        advance(540)
        second = await session.bearer()
        assert second != first
        # Past refresh_exp (an hour after the login): refused, so a new login.
        advance(3600)
        third = await session.bearer()
        assert third not in (first, second)
        # The server's clock alone moves past exp: the API refuses the token (401)
        # and the call is made again with a refreshed one.
        emu.mgnify.advance(601)
        doc = await source.get("/analyses/MGYA91010002")
        assert doc["accession"] == "MGYA91010002"
        await emu.wait_idle()
        calls = [
            (e.path.removeprefix("/metagenomics/api/v2"), e.status)
            for e in emu.log
            if e.path.startswith("/metagenomics/api/v2")
        ]
    assert calls == [
        ("/auth/sliding", 200),
        ("/auth/sliding/refresh", 200),
        ("/auth/sliding/refresh", 401),
        ("/auth/sliding", 200),
        ("/analyses/MGYA91010002", 401),
        ("/auth/sliding/refresh", 200),
        ("/analyses/MGYA91010002", 200),
    ]


async def test_download_without_url_is_reported_and_the_rest_lands(tmp_path: Path) -> None:
    plain = MgnifyDownload(
        alias="ERR1_qc.tsv", label="QC", group_type="Statistics", format_name="TSV", size=999
    )
    gone = dataclasses.replace(plain, alias="ERR1_old.tsv", has_url=False)
    analysis = MgnifyAnalysis(
        accession="MGYA00007001",
        study="MGYS00007001",
        pipeline_version="4.1",
        downloads=(plain, gone),
    )
    catalog = Catalog(mgnify_studies=(MgnifyStudy(accession="MGYS00007001", analyses=(analysis,)),))
    warnings: list[str] = []
    async with (
        Emulator(catalog) as emu,
        mirror.Mirror(manifest(emu, tmp_path, analyses=["MGYA00007001"]), retry=FAST_RETRY) as m,
    ):
        async for event in m.events():
            if isinstance(event, WarningEvent):
                warnings.append(event.message)
        summary = m.summary
    assert (summary.planned, summary.verified, summary.exit_code) == (1, 1, 0)
    assert (tmp_path / "mgnify/MGYA00007001/ERR1_qc.tsv").stat().st_size == 999
    assert any("MGYA00007001" in w and "'ERR1_old.tsv' has no URL" in w for w in warnings)


async def test_half_the_webin_credentials_is_a_one_line_error(tmp_path: Path) -> None:
    catalog = Catalog.generate_mgnify_v2(seed=1, analyses=1, private=0)
    async with Emulator(catalog) as emu:
        doc = manifest(emu, tmp_path, analyses=["MGYA91010001"])
        with pytest.raises(CredentialsError) as caught:
            await mirror.run(doc, credentials={"MGNIFY_WEBIN_USER": USER})
    message = str(caught.value)
    assert "\n" not in message
    assert "sources[0].mgnify" in message
    assert "MGNIFY_WEBIN_PASSWORD is not set" in message


def test_manifest_api_key(tmp_path: Path) -> None:
    def load(extra: str) -> Any:
        path = tmp_path / "m.yaml"
        path.write_text(
            f"sources:\n  - mgnify:\n      studies: [ERP108930]\n{extra}", encoding="utf-8"
        )
        return load_manifest(path)

    assert load("").sources[0].api == "v1"
    spec = load("      api: v2\n      pipeline_version: V5\n").sources[0]
    assert (spec.api, spec.pipeline_version) == ("v2", "V5")
    with pytest.raises(ManifestError, match=r"m.yaml:4: sources\[0\]\.mgnify\.api: 'v3' is not"):
        load("      api: v3\n")
    with pytest.raises(ManifestError, match=r"sources\[0\]\.mgnify\.labels: API v2 has no"):
        load("      api: v2\n      labels: [x]\n")


async def test_private_task_planned_elsewhere_is_signed_before_its_first_request(
    tmp_path: Path,
) -> None:
    # A task from the state store (another process planned it) holds no signature.
    catalog = Catalog.generate_mgnify_v2(seed=1, analyses=0, private=1, private_size=4096)
    analysis = next(catalog.iter_mgnify_analyses())
    alias = analysis.downloads[0].alias
    async with (
        Emulator(catalog) as emu,
        Http(lambda host: HostLimit(), retry=FAST_RETRY) as http,
    ):
        ctx = SourceContext(
            http=http,
            endpoints=emu.endpoints,
            metadata=MetadataWriter(tmp_path / "metadata"),
            warn=lambda message: None,
        )
        login = WebinLogin(username=Secret(USER), password=Secret(PASSWORD))
        planner = MgnifyV2Source(MgnifySpec(analyses=(analysis.accession,), api="v2"), ctx, login)
        (planned,) = [t async for batch in planner.expand() for t in batch]
        assert "?" not in planned.url
        other = MgnifyV2Source(MgnifySpec(analyses=(analysis.accession,), api="v2"), ctx, login)
        signed = await other.prepare(planned, None)
        async with http.request("GET", signed.url) as resp:
            body = await resp.read()
        await emu.wait_idle()
        asked = [e.path.rsplit("/", 1)[-1] for e in emu.log if "/analyses/" in e.path]
    assert signed.url.startswith(planned.url + "?expires=")
    assert body == emu.mgnify.download_bytes(analysis.accession, alias)
    # Planning asked for the analysis once, the other source once more, for its link.
    assert asked == [analysis.accession, analysis.accession]


async def test_faults_on_the_v2_api_and_files_still_end_verified(tmp_path: Path) -> None:
    catalog = Catalog.generate_mgnify_v2(seed=4, analyses=6, private=0)
    expected = expected_files(catalog)
    faults = [
        Fault(kind="status", status=503, host="www", match="*/studies/*/analyses/", times=1),
        Fault(kind="truncate", host="www", match="*/analyses/MGYA*", after_bytes=40, times=2),
        Fault(kind="reset", host="ftp", match="*mgnify_results*", after_bytes=500, times=3),
    ]
    async with Emulator(catalog, faults=faults) as emu:
        summary = await mirror.run(manifest(emu, tmp_path, studies=[STUDY]), retry=FAST_RETRY)
        await emu.wait_idle()
        hit = sorted(e.fault or "" for e in emu.log if e.fault)
    assert hit == ["reset"] * 3 + ["status"] + ["truncate"] * 2
    assert summary.exit_code == 0
    for path, data in expected.items():
        assert (tmp_path / path).read_bytes() == data
