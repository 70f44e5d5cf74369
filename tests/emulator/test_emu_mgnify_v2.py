"""MGnify v2 on the www host: django-ninja paging, JWT, private objects, signed links."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from yarl import URL

from mirror.emulator import Catalog, Emulator, Fault, MgnifyOptions

STUDY = "MGYS00009101"
PRIVATE = "MGYA91010131"
LOGIN = {"username": "Webin-1001", "password": "emulated-webin-password"}


@pytest.fixture
async def v2() -> AsyncIterator[Emulator]:
    catalog = Catalog.generate_mgnify_v2(seed=2, analyses=130, private=1, private_size=2048)
    async with Emulator(catalog, mgnify=MgnifyOptions(link_lifetime=60)) as emulator:
        yield emulator


async def _get(
    session: aiohttp.ClientSession, url: str | URL, token: str | None = None
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with session.get(url, headers=headers) as resp:
        return resp.status, await resp.json(content_type=None)


async def test_analyses_paged_as_django_ninja(v2: Emulator, session: aiohttp.ClientSession) -> None:
    base = f"{v2.endpoints['mgnify_v2']}/studies/{STUDY}/analyses/"
    status, first = await _get(session, f"{base}?page=1&page_size=500")
    assert status == 200
    # Capped at 100 without a word; the count is every public analysis.
    assert (first["count"], len(first["items"])) == (130, 100)
    assert set(first) == {"count", "items"}
    _, second = await _get(session, f"{base}?page=2&page_size=500")
    assert len(second["items"]) == 30
    assert {i["accession"] for i in first["items"] + second["items"]} == {
        f"MGYA{91010001 + i}" for i in range(130)
    }
    assert await _get(session, f"{base}?page=3&page_size=100") == (200, {"count": 130, "items": []})
    for bad in ("page=0", "page_size=0", "page=x"):
        status, doc = await _get(session, f"{base}?{bad}")
        assert status == 422
        assert doc["detail"][0]["loc"][0] == "query"
    item = first["items"][0]
    assert item["pipeline_version"] in {"V4.1", "V5", "V6"}


async def test_jwt_private_objects_and_bad_tokens(
    v2: Emulator, session: aiohttp.ClientSession
) -> None:
    api = v2.endpoints["mgnify_v2"]
    assert (await _get(session, f"{api}/analyses/{PRIVATE}"))[0] == 404
    async with session.post(f"{api}/auth/sliding", json={**LOGIN, "password": "no"}) as resp:
        assert resp.status == 401
    async with session.post(f"{api}/auth/sliding", json=LOGIN) as resp:
        token = (await resp.json())["token"]
    status, doc = await _get(session, f"{api}/analyses/{PRIVATE}", token)
    assert status == 200
    assert doc["downloads"][0]["file_size_bytes"] is None
    _, listed = await _get(session, f"{api}/studies/{STUDY}/analyses/?page=2&page_size=100", token)
    assert listed["count"] == 131
    # A bad token is refused even where anonymous access is allowed.
    assert await _get(session, f"{api}/studies/{STUDY}", token + "x") == (
        401,
        {"detail": "Token is invalid or expired", "code": "token_not_valid"},
    )
    v2.mgnify.advance(86400 + 1)
    assert (await _get(session, f"{api}/studies/{STUDY}", token))[0] == 401
    await v2.wait_idle()
    # Neither the password nor the token reaches the log.
    logged = repr(v2.log)
    assert LOGIN["password"] not in logged
    assert token not in logged


async def test_signed_links_403_410_and_faults(
    v2: Emulator, session: aiohttp.ClientSession
) -> None:
    token = v2.mgnify.token()
    _, doc = await _get(session, f"{v2.endpoints['mgnify_v2']}/analyses/{PRIVATE}", token)
    url = doc["downloads"][0]["url"]
    alias = doc["downloads"][0]["alias"]
    link = URL(url, encoded=True)
    async with session.get(link) as resp:
        assert resp.status == 200
        assert await resp.read() == v2.mgnify.download_bytes(PRIVATE, alias)
    bare = url.split("?")[0]
    async with session.get(URL(bare, encoded=True)) as resp:
        assert resp.status == 403
    # The signature's last character changed (to one it is not).
    forged = url[:-1] + ("1" if url.endswith("0") else "0")
    async with session.get(URL(forged, encoded=True)) as resp:
        assert resp.status == 403
    # Normalised (as yarl does by default): %3D becomes "=", the signature no longer fits.
    async with session.get(url) as resp:
        assert resp.status == 403
    v2.faults.add(Fault(kind="status", status=503, host="www", match="*/private-data/*", times=1))
    async with session.get(link) as resp:
        assert resp.status == 503
    v2.mgnify.advance(61)
    async with session.get(link) as resp:
        assert resp.status == 410


async def test_insdc_route_can_be_left_undeployed(session: aiohttp.ClientSession) -> None:
    catalog = Catalog.generate_mgnify_v2(seed=2, analyses=1, private=0)
    for deployed, status in ((True, 200), (False, 404)):
        async with Emulator(catalog, mgnify=MgnifyOptions(insdc_route=deployed)) as emu:
            got, doc = await _get(session, f"{emu.endpoints['mgnify_v2']}/studies/insdc/ERP169101")
            assert got == status
            if deployed:
                assert doc["accession"] == STUDY
                assert doc["first_accession"] == "ERP169101"
            search = f"{emu.endpoints['mgnify_v2']}/studies/?search=ERP169101"
            _, found = await _get(session, search)
            assert [s["accession"] for s in found["items"]] == [STUDY]
