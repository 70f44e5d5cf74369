"""EGA REST API v2 (the seed): logins, envelopes, sessions, listings, request tickets."""

from __future__ import annotations

import base64
import json
import re

import aiohttp

from mirror.emulator import Catalog, EgaOptions, Emulator, Fault

from .ega_helpers import (
    DATASET,
    FILE_A,
    FILE_B,
    FILE_C,
    OK_HEADER,
    PASSWORD,
    USER,
    envelope,
    get,
    login,
    new_request,
)

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


def _basic(user: str, password: str) -> dict[str, str]:
    pair = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {pair}"}


async def _logins(
    session: aiohttp.ClientSession, emu: Emulator, password: str
) -> list[dict[str, object]]:
    """Every way the docs and clients log in, with ``password``."""
    access = emu.endpoints["ega_access"]
    docs = []
    # (1) A named form, multipart (curl -F) with the user URL-encoded as in the docs.
    form = aiohttp.FormData(default_to_multipart=True)
    form.add_field(
        "loginrequest", json.dumps({"username": "testuser%40ebi.ac.uk", "password": password})
    )
    async with session.post(access + "/users/login", data=form) as response:
        docs.append(await envelope(response))
    # A multipart part typed application/json (aiohttp's server hands it over as bytes).
    typed = aiohttp.FormData()
    login = json.dumps({"username": USER, "password": password})
    typed.add_field("loginrequest", login, content_type="application/json")
    async with session.post(access + "/users/login", data=typed) as response:
        docs.append(await envelope(response))
    # pyega: the raw, unencoded body and no Content-Type at all.
    raw = f'loginrequest={{"username": "{USER}", "password": "{password}"}}'
    async with session.post(access + "/users/login", data=raw.encode()) as response:
        docs.append(await envelope(response))
    # requests' data={...}: urlencoded.
    urlencoded = {"loginrequest": json.dumps({"username": USER, "password": password})}
    async with session.post(access + "/users/login", data=urlencoded) as response:
        docs.append(await envelope(response))
    # (2) Basic, with the docs' URL-encoded user; (3) user in the URL, ?pass=.
    headers = _basic("testuser%40ebi.ac.uk", password)
    async with session.get(access + "/users/login", headers=headers) as response:
        docs.append(await envelope(response))
    url = f"{access}/users/testuser%40ebi.ac.uk"
    async with session.get(url, params={"pass": password}) as response:
        docs.append(await envelope(response))
    return docs


