"""``mirror verify``: re-hash verified files against the MD5s recorded when they landed."""

from __future__ import annotations

import asyncio
from pathlib import Path

from ._dest import Destination, LocalDestination
from ._models import TaskStatus
from ._state import StoredFile, open_store

__all__ = ["verify_local"]


async def verify_local(
    dest: Path, state: str | None, *, jobs: int = 2, destination: Destination | None = None
) -> tuple[int, list[tuple[str, str]]]:
    """Re-hash every verified file of the pull (whichever run verified it); mark
    mismatches pending.

    Returns how many files were re-hashed and ``(path, reason)`` for each mismatch.
    ``jobs`` threads hash at once (MD5 is one core's work per file); files stream
    from the store through a small queue, so memory does not grow with the mirror.
    """
    files = destination or LocalDestination(dest)
    store = await open_store(state, dest)
    bad: list[tuple[str, str]] = []
    checked = 0
    queue: asyncio.Queue[StoredFile | None] = asyncio.Queue(maxsize=jobs * 4)

    async def checker() -> None:
        nonlocal checked
        while (f := await queue.get()) is not None:
            try:
                md5, size = await asyncio.to_thread(files.hash, files.final(f.path, f.root))
            except OSError as exc:
                bad.append((f.location, f"cannot read: {exc.strerror or exc}"))
                await store.mark_pending(f.location)
                continue
            checked += 1
            if md5 != f.md5 or (f.bytes is not None and size != f.bytes):
                bad.append(
                    (f.location, f"md5 {md5} ({size} bytes), recorded {f.md5} ({f.bytes} bytes)")
                )
                await store.mark_pending(f.location)

    try:
        generation = await store.generation()
        async with asyncio.TaskGroup() as tg:
            for _ in range(jobs):
                tg.create_task(checker())
            # Every verified file of the pull, not only those the last run planned.
            async for f in store.files(generation, with_verified=True):
                if f.status is TaskStatus.VERIFIED:
                    await queue.put(f)
            for _ in range(jobs):
                await queue.put(None)
    finally:
        await store.aclose()
    bad.sort()
    return checked, bad
