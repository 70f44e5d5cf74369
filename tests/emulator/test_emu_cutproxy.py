"""The cutting proxy: forwards both ways, counts bytes per connection each way, and cuts
the next connections at an exact byte, server → client or client → server."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

import pytest

from mirror.emulator._cutproxy import CuttingProxy

BODY = bytes(range(256)) * 400  # 102,400 bytes


@pytest.fixture
async def upstream() -> AsyncIterator[int]:
    """A server that answers each line with the line echoed, then BODY, then closes."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        line = await reader.readline()
        writer.write(line + BODY)
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1]


async def fetch(port: int, line: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(line)
    await writer.drain()
    got = await reader.read()  # to end of stream
    writer.close()
    await writer.wait_closed()
    return got


async def test_the_next_connections_are_cut_at_the_byte_then_whole_again(upstream: int) -> None:
    async with CuttingProxy(("127.0.0.1", upstream)) as proxy:
        proxy.cut_after(1000, times=2)
        first = await fetch(proxy.port, b"one\n")
        second = await fetch(proxy.port, b"two\n")
        third = await fetch(proxy.port, b"three\n")
    assert first == (b"one\n" + BODY)[:1000]
    assert second == (b"two\n" + BODY)[:1000]
    assert third == b"three\n" + BODY
    assert proxy.bytes_sent() == [1000, 1000, len(third)]


async def test_a_cut_at_zero_bytes_closes_before_the_server_says_anything(upstream: int) -> None:
    async with CuttingProxy(("127.0.0.1", upstream)) as proxy:
        proxy.cut_after(0)
        assert await fetch(proxy.port, b"x\n") == b""
        assert proxy.bytes_sent() == [0]
        with pytest.raises(ValueError, match="nbytes >= 0"):
            proxy.cut_after(-1)


@pytest.fixture
async def sink() -> AsyncIterator[tuple[int, asyncio.Queue[int]]]:
    """A server that reads each connection to its end and reports how many bytes came."""
    counts: asyncio.Queue[int] = asyncio.Queue()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        total = 0
        with contextlib.suppress(ConnectionError):
            while chunk := await reader.read(65536):
                total += len(chunk)
        counts.put_nowait(total)
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1], counts


async def upload(port: int, data: bytes) -> None:
    """Send ``data``, then end of stream; return once the proxy has closed the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    with contextlib.suppress(ConnectionError):
        writer.write(data)
        await writer.drain()
        writer.write_eof()
        await reader.read()
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


async def test_an_upload_is_cut_at_the_byte_and_a_shorter_connection_leaves_the_cut(
    sink: tuple[int, asyncio.Queue[int]],
) -> None:
    port, counts = sink
    async with CuttingProxy(("127.0.0.1", port)) as proxy:
        proxy.cut_upload_after(1000)
        await upload(proxy.port, b"x" * 10)  # a listing: never reaches the cut
        assert await asyncio.wait_for(counts.get(), 10) == 10
        await upload(proxy.port, BODY)
        assert await asyncio.wait_for(counts.get(), 10) == 1000
        await upload(proxy.port, BODY)
        assert await asyncio.wait_for(counts.get(), 10) == len(BODY)
        assert proxy.bytes_received() == [10, 1000, len(BODY)]
        with pytest.raises(ValueError, match="nbytes >= 0"):
            proxy.cut_upload_after(-1)


async def test_routes_share_one_count_and_one_set_of_cuts(
    sink: tuple[int, asyncio.Queue[int]],
) -> None:
    port, counts = sink
    with socket.socket() as one, socket.socket() as two:  # two free ports
        one.bind(("127.0.0.1", 0))
        two.bind(("127.0.0.1", 0))
        ports = [one.getsockname()[1], two.getsockname()[1]]
    routes = {p: ("127.0.0.1", port) for p in ports}
    async with CuttingProxy(routes=routes, source="127.0.0.1") as proxy:
        proxy.cut_upload_after(500, times=2)
        for listening in (*ports, ports[0]):
            await upload(listening, BODY)
        got = [await asyncio.wait_for(counts.get(), 10) for _ in range(3)]
        assert got == [500, 500, len(BODY)]
        assert proxy.bytes_received() == got
        assert proxy.port == ports[0]
    with pytest.raises(ValueError, match="either a target or routes"):
        CuttingProxy()
