"""``dest/index.tsv``: every planned file, its status and what it was checked against."""

from __future__ import annotations

import asyncio
import os
import secrets
from pathlib import Path

from ._dest import Destination
from ._exceptions import StateError
from ._http import redact_url
from ._state import Store

__all__ = ["INDEX_COLUMNS", "write_index"]

INDEX_COLUMNS = (
    "source",
    "accession",
    "path",
    "bytes",
    "md5",
    "url",
    "status",
    "verified_by",
    "reason",
)
_PAGE = 2000


async def write_index(store: Store, generation: int, dest: Destination) -> Path:
    """Rewrite ``dest/index.tsv`` from the store, streamed and atomic.

    Lists every file planned by ``generation`` and every file verified earlier. Each
    process of a pull writes it as it ends: each through a temporary file of its own,
    so the last rename wins with a complete index.
    """
    path = dest.root / "index.tsv"
    try:
        return await _write(store, generation, dest, path)
    except OSError as exc:
        raise StateError(
            f"cannot write {path}: {exc.strerror or exc}; the files and the state store "
            "are kept: re-run once it can be written"
        ) from exc


async def _write(store: Store, generation: int, dest: Destination, path: Path) -> Path:
    tmp = dest.root / ".mirror" / f"index.tsv.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    out = await asyncio.to_thread(dest.stage, path, tmp=tmp)
    try:
        lines = ["\t".join(INDEX_COLUMNS)]
        # An incremental pull (EnteroBase reldate) plans only what is new: the files
        # verified by earlier generations are still in the mirror, so they stay listed.
        async for f in store.files(generation, with_verified=True):
            size = f.bytes if f.bytes is not None else (f.size or 0)
            lines.append(
                "\t".join(
                    _clean(v)
                    for v in (
                        f.source,
                        f.accession,
                        f.location,
                        str(size),
                        f.md5 or "",
                        redact_url(f.url),
                        f.status.value,
                        f.verified_by or "",
                        f.reason or "",
                    )
                )
            )
            if len(lines) >= _PAGE:
                await asyncio.to_thread(out.write, "\n".join(lines) + "\n")
                lines = []
        if lines:
            await asyncio.to_thread(out.write, "\n".join(lines) + "\n")
        await asyncio.to_thread(out.commit)
    except BaseException:
        # Named per writer: a failed one would stay behind for good.
        await asyncio.to_thread(out.abort)
        raise
    return path


def _clean(value: str) -> str:
    return value.replace("\t", " ").replace("\n", " ")
