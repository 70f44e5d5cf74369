"""EGA REST v2 downloads: rekeyed streams, Range, ticket removal, /results, faults."""

from __future__ import annotations

import hashlib

import aiohttp
import pytest

from mirror.emulator import Catalog, EgaOptions, Emulator, Fault

from .ega_helpers import (
    DATASET,
    FILE_A,
    FILE_B,
    download,
    get,
    login,
    new_request,
    results,
)


async def _ticket(
    session: aiohttp.ClientSession, emu: Emulator, file_id: str, rekey: str = "k1"
) -> str:
    token = await login(session, emu)
    doc = await new_request(session, emu, token, file_id, rekey=rekey, label=f"{file_id}-{rekey}")
    return str(doc["response"]["result"][0]["ticket"])


async def test_stream_is_the_file_rekeyed(emu: Emulator, session: aiohttp.ClientSession) -> None:
    streams = {}
    for rekey in ("k1", "k2"):
        status, body = await download(session, emu, await _ticket(session, emu, FILE_B, rekey))
        assert status == 200
        assert body == emu.ega.stream_bytes(FILE_B, rekey)
        assert hashlib.md5(body).hexdigest() == emu.ega.stream_md5(FILE_B, rekey)
        streams[rekey] = body
    plain = emu.ega.plain_bytes(FILE_B)
    assert len(streams["k1"]) == len(streams["k2"]) == len(plain) == emu.ega.file(FILE_B).size
    assert len({streams["k1"], streams["k2"], plain}) == 3
    # The same rekey on another file gives another stream.
    assert emu.ega.stream_bytes(FILE_A, "k1") != streams["k1"][: emu.ega.file(FILE_A).size]


