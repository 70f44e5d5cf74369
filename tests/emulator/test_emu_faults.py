"""Each fault kind, seen from the client side, plus times/probability/host selection."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
from typing import Literal

import aiohttp
import pytest

from mirror.emulator import Catalog, Emulator, Fault, FaultSet

from .helpers import FASTQ_1

PAYLOAD_ERRORS = (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError)


async def _fetch(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    async with session.get(url, headers=headers) as response:
        return response.status, dict(response.headers), await response.read()


async def test_status_with_retry_after(emu: Emulator, session: aiohttp.ClientSession) -> None:
    emu.faults.add(Fault(kind="status", status=429, retry_after=7, times=1))
    status, headers, _ = await _fetch(session, emu.ena.file_url(FASTQ_1))
    assert (status, headers["Retry-After"]) == (429, "7")
    status, headers, body = await _fetch(session, emu.ena.file_url(FASTQ_1))
    assert status == 200
    assert "Retry-After" not in headers
    assert body == emu.ena.file_bytes(FASTQ_1)


async def test_status_together_holds_answers_until_all_have_arrived(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    emu.faults.add(Fault(kind="status", status=401, times=2, together=2))
    first = asyncio.ensure_future(_fetch(session, emu.ena.file_url(FASTQ_1)))
    await asyncio.sleep(0.2)  # not a sync point: gives the first the time to be answered
    second = await _fetch(session, emu.ena.file_url(FASTQ_1))
    assert (second[0], (await first)[0]) == (401, 401)
    await emu.wait_idle()
    one, two = emu.log
    # The first answer waited for the second request.
    assert one.ended is not None
    assert one.ended >= two.t > one.t + 0.1
    third = await _fetch(session, emu.ena.file_url(FASTQ_1))
    assert third[0] == 200


@pytest.mark.parametrize("kind", ["reset", "truncate"])
async def test_cut_connections_deliver_exactly_after_bytes(
    emu: Emulator, session: aiohttp.ClientSession, kind: Literal["reset", "truncate"]
) -> None:
    emu.faults.add(Fault(kind=kind, match="*/ERR164407_1.fastq.gz", after_bytes=70_000))
    received = bytearray()

    async def download() -> None:
        async with session.get(emu.ena.file_url(FASTQ_1)) as response:
            assert response.headers["Content-Length"] == str(emu.ena.file(FASTQ_1).size)
            async for piece in response.content.iter_any():
                received.extend(piece)

    with pytest.raises(PAYLOAD_ERRORS) as caught:
        await download()
    assert bytes(received) == emu.ena.file_bytes(FASTQ_1)[:70_000]
    if kind == "reset":
        assert "reset" in str(caught.value).lower()
    await emu.wait_idle()
    entry = emu.log[-1]
    assert (entry.fault, entry.bytes, entry.status) == (kind, 70_000, 200)


async def test_short_looks_complete(emu: Emulator, session: aiohttp.ClientSession) -> None:
    emu.faults.add(Fault(kind="short", after_bytes=100))
    size = emu.ena.file(FASTQ_1).size
    status, headers, body = await _fetch(session, emu.ena.file_url(FASTQ_1))
    assert status == 200
    assert int(headers["Content-Length"]) == len(body) == size - 100
    assert body == emu.ena.file_bytes(FASTQ_1)[: size - 100]
    status, headers, body = await _fetch(
        session, emu.ena.file_url(FASTQ_1), {"Range": "bytes=1000-"}
    )
    assert status == 206
    assert headers["Content-Range"] == f"bytes 1000-{size - 101}/{size}"
    assert len(body) == size - 1100


@pytest.mark.parametrize("offset", [None, 0, (1 << 20) + 3])
async def test_corrupt_flips_one_byte(
    emu: Emulator, session: aiohttp.ClientSession, offset: int | None
) -> None:
    emu.faults.add(Fault(kind="corrupt", offset=offset, times=1))
    good = emu.ena.file_bytes(FASTQ_1)
    _, _, body = await _fetch(session, emu.ena.file_url(FASTQ_1))
    assert len(body) == len(good)
    position = len(good) // 2 if offset is None else offset
    assert body[position] == good[position] ^ 0xFF
    assert body[:position] == good[:position]
    assert body[position + 1 :] == good[position + 1 :]
    assert hashlib.md5(body).hexdigest() != emu.ena.file_md5(FASTQ_1)
    _, _, body = await _fetch(session, emu.ena.file_url(FASTQ_1))
    assert body == good


async def test_corrupt_waits_for_a_range_that_covers_it(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    emu.faults.add(Fault(kind="corrupt", offset=500, times=1))
    good = emu.ena.file_bytes(FASTQ_1)
    _, _, body = await _fetch(session, emu.ena.file_url(FASTQ_1), {"Range": "bytes=1000-"})
    assert body == good[1000:]
    _, _, body = await _fetch(session, emu.ena.file_url(FASTQ_1), {"Range": "bytes=0-999"})
    assert body[500] == good[500] ^ 0xFF
    await emu.wait_idle()
    assert [entry.fault for entry in emu.log] == [None, "corrupt"]


async def test_slow_paces_the_body(emu: Emulator, session: aiohttp.ClientSession) -> None:
    emu.faults.add(Fault(kind="slow", bytes_per_second=40_000))
    path = "vol1/fastq/ERR120/001/ERR120000001/ERR120000001_2.fastq.gz"  # 3 KiB
    async with session.get(emu.ena.file_url(path)) as response:
        body = await response.read()
    assert body == emu.ena.file_bytes(path)
    await emu.wait_idle()
    assert emu.log[-1].fault == "slow"


async def test_no_range_answers_200_full(emu: Emulator, session: aiohttp.ClientSession) -> None:
    emu.faults.add(Fault(kind="no_range"))
    status, headers, body = await _fetch(session, emu.ena.file_url(FASTQ_1), {"Range": "bytes=10-"})
    assert status == 200
    assert "Content-Range" not in headers
    assert body == emu.ena.file_bytes(FASTQ_1)


async def test_gzip_header_breaks_a_decoding_client(emu: Emulator) -> None:
    emu.faults.add(Fault(kind="gzip_header"))
    async with aiohttp.ClientSession(auto_decompress=False) as raw:
        _status, headers, body = await _fetch(raw, emu.ena.file_url(FASTQ_1))
    assert headers["Content-Encoding"] == "gzip"
    assert body == emu.ena.file_bytes(FASTQ_1)
    # The .fastq.gz is a real gzip stream, as on ENA: a client that decodes it gets
    # the uncompressed bytes, silently, and the file's size and MD5 no longer match.
    async with aiohttp.ClientSession() as decoding:
        _status, _headers, decoded = await _fetch(decoding, emu.ena.file_url(FASTQ_1))
    assert decoded == gzip.decompress(body)
    assert len(decoded) < len(body)


async def test_portal_faults(emu: Emulator, session: aiohttp.ClientSession) -> None:
    emu.faults.add(Fault(kind="status", match="*/filereport", status=503, retry_after=2, times=1))
    emu.faults.add(Fault(kind="truncate", match="/ena/portal/api/search", after_bytes=10))
    url = emu.endpoints["ena_portal"]
    params = {"accession": "PRJEB40001", "result": "read_run", "fields": "fastq_ftp"}
    async with session.get(url + "/filereport", params=params) as response:
        assert (response.status, response.headers["Retry-After"]) == (503, "2")
    async with session.get(url + "/filereport", params=params) as response:
        assert response.status == 200
    with pytest.raises(PAYLOAD_ERRORS):
        async with session.get(url + "/search", params={"result": "read_run"}) as response:
            await response.read()


async def test_times_and_host_filter(emu: Emulator, session: aiohttp.ClientSession) -> None:
    emu.faults.add(Fault(kind="status", status=500, host="www", times=2))
    for _ in range(3):
        status, _, _ = await _fetch(session, emu.ena.file_url(FASTQ_1), {"Range": "bytes=0-0"})
        assert status == 206
    url = emu.endpoints["ena_portal"] + "/returnFields?result=read_run"
    statuses = [(await _fetch(session, url))[0] for _ in range(3)]
    assert statuses == [500, 500, 200]
    (fault,) = emu.faults
    assert emu.faults.used(fault) == 2


def _draws(seed: int) -> list[bool]:
    faults = FaultSet([Fault(kind="status", probability=0.5)], seed=seed)
    picks = (faults.pick(host="ftp", path="/x", applicable=lambda _: True) for _ in range(40))
    return [fault is not None for fault in picks]


def test_probability_is_reproducible_from_the_seed() -> None:
    assert _draws(1) == _draws(1)
    assert _draws(1) != _draws(2)
    assert 5 < sum(_draws(1)) < 35


def test_first_applicable_fault_wins() -> None:
    first = Fault(kind="corrupt", offset=10)
    second = Fault(kind="status")
    faults = FaultSet([first, second])
    assert faults.pick(host="ftp", path="/a", applicable=lambda f: f.kind != "corrupt") is second
    assert faults.pick(host="ftp", path="/a", applicable=lambda _: True) is first


def test_fault_json_round_trip_and_validation() -> None:
    fault = Fault(kind="reset", match="*_2.fastq.gz", after_bytes=1000, times=1)
    assert Fault.from_dict(json.loads(json.dumps(fault.to_dict()))) == fault
    # Defaults are left out, so a faults file stays short.
    assert fault.to_dict() == {
        "kind": "reset",
        "match": "*_2.fastq.gz",
        "after_bytes": 1000,
        "times": 1,
    }
    with pytest.raises(ValueError, match="kind"):
        Fault.from_dict({"kind": "explode"})
    with pytest.raises(ValueError, match="unknown fault key"):
        Fault.from_dict({"kind": "status", "colour": "red"})
    with pytest.raises(ValueError, match="bytes_per_second"):
        Fault(kind="slow")
    with pytest.raises(ValueError, match="after_bytes"):
        Fault(kind="short")


async def test_faults_from_the_constructor(session: aiohttp.ClientSession) -> None:
    async with Emulator(Catalog.demo(), faults=[Fault(kind="status", status=502)]) as emu:
        status, _, _ = await _fetch(session, emu.ena.file_url(FASTQ_1))
        assert status == 502
        emu.faults.clear()
        status, _, _ = await _fetch(session, emu.ena.file_url(FASTQ_1))
        assert status == 200
