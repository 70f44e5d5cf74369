"""The PostgreSQL state store against a real server."""

from __future__ import annotations

from pathlib import Path

from mirror._state import open_store


async def test_opens(postgres_url: str, tmp_path: Path) -> None:
    store = await open_store(postgres_url, tmp_path)
    assert await store.generation() == 0
    await store.aclose()
