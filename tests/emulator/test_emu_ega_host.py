"""The EGA host as a whole: catalog records, a log without secrets, the CLI options."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import aiohttp
import pytest

from mirror.emulator import Catalog, EgaDataset, EgaFile, EgaOptions, Emulator

from .ega_helpers import (
    CLIENT,
    DATASET,
    FILE_A,
    PASSWORD,
    USER,
    bearer,
    download,
    new_request,
    recorded_catalog,
)
from .helpers import emulator_options


def test_catalog_holds_ega_datasets() -> None:
    demo = Catalog.demo()
    (dataset,) = demo.ega_datasets
    assert dataset.dataset_id == DATASET
    assert 2 <= len(dataset.files) <= 3
    assert 100_000 < sum(f.size for f in dataset.files) < 1024 * 1024
    assert demo.ega_file(FILE_A) == dataset.files[0]
    assert demo.ega_dataset(DATASET.lower()) is dataset
    assert demo.ega_file(DATASET) is None
    generated = Catalog.generate_ega("EGAD00010000123", files=7, size=5000, size_spread=0.5)
    files = generated.ega_datasets[0].files
    assert [f.file_id for f in files] == [f"EGAF{10000123001 + j:011d}" for j in range(7)]
    assert all(f.file_name.endswith(".cip") and 2500 <= f.size <= 7500 for f in files)
    assert generated == Catalog.generate_ega("EGAD00010000123", files=7, size=5000, size_spread=0.5)
    for catalog in (demo, generated, demo.merge(generated)):
        assert Catalog.from_dict(json.loads(json.dumps(catalog.to_dict()))) == catalog
    with pytest.raises(ValueError, match="duplicate EGA accession"):
        demo.merge(Catalog(ega_datasets=demo.ega_datasets))
    with pytest.raises(ValueError, match="EGAF"):
        EgaFile(file_id="EGAF1", file_name="/a.cip", size=1, dataset=DATASET)
    # Relative archive paths and fileStatus values survive a catalog file.
    recorded = recorded_catalog()
    assert Catalog.from_dict(json.loads(json.dumps(recorded.to_dict()))) == recorded
    files = recorded.ega_datasets[0].files
    assert [(f.status, f.legacy_gpg, f.downloadable) for f in files] == [
        ("available", False, True),
        ("available", True, False),
        ("unavailable", False, False),
    ]
    for name in ("a//b.cip", "/", ""):
        with pytest.raises(ValueError, match="clean path"):
            EgaFile(file_id="EGAF00000000001", file_name=name, size=1, dataset=DATASET)
    with pytest.raises(ValueError, match="dataset"):
        EgaDataset(dataset_id="EGAD00000000002", files=dataset.files)


async def test_secrets_never_reach_the_log(tmp_path: Path, session: aiohttp.ClientSession) -> None:
    password, rekey = "pa ss+w&rd=%", "rekey-that-must-stay-secret"
    log_path = tmp_path / "log.jsonl"
    async with Emulator(
        Catalog.demo(), log_path=log_path, ega=EgaOptions(users={USER: password})
    ) as emu:
        access = emu.endpoints["ega_access"]
        raw = f'loginrequest={{"username": "{USER}", "password": "{password}"}}'
        async with session.post(access + "/users/login", data=raw.encode()) as response:
            token = (await response.json())["response"]["result"][1]
        pair = base64.b64encode(f"{USER}:{password}".encode()).decode()
        async with session.get(
            access + "/users/login", headers={"Authorization": f"Basic {pair}"}
        ) as response:
            assert (await response.json())["response"]["result"][0] == "success"
        async with session.get(f"{access}/users/{USER}", params={"pass": password}) as response:
            assert (await response.json())["response"]["result"][0] == "success"
        doc = await new_request(session, emu, token, FILE_A, rekey=rekey)
        ticket = doc["response"]["result"][0]["ticket"]
        assert (await download(session, emu, ticket, "bytes=0-9"))[0] == 206
        async with session.get(access + "/users/logout", params={"session": token}) as response:
            await response.read()
        auth = await bearer(session, emu, password)
        url = f"{emu.endpoints['ega_data']}/files/{FILE_A}?destinationFormat=plain"
        async with session.get(url, headers=auth) as response:
            assert response.status == 200
            await response.read()
        await emu.wait_idle()
        log = emu.log
    text = log_path.read_text()
    bearer_token = auth["Authorization"].removeprefix("Bearer ")
    for secret in (password, rekey, token, bearer_token, pair):
        assert secret not in text
        assert all(secret not in json.dumps(entry.to_dict()) for entry in log)
    assert all(entry.form is None for entry in log if entry.host == "ega")
    queries = [entry.query for entry in log if entry.query]
    assert "session=***" in queries
    assert any(query.startswith("pass=***") for query in queries)
    assert len(log) == 8


async def test_cli_ega_options(tmp_path: Path, session: aiohttp.ClientSession) -> None:
    async with emulator_options(
        "--ega-user", "alice@example.org:s3cret", "--ega-user", "bob@example.org:pw:with:colons",
        "--ega-session-idle", "30", "--ega-token-ttl", "5", "--ega-no-range",
    ) as ready:  # fmt: skip
        endpoints = ready["endpoints"]
        assert {"ega_access", "ega_download", "ega_auth", "ega_data"} <= set(endpoints)
        assert len({endpoints[k].split("/")[2] for k in endpoints if k.startswith("ega")}) == 1
        access = endpoints["ega_access"]
        for user, password, expected in (
            ("alice@example.org", "s3cret", "success"),
            ("bob@example.org", "pw:with:colons", "success"),
            (USER, PASSWORD, None),
        ):
            url = f"{access}/users/{user}"
            async with session.get(url, params={"pass": password}) as response:
                result = (await response.json())["response"]["result"]
            assert (result[0] == "success") is (expected is not None)
        form = {"grant_type": "password", **CLIENT, "username": "alice@example.org"}
        async with session.post(endpoints["ega_auth"], data={**form, "password": "s3cret"}) as r:
            assert (await r.json())["expires_in"] == 5
        # --ega-no-range: a ranged stream request gets the whole stream.
        login = json.dumps({"username": "alice@example.org", "password": "s3cret"})
        async with session.post(f"{access}/users/login", data={"loginrequest": login}) as r:
            token = (await r.json())["response"]["result"][1]
        order = json.dumps({"rekey": "k", "downloadType": "STREAM", "descriptor": "cli"})
        url = f"{access}/requests/new/files/{FILE_A}"
        async with session.post(
            url, data={"downloadrequest": order}, params={"session": token}
        ) as r:
            ticket = (await r.json())["response"]["result"][0]["ticket"]
        url = f"{endpoints['ega_download']}/downloads/{ticket}"
        async with session.get(url, headers={"Range": "bytes=0-0"}) as r:
            assert (r.status, len(await r.read())) == (200, 100_003)