async def test_every_login_form_gives_a_session(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    docs = await _logins(session, emu, PASSWORD)
    tokens = set()
    for doc in docs:
        assert doc["header"] == OK_HEADER
        response = doc["response"]
        assert isinstance(response, dict)
        # As in the docs: two elements, but numTotalResults 1.
        assert response["numTotalResults"] == 1
        assert response["resultType"] == "us.monoid.json.JSONArray"
        status, token = response["result"]
        assert status == "success"
        assert UUID.fullmatch(token)
        tokens.add(token)
        assert (await get(session, emu, "/datasets", token))["header"] == OK_HEADER
    assert len(tokens) == len(docs)
    assert emu.ega.stats().logins == len(docs)


async def test_wrong_password_is_http_200_with_one_failure_message(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    docs = await _logins(session, emu, "wrong")
    for doc in docs:
        header, response = doc["header"], doc["response"]
        assert isinstance(header, dict)
        assert isinstance(response, dict)
        assert header["code"] == "401"
        assert header["userMessage"] != "OK"
        assert len(response["result"]) == 1
        assert response["result"][0] != "success"
    stats = emu.ega.stats()
    assert (stats.logins, stats.login_failures) == (0, len(docs))


async def test_lost_sessions_answer_991(session: aiohttp.ClientSession) -> None:
    async with Emulator(Catalog.demo(), ega=EgaOptions(session_idle=60)) as emu:
        token = await login(session, emu)
        # Each use restarts the idle time.
        for _ in range(3):
            emu.ega.advance(50)
            assert (await get(session, emu, "/datasets", token))["header"]["code"] == "200"
        emu.ega.advance(61)
        lost = await get(session, emu, "/datasets", token)
        assert lost["header"]["code"] == lost["header"]["errorCode"] == "991"
        assert lost["header"]["userMessage"] == "Session lost"
        assert lost["response"]["result"] == []
        # On demand, without a session, with a made-up one, after logout.
        token = await login(session, emu)
        assert emu.ega.expire_sessions() == 1
        assert (await get(session, emu, "/datasets", token))["header"]["code"] == "991"
        assert (await get(session, emu, "/datasets", None))["header"]["code"] == "991"
        assert (await get(session, emu, "/datasets", "nope"))["header"]["code"] == "991"
        token = await login(session, emu)
        logout = await get(session, emu, "/users/logout", token)
        assert logout["response"]["result"] == ["logged out"]
        assert (await get(session, emu, "/requests", token))["header"]["code"] == "991"
        assert emu.ega.stats().sessions_lost == 5


async def test_datasets_and_their_files(emu: Emulator, session: aiohttp.ClientSession) -> None:
    token = await login(session, emu)
    assert (await get(session, emu, "/datasets", token))["response"]["result"] == [DATASET]
    doc = await get(session, emu, f"/datasets/{DATASET}/files", token)
    files = doc["response"]["result"]
    assert doc["response"]["numTotalResults"] == 3
    assert files[0] == {
        "fileDataset": DATASET,
        "fileID": FILE_A,
        "fileIndex": "keke.txt",
        "fileMD5": "TODO: MD5",
        "fileName": "/arrays/331-01-3TD.CEL.cip",
        "fileSize": "100003",
        "fileStatus": "available",
    }
    assert [f["fileID"] for f in files] == [FILE_A, FILE_B, FILE_C]
    assert [f["fileSize"] for f in files] == [
        str(emu.ega.file(f).size) for f in (FILE_A, FILE_B, FILE_C)
    ]
    one = await get(session, emu, f"/files/{FILE_B}", token)
    assert one["response"]["result"] == [files[1]]
    # The docs: an unknown (or unauthorised) dataset gives no results, not an error.
    for path in ("/datasets/EGAD00000000001/files", "/files/EGAF00000000001"):
        empty = await get(session, emu, path, token)
        assert (empty["header"]["code"], empty["response"]["result"]) == ("200", [])


async def test_requests_by_dataset_and_by_file(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    token = await login(session, emu)
    made = (await new_request(session, emu, token, DATASET, label="all"))["response"]["result"]
    assert [t["fileID"] for t in made] == [FILE_A, FILE_B, FILE_C]
    assert made[0] == {
        "encryptionKey": "",
        "fileID": FILE_A,
        "fileName": "/arrays/331-01-3TD.CEL.cip",
        "fileSize": "100003",
        "fileType": "EBI",
        "label": "all",
        "ticket": made[0]["ticket"],
        "transferTarget": "",
        "transferType": "",
        "user": USER,
    }
    assert UUID.fullmatch(made[0]["ticket"])
    one = (await new_request(session, emu, token, FILE_B, label="one"))["response"]["result"]
    assert [t["fileID"] for t in one] == [FILE_B]
    assert one[0]["ticket"] not in {t["ticket"] for t in made}
    listed = await get(session, emu, "/requests/all", token)
    assert listed["response"]["result"] == made
    assert listed["response"]["resultType"] == "us.monoid.json.JSONObject"
    everything = await get(session, emu, "/requests", token)
    assert everything["response"]["result"] == made + one
    by_ticket = await get(session, emu, f"/requests/ticket/{one[0]['ticket']}", token)
    assert by_ticket["response"]["result"] == one
    assert emu.ega.stats().tickets_issued == 4


async def test_a_repeated_label_only_adds_missing_files(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    token = await login(session, emu)
    first = (await new_request(session, emu, token, FILE_A, label="L"))["response"]["result"]
    again = await new_request(session, emu, token, DATASET, label="L", rekey="other")
    tickets = again["response"]["result"]
    assert [t["fileID"] for t in tickets] == [FILE_A, FILE_B, FILE_C]
    assert tickets[0] == first[0]
    assert emu.ega.stats().tickets_issued == 3
    # The kept ticket keeps the rekey it was made with.
    kept = emu.ega.tickets(label="L")[0]
    assert kept.rekey == "my-secret-rekey"
    assert len((await get(session, emu, "/requests/L", token))["response"]["result"]) == 3


async def test_pyega_unquoted_downloadrequest_is_accepted(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    # pyega formats the JSON with neither rekey nor label quoted; org.json took it.
    token = await login(session, emu)
    raw = 'downloadrequest={"rekey":abc123,"downloadType":"STREAM","descriptor":9f-label}'
    url = f"{emu.endpoints['ega_access']}/requests/new/files/{FILE_A}"
    async with session.post(url, data=raw.encode(), params={"session": token}) as response:
        doc = await envelope(response)
    assert doc["header"]["code"] == "200"
    assert doc["response"]["result"][0]["label"] == "9f-label"
    (ticket,) = emu.ega.tickets(label="9f-label")
    assert ticket.rekey == "abc123"


async def test_bad_and_forbidden_requests(session: aiohttp.ClientSession) -> None:
    catalog = Catalog.demo().merge(Catalog.generate_ega("EGAD00010000999", files=2))
    grants = {USER: [DATASET]}
    async with Emulator(catalog, ega=EgaOptions(grants=grants)) as emu:
        token = await login(session, emu)
        url = f"{emu.endpoints['ega_access']}/requests/new/datasets/{DATASET}"
        for body in ("", 'downloadrequest={"downloadType":"STREAM","descriptor":"x"}'):
            async with session.post(url, data=body.encode(), params={"session": token}) as r:
                doc = await envelope(r)
            assert doc["header"]["code"] == "400"
            assert len(doc["response"]["result"]) == 1
        for target in ("EGAD00010000999", "EGAD00000000001", "EGAF00000000001"):
            doc = await new_request(session, emu, token, target)
            assert doc["header"]["code"] == "403", target
        assert (await get(session, emu, "/datasets", token))["response"]["result"] == [DATASET]
        hidden = await get(session, emu, "/datasets/EGAD00010000999/files", token)
        assert hidden["response"]["result"] == []
        assert emu.ega.stats().tickets_issued == 0


async def test_deleting_tickets_and_requests(emu: Emulator, session: aiohttp.ClientSession) -> None:
    token = await login(session, emu)
    made = (await new_request(session, emu, token, DATASET, label="del"))["response"]["result"]
    a, b, c = (t["ticket"] for t in made)
    one = await get(session, emu, f"/requests/delete/del/{a}", token)
    assert one["response"]["result"] == [a]
    url = f"{emu.endpoints['ega_access']}/requests/ticket/delete/{b}"
    async with session.delete(url, params={"session": token}) as response:
        assert (await envelope(response))["response"]["result"] == [b]
    rest = await get(session, emu, "/requests/delete/del", token)
    assert rest["response"]["result"] == [c]
    assert (await get(session, emu, "/requests/del", token))["response"]["result"] == []
    nothing = await get(session, emu, "/requests/delete/del", token)
    assert (nothing["header"]["code"], nothing["response"]["result"]) == ("200", [])
    for ticket in (a, b, c):
        url = f"{emu.endpoints['ega_download']}/downloads/{ticket}"
        async with session.get(url) as response:
            assert response.status == 404
    assert emu.ega.stats().tickets_deleted == 3


async def test_faults_apply_to_json_calls(emu: Emulator, session: aiohttp.ClientSession) -> None:
    token = await login(session, emu)
    emu.faults.add(Fault(kind="status", status=503, host="ega", match="*/datasets", times=1))
    emu.faults.add(Fault(kind="truncate", host="ega", match="*/files", after_bytes=50, times=1))
    url = emu.endpoints["ega_access"] + "/datasets"
    async with session.get(url, params={"session": token}) as response:
        assert response.status == 503
    assert (await get(session, emu, "/datasets", token))["header"]["code"] == "200"
    url = f"{emu.endpoints['ega_access']}/datasets/{DATASET}/files"
    try:
        async with session.get(url, params={"session": token}) as response:
            await response.read()
    except aiohttp.ClientPayloadError:
        pass
    else:
        raise AssertionError("the truncated listing read as complete")
    await emu.wait_idle()
    assert [e.fault for e in emu.log if e.fault] == ["status", "truncate"]
