"""Small EGA clients for the emulator tests: REST v2 calls and Data API tokens."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp

from mirror.emulator import Catalog, EgaDataset, EgaFile, Emulator
from mirror.sources.ega_data import CLIENT_ID, CLIENT_SECRET

USER, PASSWORD = "testuser@ebi.ac.uk", "testpassword"
#: pyega3's OAuth client, as its default server file publishes it.
CLIENT = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
DATASET = "EGAD00010000805"
# The demo dataset's files: 100_003, 256 KiB + 5 and 80 KiB bytes.
FILE_A, FILE_B, FILE_C = "EGAF00000867414", "EGAF00000867415", "EGAF00000867416"
# The seed's header, exactly, for every successful REST v2 call on the access server.
OK_HEADER = {
    "apiVersion": "v2",
    "code": "200",
    "docLink": "http://www.ebi.ac.uk/ega",
    "errorCode": "200",
    "errorStack": "",
    "service": "access",
    "technicalMessage": "",
    "userMessage": "OK",
}


async def envelope(response: aiohttp.ClientResponse) -> dict[str, Any]:
    """A REST v2 answer: always HTTP 200 with a JSON envelope, whatever went wrong."""
    assert response.status == 200, await response.text()
    assert response.content_type == "application/json"
    doc: dict[str, Any] = json.loads(await response.read())
    assert set(doc) == {"header", "response"}
    assert set(doc["response"]) == {"numTotalResults", "result", "resultType"}
    return doc


async def login(session: aiohttp.ClientSession, emu: Emulator) -> str:
    """The docs' preferred login: POST form field loginrequest = raw JSON."""
    form = aiohttp.FormData(default_to_multipart=True)
    form.add_field("loginrequest", json.dumps({"username": USER, "password": PASSWORD}))
    async with session.post(emu.endpoints["ega_access"] + "/users/login", data=form) as r:
        doc = await envelope(r)
    status, token = doc["response"]["result"]
    assert status == "success"
    return str(token)


async def get(
    session: aiohttp.ClientSession, emu: Emulator, path: str, token: str | None
) -> dict[str, Any]:
    params = {"session": token} if token is not None else {}
    async with session.get(emu.endpoints["ega_access"] + path, params=params) as response:
        return await envelope(response)


async def new_request(
    session: aiohttp.ClientSession,
    emu: Emulator,
    token: str,
    target: str,
    *,
    rekey: str = "my-secret-rekey",
    label: str = "request-1",
) -> dict[str, Any]:
    """POST requests/new/{datasets|files}/{id}: by dataset for EGAD…, by file for EGAF…."""
    kind = "datasets" if target.startswith("EGAD") else "files"
    body = {"rekey": rekey, "downloadType": "STREAM", "descriptor": label}
    form = aiohttp.FormData(default_to_multipart=True)
    form.add_field("downloadrequest", json.dumps(body))
    url = f"{emu.endpoints['ega_access']}/requests/new/{kind}/{target}"
    async with session.post(url, data=form, params={"session": token}) as response:
        return await envelope(response)


async def download(
    session: aiohttp.ClientSession, emu: Emulator, ticket: str, range_: str | None = None
) -> tuple[int, bytes]:
    headers = {"Range": range_} if range_ is not None else {}
    url = f"{emu.endpoints['ega_download']}/downloads/{ticket}"
    async with session.get(url, headers=headers) as response:
        return response.status, await response.read()


async def results(
    session: aiohttp.ClientSession, emu: Emulator, ticket: str, md5: str | None = None
) -> dict[str, Any]:
    params = {"md5": md5} if md5 is not None else {}
    url = f"{emu.endpoints['ega_download']}/results/{ticket}"
    async with session.get(url, params=params) as response:
        return await envelope(response)


async def bearer(
    session: aiohttp.ClientSession, emu: Emulator, password: str = PASSWORD
) -> dict[str, str]:
    """pyega3's password grant; the Authorization header of its token."""
    form = {"grant_type": "password", **CLIENT, "scope": "openid"}
    form |= {"username": USER, "password": password}
    async with session.post(emu.endpoints["ega_auth"], data=form) as response:
        assert response.status == 200, await response.text()
        doc = await response.json()
    return {"Authorization": f"Bearer {doc['access_token']}"}


#: The Data API's listing of EGAD00001003338 (see the README beside it).
RECORDED_FILES = Path(__file__).parents[1] / "fixtures/real-responses/ega/dataset_files.json"


def recorded_items() -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = json.loads(RECORDED_FILES.read_text())
    return items


def recorded_catalog() -> Catalog:
    """The recorded dataset as emulator records: names, statuses, plain sizes (IV off)."""
    items = recorded_items()
    dataset = str(items[0]["datasetId"])
    files = tuple(
        EgaFile(
            file_id=item["fileId"],
            file_name=item["fileName"],
            size=int(item["fileSize"]) - 16,
            dataset=dataset,
            status=item["fileStatus"],
        )
        for item in items
    )
    return Catalog(ega_datasets=(EgaDataset(dataset_id=dataset, files=files),))
