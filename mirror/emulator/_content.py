"""Deterministic file content generated from (path, size), so multi-GB files need no disk."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterator

__all__ = [
    "BLOCK_SIZE",
    "content_block",
    "content_bytes",
    "iter_blocks",
    "iter_range",
    "md5_of",
    "sha1_of",
]

BLOCK_SIZE = 1 << 20
# Odd multiplier (Knuth's golden-ratio constant): spreads the per-chunk rotations so
# that neighbouring MiB chunks of one file differ, and a byte-offset bug in a client's
# resume logic changes the MD5 instead of landing on identical data.
_ROTATION = 2654435761


# Blocks of small files are cheaper to make again than to cache, and caching them
# would evict the big files' blocks while a million-file report is being written.
_CACHE_ABOVE = 64 * 1024


def _generate(path: str, size: int) -> bytes:
    # SHAKE-128 is ~2x faster than random.randbytes and keyed by the whole identity;
    # a file smaller than a block *is* its block, so a million 1 KiB files cost
    # microseconds each rather than a MiB of generation each.
    return hashlib.shake_128(f"{path}\0{size}".encode()).digest(min(size, BLOCK_SIZE))


_cached_block = functools.lru_cache(maxsize=64)(_generate)


def content_block(path: str, size: int) -> bytes:
    """The block a file's chunks are rotations of (``min(size, BLOCK_SIZE)`` bytes)."""
    return _cached_block(path, size) if size > _CACHE_ABOVE else _generate(path, size)


def _rotation(index: int, length: int) -> int:
    return (index * _ROTATION) % length


def iter_range(
    path: str, size: int, start: int = 0, end: int | None = None, chunk: int = BLOCK_SIZE
) -> Iterator[memoryview]:
    """Yield the bytes ``[start, end)`` of the file (``end`` exclusive, default ``size``).

    Chunk ``k`` of the file (bytes ``k*B .. (k+1)*B``) is the file's block rotated left
    by a k-dependent offset; the last chunk is cut at ``size``. Pieces are memoryviews
    of the cached block, at most ``chunk`` bytes long.
    """
    if end is None:
        end = size
    if not 0 <= start <= end <= size:
        raise ValueError(f"range [{start}, {end}) outside file of {size} bytes")
    if chunk <= 0:
        raise ValueError("chunk must be positive")
    if start == end:
        return
    yield from iter_blocks(content_block(path, size), start, end, chunk)


def iter_blocks(
    block: bytes, start: int, end: int, chunk: int = BLOCK_SIZE
) -> Iterator[memoryview]:
    """Bytes ``[start, end)`` of a file whose chunk ``k`` is ``block`` rotated as in
    ``iter_range``; other files built that way (EGA's rekeyed streams) reuse it."""
    view = memoryview(block)
    length = len(view)
    pos = start
    while pos < end:
        index, within = divmod(pos, length)
        src = (_rotation(index, length) + within) % length
        # One piece never crosses the block's wrap-around point nor a chunk boundary.
        take = min(end - pos, length - within, length - src, chunk)
        yield view[src : src + take]
        pos += take


def content_bytes(path: str, size: int, start: int = 0, end: int | None = None) -> bytes:
    """The file's bytes ``[start, end)`` as one object; meant for small files and tests."""
    return b"".join(iter_range(path, size, start, end))


@functools.lru_cache(maxsize=16384)
def md5_of(path: str, size: int) -> str:
    """MD5 hex digest of the generated file, computed by hashing the stream (cached)."""
    if size <= BLOCK_SIZE:
        return hashlib.md5(content_block(path, size)).hexdigest()
    digest = hashlib.md5()
    for piece in iter_range(path, size):
        digest.update(piece)
    return digest.hexdigest()


@functools.lru_cache(maxsize=16384)
def sha1_of(path: str, size: int) -> str:
    """SHA-1 hex digest of the generated file (MGnify lists SHA1, not MD5), cached."""
    digest = hashlib.sha1()
    for piece in iter_range(path, size):
        digest.update(piece)
    return digest.hexdigest()
