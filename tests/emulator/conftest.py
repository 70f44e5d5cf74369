"""Fixtures: a running demo emulator and a client session that does not decode bodies."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from mirror.emulator import Catalog, Emulator, EnaOptions


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    # No portal rate limit here: only the rate-limit tests want 429s.
    async with Emulator(Catalog.demo(), ena=EnaOptions(portal_rate_limit=None)) as emulator:
        yield emulator


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    # Like the engine: never decode Content-Encoding, or gzip'd files fail MD5.
    async with aiohttp.ClientSession(auto_decompress=False) as client:
        yield client
