"""A download's ``.part`` file and the digests of what it holds, written and hashed in threads."""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import functools
import hashlib
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from ._dest import SLICES_SUFFIX, Destination, PartFile

__all__ = ["Digests", "HashThread", "Sink", "drain"]


class Sink:
    """The ``.part`` file and its running digests, written in a thread."""

    def __init__(self, dest: Destination, path: Path, *, sha1: bool) -> None:
        self.dest = dest
        self.path = path
        self.md5 = hashlib.md5()
        self.sha1 = hashlib.sha1() if sha1 else None
        self.size = 0
        #: Where the bytes of this attempt begin (what was already on disk).
        self.started_at = 0
        self._file: PartFile | None = None

    @property
    def is_open(self) -> bool:
        return self._file is not None

    def open(self, sliced: bool = False) -> int:
        """Open the ``.part`` (or start it): bytes it holds.

        The bytes are not hashed yet: the caller first decides whether to trust them
        (:meth:`hash_held`) or start again (:meth:`restart`). With ``sliced``, a
        ``.part`` that has a slice record beside it is left alone: -1.
        """
        if sliced and self.dest.exists(self.path.with_name(self.path.name + SLICES_SUFFIX)):
            return -1
        self._file = self.dest.open_part(self.path)
        return self._file.size()

    def hash_held(self) -> int:
        """Hash what the ``.part`` holds and continue after it: bytes held."""
        assert self._file is not None
        for chunk in self._file.chunks():
            self._update(chunk)
        self.started_at = self.size
        return self.size

    def restart(self) -> None:
        if self._file is None:
            self._file = self.dest.open_part(self.path)
        self._file.restart()
        self.md5 = hashlib.md5()
        self.sha1 = hashlib.sha1() if self.sha1 is not None else None
        self.size = 0
        self.started_at = 0

    def write(self, chunks: list[bytes]) -> None:
        """Write and hash ``chunks`` (one trip to a thread for a short file)."""
        self.append(chunks)
        self.digest(chunks)

    def append(self, chunks: list[bytes]) -> None:
        assert self._file is not None
        self._file.append(chunks)

    def digest(self, chunks: list[bytes]) -> None:
        for data in chunks:
            self._update(data)

    def _update(self, data: bytes | bytearray) -> None:
        self.md5.update(data)
        if self.sha1 is not None:
            self.sha1.update(data)
        self.size += len(data)

    def finish(self, chunks: list[bytes], *, hash: bool = True) -> None:
        """Write (and unless the stream's hash thread does it, hash) the last ``chunks``,
        and close: one trip to a thread for a small file."""
        try:
            if hash:
                self.write(chunks)
            else:
                self.append(chunks)
        finally:
            self.close()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class HashThread:
    """Work run in order on a thread of its own (a file's hash, which hashlib does with
    the GIL released), at most ``ahead`` pieces behind the event loop that queues it."""

    def __init__(self, ahead: int) -> None:
        self._ahead = ahead
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._pending: collections.deque[asyncio.Future[Any]] = collections.deque()
        #: Seconds the loop has waited for room: time the hash, not the socket, cost.
        self.waited = 0.0

    @property
    def started(self) -> bool:
        return self._pool is not None

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="digest")
        self._pending.append(asyncio.wrap_future(self._pool.submit(fn, *args)))

    async def room(self) -> None:
        """Wait until at most ``ahead`` pieces are queued."""
        started = time.monotonic()
        while len(self._pending) >= self._ahead:
            await self._pending.popleft()
        self.waited += time.monotonic() - started

    async def wait(self) -> None:
        """Every queued piece is done (then the thread ends)."""
        try:
            while self._pending:
                await self._pending.popleft()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=False)
                self._pool = None


class Digests(HashThread):
    """A stream's digests, updated from its batches in order on a thread of its own.

    The thread is started with the stream's second batch: a short file's one batch
    is written and hashed in a single trip instead.
    """

    #: Batches the hash may lag behind the writes before the stream waits for it.
    AHEAD = 2

    def __init__(self, sink: Sink) -> None:
        super().__init__(self.AHEAD)
        self._sink = sink

    def add(self, batch: list[bytes]) -> None:
        self.submit(self._sink.digest, batch)


async def drain(
    sink: Sink,
    pending: Awaitable[None] | None,
    recorded: Awaitable[None] | None,
    batch: list[bytes],
    digests: Digests,
) -> None:
    """Finish the write under way, the record of the ``.part``, the last batch and
    the hash of every batch, and close the ``.part``: nothing more is written to it."""
    try:
        if pending is not None:
            await pending
        if recorded is not None:
            await recorded
        if batch:
            loop = asyncio.get_running_loop()
            if digests.started:
                digests.add(batch)
                await loop.run_in_executor(None, functools.partial(sink.finish, batch, hash=False))
            else:
                await loop.run_in_executor(None, sink.finish, batch)
    finally:
        await digests.wait()
