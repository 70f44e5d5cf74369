"""The EGA Data API (pyega3's): password grant, bearer tokens, metadata, plain ranges."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import AsyncIterator

import aiohttp
import pytest

from mirror.emulator import Catalog, EgaOptions, Emulator, Fault

from .ega_helpers import (
    CLIENT,
    DATASET,
    FILE_A,
    FILE_B,
    PASSWORD,
    USER,
    bearer,
    recorded_catalog,
    recorded_items,
)

BIG_DATASET = "EGAD00010000900"
# Three 1 MiB content blocks and a bit: slices cross block boundaries.
BIG_SIZE = 3 * 1024 * 1024 + 7


@pytest.fixture
async def ega_emu() -> AsyncIterator[Emulator]:
    catalog = Catalog.demo().merge(Catalog.generate_ega(BIG_DATASET, files=1, size=BIG_SIZE))
    async with Emulator(catalog, ega=EgaOptions(token_ttl=30)) as emulator:
        yield emulator


def _big(emu: Emulator) -> str:
    dataset = emu.catalog.ega_dataset(BIG_DATASET)
    assert dataset is not None
    return dataset.files[0].file_id


async def test_password_grant(ega_emu: Emulator, session: aiohttp.ClientSession) -> None:
    form = {"grant_type": "password", **CLIENT, "scope": "openid"}
    form |= {"username": USER, "password": PASSWORD}
    async with session.post(ega_emu.endpoints["ega_auth"], data=form) as response:
        assert response.status == 200
        doc = await response.json()
    assert set(doc) == {"access_token", "token_type", "expires_in", "scope"}
    assert (doc["token_type"], doc["expires_in"], doc["scope"]) == ("Bearer", 30, "openid")
    assert doc["access_token"].count(".") == 2
    refused = [
        ({**form, "password": "wrong"}, 401, "invalid_grant"),
        ({**form, "username": "nobody@ebi.ac.uk"}, 401, "invalid_grant"),
        ({**form, "grant_type": "client_credentials"}, 400, "unsupported_grant_type"),
        # The client must authenticate: pyega3's published secret, not any other.
        ({**form, "client_secret": "anything"}, 401, "invalid_client"),
        ({**form, "client_secret": ""}, 401, "invalid_client"),
        ({k: v for k, v in form.items() if k != "client_secret"}, 401, "invalid_client"),
        ({**form, "client_id": "someone-else"}, 401, "invalid_client"),
    ]
    for data, status, error in refused:
        async with session.post(ega_emu.endpoints["ega_auth"], data=data) as response:
            assert response.status == status
            assert (await response.json())["error"] == error
    # client_secret_basic: the same client in an Authorization header.
    pair = f"{CLIENT['client_id']}:{CLIENT['client_secret']}".encode()
    basic = {"Authorization": "Basic " + base64.b64encode(pair).decode()}
    bare = {k: v for k, v in form.items() if not k.startswith("client_")}
    async with session.post(ega_emu.endpoints["ega_auth"], data=bare, headers=basic) as response:
        assert response.status == 200
    stats = ega_emu.ega.stats()
    assert (stats.token_grants, stats.token_refusals, stats.client_refusals) == (2, 7, 4)
    # userinfo names the user (pyega3's user_id).
    userinfo = ega_emu.endpoints["ega_auth"].replace("/token", "/userinfo")
    headers = {"Authorization": f"Bearer {doc['access_token']}"}
    async with session.post(userinfo, headers=headers) as response:
        assert (await response.json())["sub"] == USER


async def test_bearer_required_and_expiry(
    ega_emu: Emulator, session: aiohttp.ClientSession
) -> None:
    url = ega_emu.endpoints["ega_data"] + "/metadata/datasets"
    refused = [{}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic eDp5"}]
    for headers in refused:
        async with session.get(url, headers=headers) as response:
            assert response.status == 401
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
            assert (await response.json())["error"] == "invalid_token"
    auth = await bearer(session, ega_emu)
    ega_emu.ega.advance(29)
    async with session.get(url, headers=auth) as response:
        assert response.status == 200
    ega_emu.ega.advance(2)
    async with session.get(url, headers=auth) as response:
        assert response.status == 401
    auth = await bearer(session, ega_emu)
    async with session.get(url, headers=auth) as response:
        assert response.status == 200
    assert ega_emu.ega.expire_tokens() == 1
    file_url = f"{ega_emu.endpoints['ega_data']}/files/{FILE_A}?destinationFormat=plain"
    async with session.get(file_url, headers=auth) as response:
        assert response.status == 401


async def test_metadata_shapes(ega_emu: Emulator, session: aiohttp.ClientSession) -> None:
    auth = await bearer(session, ega_emu)
    data = ega_emu.endpoints["ega_data"]
    async with session.get(data + "/metadata/datasets", headers=auth) as response:
        assert await response.json() == [{"datasetId": DATASET}, {"datasetId": BIG_DATASET}]
    async with session.get(f"{data}/metadata/datasets/{DATASET}/files", headers=auth) as r:
        files = await r.json()
    plain = ega_emu.ega.plain_bytes(FILE_A)
    assert files[0] == {
        "fileId": FILE_A,
        # A relative archive path, as the Data API lists it.
        "fileName": "arrays/331-01-3TD.CEL.cip",
        "displayFileName": "331-01-3TD.CEL.cip",
        # The archived size counts a 16-byte IV; pyega3 subtracts it.
        "fileSize": len(plain) + 16,
        "plainChecksum": hashlib.md5(plain).hexdigest(),
        "unencryptedChecksum": hashlib.md5(plain).hexdigest(),
        "checksumType": "MD5",
        "fileStatus": "available",
        "datasetId": DATASET,
    }
    assert files[0]["plainChecksum"] == ega_emu.ega.plain_md5(FILE_A)
    assert len(files) == 3
    async with session.get(f"{data}/metadata/files/{FILE_B}", headers=auth) as response:
        assert await response.json() == files[1]
    for path in ("/metadata/datasets/EGAD00000000001/files", "/metadata/files/EGAF00000000001"):
        async with session.get(data + path, headers=auth) as response:
            assert response.status == 404


async def test_ranged_plain_slices_are_exact(
    ega_emu: Emulator, session: aiohttp.ClientSession
) -> None:
    auth = await bearer(session, ega_emu)
    file_id = _big(ega_emu)
    plain = ega_emu.ega.plain_bytes(file_id)
    assert len(plain) == BIG_SIZE
    url = f"{ega_emu.endpoints['ega_data']}/files/{file_id}?destinationFormat=plain"
    # pyega3's slices (here 1 MiB - 3) cover the file; each must be exact.
    slice_size = (1 << 20) - 3
    pieces = []
    for start in range(0, BIG_SIZE, slice_size):
        last = min(start + slice_size, BIG_SIZE) - 1
        headers = {**auth, "Range": f"bytes={start}-{last}"}
        async with session.get(url, headers=headers) as response:
            assert response.status == 206
            assert response.headers["Content-Range"] == f"bytes {start}-{last}/{BIG_SIZE}"
            pieces.append(await response.read())
            assert pieces[-1] == plain[start : last + 1]
    assert hashlib.md5(b"".join(pieces)).hexdigest() == ega_emu.ega.plain_md5(file_id)
    async with session.get(url, headers=auth) as response:
        assert response.status == 200
        assert await response.read() == plain
    async with session.get(url, headers={**auth, "Range": "bytes=-5"}) as response:
        assert (response.status, await response.read()) == (206, plain[-5:])
    async with session.get(url, headers={**auth, "Range": f"bytes={BIG_SIZE}-"}) as response:
        assert response.status == 416


async def test_only_plain_is_served(ega_emu: Emulator, session: aiohttp.ClientSession) -> None:
    auth = await bearer(session, ega_emu)
    base = f"{ega_emu.endpoints['ega_data']}/files/{FILE_A}"
    for query in ("", "?destinationFormat=aes128"):
        async with session.get(base + query, headers=auth) as response:
            assert response.status == 400
    async with session.get(base.replace(FILE_A, "EGAF00000000001"), headers=auth) as response:
        assert response.status == 404


async def test_faults_on_plain_files(ega_emu: Emulator, session: aiohttp.ClientSession) -> None:
    auth = await bearer(session, ega_emu)
    file_id = _big(ega_emu)
    url = f"{ega_emu.endpoints['ega_data']}/files/{file_id}?destinationFormat=plain"
    ega_emu.faults.add(Fault(kind="truncate", host="ega", match="/v2/files/*", after_bytes=1000))
    with pytest.raises(aiohttp.ClientPayloadError):
        async with session.get(url, headers={**auth, "Range": "bytes=0-99999"}) as response:
            await response.read()
    ega_emu.faults.clear()
    ega_emu.faults.add(Fault(kind="no_range", host="ega", times=1))
    async with session.get(url, headers={**auth, "Range": "bytes=0-9"}) as response:
        assert response.status == 200
        assert len(await response.read()) == BIG_SIZE


async def test_grants_limit_both_apis(session: aiohttp.ClientSession) -> None:
    catalog = Catalog.demo().merge(Catalog.generate_ega(BIG_DATASET, files=1))
    async with Emulator(catalog, ega=EgaOptions(grants={USER: [BIG_DATASET]})) as emu:
        auth = await bearer(session, emu)
        data = emu.endpoints["ega_data"]
        async with session.get(data + "/metadata/datasets", headers=auth) as response:
            assert await response.json() == [{"datasetId": BIG_DATASET}]
        for path in (
            f"/metadata/datasets/{DATASET}/files",
            f"/metadata/files/{FILE_A}",
            f"/files/{FILE_A}?destinationFormat=plain",
        ):
            async with session.get(data + path, headers=auth) as response:
                assert response.status == 403, path


async def test_recorded_listing_with_status_variants_and_gpg(
    session: aiohttp.ClientSession,
) -> None:
    recorded = recorded_items()
    async with Emulator(recorded_catalog()) as emu:
        auth = await bearer(session, emu)
        data = emu.endpoints["ega_data"]
        dataset = recorded[0]["datasetId"]
        async with session.get(f"{data}/metadata/datasets/{dataset}/files", headers=auth) as r:
            listed = await r.json()
        # Field for field as recorded, but for the (placeholder) checksums.
        for mine, real in zip(listed, recorded, strict=True):
            assert set(real) <= set(mine)
            same = set(real) - {"plainChecksum"}
            assert {k: mine[k] for k in same} == {k: real[k] for k in same}
        available, gpg, unavailable = (item["fileId"] for item in recorded)
        plain = emu.ega.plain_bytes(available)
        assert len(plain) == recorded[0]["fileSize"] - 16
        url = f"{data}/files/{available}?destinationFormat=plain"
        async with session.get(url, headers={**auth, "Range": "bytes=0-99"}) as r:
            assert (r.status, await r.read()) == (206, plain[:100])
        for file_id, why in ((gpg, "legacy .gpg"), (unavailable, "'unavailable'")):
            url = f"{data}/files/{file_id}?destinationFormat=plain"
            async with session.get(url, headers=auth) as r:
                assert r.status == 400
                assert why in (await r.json())["error"]


async def test_download_stats_as_pyega3_posts_them(
    ega_emu: Emulator, session: aiohttp.ClientSession
) -> None:
    url = ega_emu.endpoints["ega_data"] + "/download-stats"
    report = {
        "userId": USER,
        "clientDownloadStartedAt": "2026-12-05T04:00:00",
        "clientStatsCreatedAt": "2026-12-05T04:00:02",
        "fileId": FILE_A,
        "numberOfAttempts": 1,
        "fileSizeInBytes": 100_019,
        "numberOfConnections": 1,
        "sessionId": "123456",
        "status": "Succeeded",
        "errorReason": None,
        "errorDetails": None,
    }
    async with session.post(url, json=report) as response:
        assert response.status == 401
    auth = await bearer(session, ega_emu)
    async with session.post(url, json=report, headers=auth) as response:
        assert response.status == 200
        assert (await response.json())["fileId"] == FILE_A
    for bad in ({**report, "status": "Maybe"}, {"status": "Failed"}, [report]):
        async with session.post(url, json=bad, headers=auth) as response:
            assert response.status == 400
    assert ega_emu.ega.download_reports() == [report]
    assert ega_emu.ega.stats().download_stats == 1


async def test_pyega3_test_account(ega_emu: Emulator, session: aiohttp.ClientSession) -> None:
    # pyega3 -t logs in with the account of its default_credential_file.json.
    form = {"grant_type": "password", **CLIENT, "scope": "openid"}
    form |= {"username": "ega-test-data@ebi.ac.uk", "password": "egarocks"}
    async with session.post(ega_emu.endpoints["ega_auth"], data=form) as response:
        assert response.status == 200
        token = (await response.json())["access_token"]
    url = ega_emu.endpoints["ega_data"] + "/metadata/datasets"
    async with session.get(url, headers={"Authorization": f"Bearer {token}"}) as response:
        assert {d["datasetId"] for d in await response.json()} >= {DATASET}
