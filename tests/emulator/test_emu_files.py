"""The emulated file host: headers, RFC 7233 ranges, If-Range, HEAD, 404."""

from __future__ import annotations

import asyncio
import hashlib

import aiohttp
import pytest

from mirror.emulator import Catalog, Emulator, FilesOptions
from mirror.emulator._blob import LAST_MODIFIED, RangePlan, plan_range

from .helpers import FASTQ_1

SIZE = 1000


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        pytest.param(None, RangePlan(200, 0, SIZE), id="no-range"),
        pytest.param("bytes=0-99", RangePlan(206, 0, 100), id="first-last"),
        pytest.param("bytes=900-", RangePlan(206, 900, SIZE), id="open-ended"),
        pytest.param("bytes=-100", RangePlan(206, 900, SIZE), id="suffix"),
        pytest.param("bytes=-5000", RangePlan(206, 0, SIZE), id="suffix-longer-than-file"),
        pytest.param("bytes=990-5000", RangePlan(206, 990, SIZE), id="last-clamped"),
        pytest.param("bytes=999-999", RangePlan(206, 999, SIZE), id="last-byte"),
        pytest.param("bytes=1000-", RangePlan(416, 0, 0), id="start-at-size"),
        pytest.param("bytes=2000-3000", RangePlan(416, 0, 0), id="start-past-size"),
        pytest.param("bytes=-0", RangePlan(416, 0, 0), id="empty-suffix"),
        pytest.param("bytes=5-1", RangePlan(200, 0, SIZE), id="inverted-ignored"),
        pytest.param("bytes=0-1,5-6", RangePlan(200, 0, SIZE), id="multi-range-full"),
        pytest.param("items=0-1", RangePlan(200, 0, SIZE), id="other-unit"),
        pytest.param("bytes=x-1", RangePlan(200, 0, SIZE), id="garbage"),
    ],
)
def test_plan_range(header: str | None, expected: RangePlan) -> None:
    assert plan_range(SIZE, header, etag='"e"') == expected


@pytest.mark.parametrize(
    ("if_range", "status"),
    [
        pytest.param('"e"', 206, id="etag-matches"),
        pytest.param(LAST_MODIFIED, 206, id="date-matches"),
        pytest.param('"other"', 200, id="etag-differs"),
        pytest.param('W/"e"', 200, id="weak-never-matches"),
        pytest.param("Tue, 02 Jan 2024 00:00:00 GMT", 200, id="date-differs"),
    ],
)
def test_plan_range_if_range(if_range: str, status: int) -> None:
    assert plan_range(SIZE, "bytes=10-", if_range=if_range, etag='"e"').status == status


async def test_full_get_headers_and_body(emu: Emulator, session: aiohttp.ClientSession) -> None:
    async with session.get(emu.ena.file_url(FASTQ_1)) as response:
        body = await response.read()
        headers = response.headers
        assert response.status == 200
    assert body == emu.ena.file_bytes(FASTQ_1)
    assert hashlib.md5(body).hexdigest() == emu.ena.file_md5(FASTQ_1)
    assert headers["Content-Length"] == str(len(body))
    assert headers["Content-Type"] == "application/octet-stream"
    assert headers["Accept-Ranges"] == "bytes"
    assert headers["Last-Modified"] == LAST_MODIFIED
    assert headers["ETag"].startswith('"')
    assert not headers["ETag"].startswith("W/")
    assert "Content-Encoding" not in headers


async def test_range_206_and_resume_reassembles(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    url = emu.ena.file_url(FASTQ_1)
    whole = emu.ena.file_bytes(FASTQ_1)
    cut = (1 << 20) + 12_345
    async with session.get(url, headers={"Range": f"bytes={cut}-"}) as response:
        assert response.status == 206
        assert response.headers["Content-Range"] == f"bytes {cut}-{len(whole) - 1}/{len(whole)}"
        tail = await response.read()
    assert whole[:cut] + tail == whole
    async with session.get(url, headers={"Range": "bytes=-10"}) as response:
        assert response.status == 206
        assert await response.read() == whole[-10:]


async def test_unsatisfiable_range_is_416(emu: Emulator, session: aiohttp.ClientSession) -> None:
    size = emu.ena.file(FASTQ_1).size
    async with session.get(
        emu.ena.file_url(FASTQ_1), headers={"Range": f"bytes={size}-"}
    ) as response:
        assert response.status == 416
        assert response.headers["Content-Range"] == f"bytes */{size}"
        assert await response.read() == b""


async def test_if_range(emu: Emulator, session: aiohttp.ClientSession) -> None:
    url = emu.ena.file_url(FASTQ_1)
    async with session.head(url) as response:
        etag = response.headers["ETag"]
    async with session.get(url, headers={"Range": "bytes=5-", "If-Range": etag}) as response:
        assert response.status == 206
    stale = {"Range": "bytes=5-", "If-Range": '"stale-etag"'}
    async with session.get(url, headers=stale) as response:
        assert response.status == 200
        assert await response.read() == emu.ena.file_bytes(FASTQ_1)


async def test_head(emu: Emulator, session: aiohttp.ClientSession) -> None:
    async with session.head(emu.ena.file_url(FASTQ_1), headers={"Range": "bytes=0-9"}) as response:
        assert response.status == 206
        assert response.headers["Content-Length"] == "10"
        assert await response.read() == b""
    await emu.wait_idle()
    assert emu.log[-1].bytes == 0


@pytest.mark.parametrize(
    "path",
    ["/vol1/fastq/ERR164/007/ERR164407/ERR164407_9.fastq.gz", "/vol1/", "/pub/x", "/"],
)
async def test_unknown_paths_are_404(
    emu: Emulator, session: aiohttp.ClientSession, path: str
) -> None:
    async with session.get(emu.endpoints["ena_files"] + path) as response:
        assert response.status == 404


async def test_range_support_off(session: aiohttp.ClientSession) -> None:
    async with Emulator(Catalog.demo(), files=FilesOptions(range_support=False)) as emu:
        headers = {"Range": "bytes=5-"}
        async with session.get(emu.ena.file_url(FASTQ_1), headers=headers) as response:
            assert response.status == 200
            assert response.headers["Accept-Ranges"] == "none"
            assert await response.read() == emu.ena.file_bytes(FASTQ_1)


async def test_bandwidth_caps_each_response(session: aiohttp.ClientSession) -> None:
    path = "vol1/fastq/ERR408/002/ERR4080002/ERR4080002.fastq.gz"  # 1 KiB
    async with Emulator(Catalog.demo(), files=FilesOptions(bandwidth=4096)) as emu:
        loop_time = asyncio.get_running_loop().time
        start = loop_time()
        async with session.get(emu.ena.file_url(path)) as response:
            assert await response.read() == emu.ena.file_bytes(path)
        # 1024 bytes in 512-byte pieces at 4096 B/s: the second piece waits 1/8 s.
        assert loop_time() - start >= 0.12
