"""The EGA Data API (pyega3's): password grant, bearer tokens, metadata, plain ranges."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import aiohttp
import pytest

from mirror.emulator import Catalog, Emulator, Fault

from .ega_helpers import DATASET, FILE_A, FILE_B, PASSWORD, USER, bearer

BIG_DATASET = "EGAD00010000900"
# Three 1 MiB content blocks and a bit: slices cross block boundaries.
BIG_SIZE = 3 * 1024 * 1024 + 7


@pytest.fixture
async def ega() -> AsyncIterator[Emulator]:
    catalog = Catalog.demo().merge(Catalog.generate_ega(BIG_DATASET, files=1, size=BIG_SIZE))
    async with Emulator(catalog, ega_token_ttl=30) as emulator:
        yield emulator


def _big(emu: Emulator) -> str:
    dataset = emu.catalog.ega_dataset(BIG_DATASET)
    assert dataset is not None
    return dataset.files[0].file_id


async def test_password_grant(ega: Emulator, session: aiohttp.ClientSession) -> None:
    form = {
        "grant_type": "password",
        "client_id": "f20cd2d3-682a-4568-a53e-4262ef54c8f4",
        "scope": "openid",
        "client_secret": "anything",
        "username": USER,
        "password": PASSWORD,
    }
    async with session.post(ega.endpoints["ega_auth"], data=form) as response:
        assert response.status == 200
        doc = await response.json()
    assert set(doc) == {"access_token", "token_type", "expires_in", "scope"}
    assert (doc["token_type"], doc["expires_in"], doc["scope"]) == ("Bearer", 30, "openid")
    assert doc["access_token"].count(".") == 2
    refused = [
        ({**form, "password": "wrong"}, 401, "invalid_grant"),
        ({**form, "username": "nobody@ebi.ac.uk"}, 401, "invalid_grant"),
        ({**form, "grant_type": "client_credentials"}, 400, "unsupported_grant_type"),
    ]
    for data, status, error in refused:
        async with session.post(ega.endpoints["ega_auth"], data=data) as response:
            assert response.status == status
            assert (await response.json())["error"] == error
    stats = ega.ega_stats()
    assert (stats.token_grants, stats.token_refusals) == (1, 3)
    # userinfo names the user (pyega3's user_id).
    userinfo = ega.endpoints["ega_auth"].replace("/token", "/userinfo")
    headers = {"Authorization": f"Bearer {doc['access_token']}"}
    async with session.post(userinfo, headers=headers) as response:
        assert (await response.json())["sub"] == USER


async def test_bearer_required_and_expiry(ega: Emulator, session: aiohttp.ClientSession) -> None:
    url = ega.endpoints["ega_data"] + "/metadata/datasets"
    refused = [{}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic eDp5"}]
    for headers in refused:
        async with session.get(url, headers=headers) as response:
            assert response.status == 401
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
            assert (await response.json())["error"] == "invalid_token"
    auth = await bearer(session, ega)
    ega.ega_advance(29)
    async with session.get(url, headers=auth) as response:
        assert response.status == 200
    ega.ega_advance(2)
    async with session.get(url, headers=auth) as response:
        assert response.status == 401
    auth = await bearer(session, ega)
    async with session.get(url, headers=auth) as response:
        assert response.status == 200
    assert ega.ega_expire_tokens() == 1
    file_url = f"{ega.endpoints['ega_data']}/files/{FILE_A}?destinationFormat=plain"
    async with session.get(file_url, headers=auth) as response:
        assert response.status == 401


async def test_metadata_shapes(ega: Emulator, session: aiohttp.ClientSession) -> None:
    auth = await bearer(session, ega)
    data = ega.endpoints["ega_data"]
    async with session.get(data + "/metadata/datasets", headers=auth) as response:
        assert await response.json() == [{"datasetId": DATASET}, {"datasetId": BIG_DATASET}]
    async with session.get(f"{data}/metadata/datasets/{DATASET}/files", headers=auth) as r:
        files = await r.json()
    plain = ega.ega_plain_bytes(FILE_A)
    assert files[0] == {
        "fileId": FILE_A,
        "fileName": "/arrays/331-01-3TD.CEL.cip",
        "displayFileName": "331-01-3TD.CEL.cip",
        # The archived size counts a 16-byte IV; pyega3 subtracts it.
        "fileSize": len(plain) + 16,
        "plainChecksum": hashlib.md5(plain).hexdigest(),
        "unencryptedChecksum": hashlib.md5(plain).hexdigest(),
        "checksumType": "MD5",
        "fileStatus": "available",
        "datasetId": DATASET,
    }
    assert files[0]["plainChecksum"] == ega.ega_plain_md5(FILE_A)
    assert len(files) == 3
    async with session.get(f"{data}/metadata/files/{FILE_B}", headers=auth) as response:
        assert await response.json() == files[1]
    for path in ("/metadata/datasets/EGAD00000000001/files", "/metadata/files/EGAF00000000001"):
        async with session.get(data + path, headers=auth) as response:
            assert response.status == 404


async def test_ranged_plain_slices_are_exact(ega: Emulator, session: aiohttp.ClientSession) -> None:
    auth = await bearer(session, ega)
    file_id = _big(ega)
    plain = ega.ega_plain_bytes(file_id)
    assert len(plain) == BIG_SIZE
    url = f"{ega.endpoints['ega_data']}/files/{file_id}?destinationFormat=plain"
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
    assert hashlib.md5(b"".join(pieces)).hexdigest() == ega.ega_plain_md5(file_id)
    async with session.get(url, headers=auth) as response:
        assert response.status == 200
        assert await response.read() == plain
    async with session.get(url, headers={**auth, "Range": "bytes=-5"}) as response:
        assert (response.status, await response.read()) == (206, plain[-5:])
    async with session.get(url, headers={**auth, "Range": f"bytes={BIG_SIZE}-"}) as response:
        assert response.status == 416


async def test_only_plain_is_served(ega: Emulator, session: aiohttp.ClientSession) -> None:
    auth = await bearer(session, ega)
    base = f"{ega.endpoints['ega_data']}/files/{FILE_A}"
    for query in ("", "?destinationFormat=aes128"):
        async with session.get(base + query, headers=auth) as response:
            assert response.status == 400
    async with session.get(base.replace(FILE_A, "EGAF00000000001"), headers=auth) as response:
        assert response.status == 404


async def test_faults_on_plain_files(ega: Emulator, session: aiohttp.ClientSession) -> None:
    auth = await bearer(session, ega)
    file_id = _big(ega)
    url = f"{ega.endpoints['ega_data']}/files/{file_id}?destinationFormat=plain"
    ega.faults.add(Fault(kind="truncate", host="ega", match="/v2/files/*", after_bytes=1000))
    with pytest.raises(aiohttp.ClientPayloadError):
        async with session.get(url, headers={**auth, "Range": "bytes=0-99999"}) as response:
            await response.read()
    ega.faults.clear()
    ega.faults.add(Fault(kind="no_range", host="ega", times=1))
    async with session.get(url, headers={**auth, "Range": "bytes=0-9"}) as response:
        assert response.status == 200
        assert len(await response.read()) == BIG_SIZE


async def test_grants_limit_both_apis(session: aiohttp.ClientSession) -> None:
    catalog = Catalog.demo().merge(Catalog.generate_ega(BIG_DATASET, files=1))
    async with Emulator(catalog, ega_grants={USER: [BIG_DATASET]}) as emu:
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