async def test_ranges_and_removal_after_the_last_byte(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    ticket = await _ticket(session, emu, FILE_B)
    whole = emu.ega.stream_bytes(FILE_B, "k1")
    size = len(whole)
    url = f"{emu.endpoints['ega_download']}/downloads/{ticket}"
    async with session.get(url, headers={"Range": "bytes=0-99999"}) as response:
        assert response.status == 206
        assert response.headers["Content-Range"] == f"bytes 0-99999/{size}"
        assert await response.read() == whole[:100_000]
    # The start again, and the middle: the ticket lives until its last byte is sent.
    assert await download(session, emu, ticket, "bytes=0-9") == (206, whole[:10])
    assert await download(session, emu, ticket, "bytes=100000-200000") == (
        206,
        whole[100_000:200_001],
    )
    assert len(emu.ega.tickets()) == 1
    not_yet = await results(session, emu, ticket)
    assert not_yet["header"]["code"] == "404"
    assert await download(session, emu, ticket, "bytes=200001-") == (206, whole[200_001:])
    await emu.wait_idle()
    assert emu.ega.tickets() == []
    status, _ = await download(session, emu, ticket, "bytes=0-9")
    assert status == 404
    # The results outlive the ticket: the MD5 of the whole stream, and its size.
    doc = await results(session, emu, ticket, md5=hashlib.md5(whole).hexdigest())
    assert doc["header"]["code"] == "200"
    assert doc["header"]["service"] == "download"
    assert doc["response"]["result"] == [emu.ega.stream_md5(FILE_B, "k1"), str(size)]
    stats = emu.ega.stats()
    assert (stats.tickets_completed, stats.tickets_removed, stats.results_mismatched) == (1, 1, 0)
    await results(session, emu, ticket, md5="0" * 32)
    assert emu.ega.stats().results_mismatched == 1


async def test_without_range_support_the_whole_stream_comes_back(
    session: aiohttp.ClientSession,
) -> None:
    async with Emulator(Catalog.demo(), ega=EgaOptions(range_support=False)) as emu:
        ticket = await _ticket(session, emu, FILE_A)
        url = f"{emu.endpoints['ega_download']}/downloads/{ticket}"
        async with session.get(url, headers={"Range": "bytes=10-19"}) as response:
            assert response.status == 200
            assert response.headers["Accept-Ranges"] == "none"
            assert await response.read() == emu.ega.stream_bytes(FILE_A, "k1")
        await emu.wait_idle()
        assert emu.ega.tickets() == []


async def test_a_cut_download_keeps_its_ticket_for_the_resume(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    ticket = await _ticket(session, emu, FILE_B)
    whole = emu.ega.stream_bytes(FILE_B, "k1")
    emu.faults.add(Fault(kind="reset", host="ega", match="*/downloads/*", after_bytes=70_000))
    url = f"{emu.endpoints['ega_download']}/downloads/{ticket}"
    received = bytearray()

    async def read_until_cut() -> None:
        async with session.get(url) as response:
            async for piece in response.content.iter_any():
                received.extend(piece)

    with pytest.raises(aiohttp.ClientError):
        await read_until_cut()
    assert 0 < len(received) < len(whole)
    assert whole.startswith(received)
    emu.faults.clear()
    await emu.wait_idle()
    assert [t.ticket for t in emu.ega.tickets()] == [ticket]
    status, rest = await download(session, emu, ticket, f"bytes={len(received)}-")
    assert (status, bytes(received) + rest) == (206, whole)
    await emu.wait_idle()
    assert emu.ega.tickets() == []


async def test_short_and_corrupt_streams(emu: Emulator, session: aiohttp.ClientSession) -> None:
    whole = emu.ega.stream_bytes(FILE_A, "k1")
    ticket = await _ticket(session, emu, FILE_A)
    emu.faults.add(Fault(kind="short", host="ega", after_bytes=10, times=1))
    assert await download(session, emu, ticket) == (200, whole[:-10])
    await emu.wait_idle()
    # A short answer never sent the last byte: the ticket is still there.
    assert len(emu.ega.tickets()) == 1
    emu.faults.add(Fault(kind="corrupt", host="ega", offset=5, times=1))
    status, body = await download(session, emu, ticket)
    assert status == 200
    assert body != whole
    assert body[:5] + body[6:] == whole[:5] + whole[6:]
    # The server sent it all, so the ticket is gone; /results gives the MD5 of what it
    # meant to send, which is how a client catches the damage.
    doc = await results(session, emu, ticket, md5=hashlib.md5(body).hexdigest())
    assert doc["response"]["result"][0] == hashlib.md5(whole).hexdigest()
    assert emu.ega.stats().results_mismatched == 1


async def test_status_faults_on_downloads(emu: Emulator, session: aiohttp.ClientSession) -> None:
    ticket = await _ticket(session, emu, FILE_A)
    emu.faults.add(Fault(kind="status", status=503, host="ega", match="*/downloads/*", times=1))
    assert (await download(session, emu, ticket))[0] == 503
    assert (await download(session, emu, ticket))[0] == 200


async def test_expiry_on_demand_and_after_seven_days(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    token = await login(session, emu)
    made = (await new_request(session, emu, token, DATASET))["response"]["result"]
    first, second, third = (t["ticket"] for t in made)
    assert emu.ega.expire_ticket(first) is True
    assert emu.ega.expire_ticket(first) is False
    assert (await download(session, emu, first))[0] == 404
    # An expired ticket has no results either.
    assert (await results(session, emu, first))["header"]["code"] == "404"
    emu.ega.advance(7 * 86400 - 60)
    assert (await download(session, emu, second, "bytes=0-0"))[0] == 206
    emu.ega.advance(120)
    assert (await download(session, emu, third, "bytes=0-0"))[0] == 404
    listed = await get(session, emu, "/requests", await login(session, emu))
    assert listed["response"]["result"] == []
    assert emu.ega.stats().tickets_expired == 3


async def test_wrong_results_fault(session: aiohttp.ClientSession) -> None:
    async with Emulator(Catalog.demo(), ega=EgaOptions(wrong_results=[FILE_A])) as emu:
        for file_id, rekey in ((FILE_A, "k1"), (FILE_B, "k1")):
            ticket = await _ticket(session, emu, file_id, rekey)
            status, body = await download(session, emu, ticket)
            assert status == 200
            await emu.wait_idle()
            server_md5, size = (await results(session, emu, ticket))["response"]["result"]
            assert int(size) == len(body)
            right = server_md5 == hashlib.md5(body).hexdigest()
            assert right is (file_id == FILE_B)
        emu.ega.wrong_results(FILE_A, wrong=False)
        emu.ega.wrong_results(FILE_B)
        ticket = await _ticket(session, emu, FILE_B, "k2")
        _status, body = await download(session, emu, ticket)
        await emu.wait_idle()
        doc = await results(session, emu, ticket)
        assert doc["response"]["result"][0] != hashlib.md5(body).hexdigest()


async def test_download_server_aliases_and_session_param(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    # EgaDemoClient and the docs fetch under /ega/rest/ds/v2; snakemake adds ?session=.
    ticket = await _ticket(session, emu, FILE_A)
    ds = emu.endpoints["ega_download"].replace("/download/v2", "/ds/v2")
    async with session.get(f"{ds}/downloads/{ticket}", params={"session": "x"}) as response:
        assert response.status == 200
        assert await response.read() == emu.ega.stream_bytes(FILE_A, "k1")
    await emu.wait_idle()
    async with session.get(f"{ds}/results/{ticket}") as response:
        assert response.status == 200
        assert (await response.json())["response"]["result"][1] == "100003"
    async with session.head(f"{ds}/downloads/nope") as response:
        assert response.status == 404
