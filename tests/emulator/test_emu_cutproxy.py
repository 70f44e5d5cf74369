"""The cutting proxy: forwards both ways, counts server → client bytes per connection, and
cuts the next connections at an exact byte."""

from __future__ import annotations

import asyncio
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
