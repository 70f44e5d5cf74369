"""Uploading files to the Webin area: several at once under the host's connection cap,
each resumable, each followed by its ``FILE.md5``.

One file is one control connection (and its data connections, one at a time). A try
that fails with a retryable error (a dropped connection, a 4xx reply, a short file)
is tried again after the engine's backoff, on a new connection logged in afresh, from
the size the area then reports. The MD5 is computed while the file is read for
sending; when sending resumes at byte ``n``, the first ``n`` bytes are read and hashed
first (locally: no bytes go out again), so the MD5 always covers the whole file.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import posixpath
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

from .. import _models as m
from .._credentials import Secret
from .._exceptions import Fatal, MirrorError, RemoteFileChanged, is_usage_error
from .._meter import RateMeter, eta
from .._retry import Retry, Retrying, RetryPolicy
from ._decide import LocalFile, decide
from ._ftps import BLOCK, Endpoint, FtpsClient
from ._state import Record, RecordKey, UploadState

__all__ = ["Target", "UploadOutcome", "UploadSettings", "Uploader", "md5_text"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True, slots=True)
class Target:
    """One local file and where it goes in the area (a relative POSIX path)."""

    local: Path
    remote: str


@dataclass(frozen=True, kw_only=True, slots=True)
class UploadSettings:
    endpoint: Endpoint
    user: str
    password: Secret = field(repr=False)
    state: Path
    #: Files uploading at once (each holds one control and one data connection).
    connections: int = 4
    retry: RetryPolicy = field(default_factory=lambda: RetryPolicy(attempts=8, base=1.0))
    connect_timeout: float = 15.0
    read_timeout: float = 60.0
    #: Seconds between progress events.
    progress_interval: float = 0.5

    def __post_init__(self) -> None:
        if self.connections < 1:
            raise ValueError("connections must be at least 1")


@dataclass(frozen=True, kw_only=True, slots=True)
class UploadOutcome:
    target: Target
    size: int
    md5: str | None
    #: Bytes that went out for this file in this run (0: it was in the area already).
    sent: int
    skipped: bool
    error: str | None = None


def md5_text(md5: str) -> bytes:
    """A ``FILE.md5`` sidecar: "only the 32 digit MD5 value" (ENA's file preparation
    guide), lower case, nothing else."""
    return md5.lower().encode("ascii")


class _Blocks:
    """The local file from ``offset``, a block at a time, read and hashed in a thread
    while the previous block is on its way; the bytes before ``offset`` are hashed
    first (unless the MD5 is known already)."""

    def __init__(self, path: Path, offset: int, *, hashed: bool) -> None:
        self._path, self._offset = path, offset
        self._md5 = hashlib.md5(usedforsecurity=False) if hashed else None
        self._file = path.open("rb")
        self._next: asyncio.Future[bytes] | None = None

    def _prefix(self) -> None:
        if self._md5 is None:
            self._file.seek(self._offset)
            return
        left = self._offset
        while left > 0:
            block = self._file.read(min(BLOCK * 4, left))
            if not block:
                raise RemoteFileChanged(f"{self._path} shrank while it was read")
            self._md5.update(block)
            left -= len(block)

    def _read(self) -> bytes:
        block = self._file.read(BLOCK)
        if self._md5 is not None:
            self._md5.update(block)
        return block

    async def start(self) -> None:
        await asyncio.to_thread(self._prefix)

    async def next(self) -> bytes:
        loop = asyncio.get_running_loop()
        pending = self._next or loop.run_in_executor(None, self._read)
        block = await pending
        self._next = loop.run_in_executor(None, self._read) if block else None
        return block

    async def rest(self) -> None:
        """Hash what is left without sending it (the area had every byte already)."""
        while await self.next():
            pass

    def hexdigest(self) -> str | None:
        return self._md5.hexdigest() if self._md5 is not None else None

    async def aclose(self) -> None:
        if self._next is not None:
            # The thread cannot be stopped: let it finish before its file is closed.
            with contextlib.suppress(Exception):
                await asyncio.wait([self._next])
            self._next = None
        self._file.close()


@contextlib.asynccontextmanager
async def _blocks(path: Path, offset: int, *, hashed: bool) -> AsyncIterator[_Blocks]:
    blocks = await asyncio.to_thread(_Blocks, path, offset, hashed=hashed)
    try:
        await blocks.start()
        yield blocks
    finally:
        await blocks.aclose()


def _hash_file(path: Path) -> str:
    md5 = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        while block := f.read(BLOCK * 4):
            md5.update(block)
    return md5.hexdigest()


class _Pool:
    """Logged-in connections between files: logging in (TCP, TLS, USER/PASS, PBSZ, PROT,
    TYPE) costs more round trips than a small file's upload."""

    def __init__(
        self, open_: Callable[[], contextlib.AbstractAsyncContextManager[FtpsClient]]
    ) -> None:
        self._open = open_
        self._idle: list[tuple[FtpsClient, contextlib.AsyncExitStack]] = []

    @contextlib.asynccontextmanager
    async def client(self) -> AsyncIterator[FtpsClient]:
        ftp, stack = await self._take()
        try:
            yield ftp
        except BaseException:
            await stack.aclose()
            raise
        self._idle.append((ftp, stack))

    async def _take(self) -> tuple[FtpsClient, contextlib.AsyncExitStack]:
        while self._idle:
            ftp, stack = self._idle.pop()
            # The server may have closed it while idle (vsftpd's idle_session_timeout).
            try:
                if (await ftp.command("NOOP")).code == 200:
                    return ftp, stack
            except MirrorError:
                pass
            await stack.aclose()
        stack = contextlib.AsyncExitStack()
        try:
            ftp = await stack.enter_async_context(self._open())
        except BaseException:
            await stack.aclose()
            raise
        return ftp, stack

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for _, stack in idle:
            with contextlib.suppress(Exception):
                await stack.aclose()


@dataclass
class _Live:
    size: int
    done: int = 0
    waiting: str | None = None
    #: Bytes of it that went out in this run.
    sent: int = 0
    #: ``(offset, bytes handed to the connection)`` of a try that did not finish: what
    #: the area then holds says how many of them arrived (the rest sat in buffers).
    unfinished: tuple[int, int] | None = None


class Uploader:
    """Uploads targets and tells how it goes through ``emit`` (the run's events)."""

    def __init__(self, settings: UploadSettings, emit: Callable[[m.Event], None]) -> None:
        self.settings = settings
        self.emit = emit
        self._state: UploadState | None = None
        self._active: dict[str, _Live] = {}
        self._sent = 0
        self._done_bytes = 0
        self._verified = 0
        self._failed = 0
        self._total = 0
        self._meter = RateMeter()
        self._pool = _Pool(self._open)
        #: Directories made (or found) in the area in this run: MKD once each.
        self._made: set[str] = set()

    async def __aenter__(self) -> Uploader:
        self._state = await asyncio.to_thread(UploadState, self.settings.state)
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self._pool.aclose()
        finally:
            if self._state is not None:
                await asyncio.to_thread(self._state.close)

    def key(self, remote: str) -> RecordKey:
        e = self.settings.endpoint
        return RecordKey(host=f"{e.host}:{e.port}", user=self.settings.user, remote=remote)

    async def record(self, remote: str) -> Record | None:
        assert self._state is not None
        return await asyncio.to_thread(self._state.get, self.key(remote))

    def client(self) -> contextlib.AbstractAsyncContextManager[FtpsClient]:
        """A logged-in connection: an idle one that still answers, else a new one.
        One that fails (or is cancelled) while in use is closed, never handed out again."""
        return self._pool.client()

    def _open(self) -> contextlib.AbstractAsyncContextManager[FtpsClient]:
        s = self.settings
        return FtpsClient.open(
            s.endpoint,
            s.user,
            s.password,
            connect_timeout=s.connect_timeout,
            read_timeout=s.read_timeout,
        )

    async def run(self, targets: list[Target]) -> list[UploadOutcome]:
        """Upload every target; a credentials error stops them all (raised)."""
        self._total = sum(t.local.stat().st_size for t in targets)
        self.emit(m.PlanFinished(files=len(targets), bytes=self._total))
        slots = asyncio.Semaphore(self.settings.connections)
        outcomes: list[UploadOutcome | None] = [None] * len(targets)
        finished = asyncio.Event()

        async def one(i: int, target: Target) -> None:
            async with slots:
                outcomes[i] = await self._file(target)

        async def ticker() -> None:
            while not finished.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.settings.progress_interval):
                        await finished.wait()
                self.emit(self._progress(len(targets)))

        async with asyncio.TaskGroup() as tg:
            tick = tg.create_task(ticker())
            async with asyncio.TaskGroup() as files:
                for i, target in enumerate(targets):
                    files.create_task(one(i, target))
            finished.set()
            await tick
        return [o for o in outcomes if o is not None]

    def _progress(self, planned: int) -> m.Progress:
        done = self._done_bytes + sum(live.done for live in self._active.values())
        rate = self._meter.sample(self._sent)
        return m.Progress(
            planned=planned,
            planning=False,
            verified=self._verified,
            failed=self._failed,
            bytes_done=done,
            bytes_total=self._total,
            rate=rate,
            eta=eta(self._total - done, rate),
            active=tuple(
                m.ActiveFile(path=p, done=live.done, size=live.size, waiting=live.waiting)
                for p, live in list(self._active.items())[:20]
            ),
        )

    async def _file(self, target: Target) -> UploadOutcome:
        path = str(target.local)
        size = target.local.stat().st_size
        live = self._active[path] = _Live(size=size)

        def on_retry(retry: Retry) -> None:
            live.waiting = f"{retry.error}; retry in {retry.delay:.0f} s"
            self.emit(m.FileFailed(path=path, reason=str(retry.error), final=False))

        retrying = Retrying(
            f"upload {target.remote}", self.settings.retry, sleep=asyncio.sleep, on_retry=on_retry
        )
        try:
            md5, skipped = await retrying.call(lambda _: self._attempt(target, live))
        except (MirrorError, OSError) as exc:
            if isinstance(exc, MirrorError) and (is_usage_error(exc) or isinstance(exc, Fatal)):
                raise  # every other file would meet it too: the run stops
            # An OSError here is the local file's (the network's are ConnectionFailed).
            reason = str(exc) if isinstance(exc, MirrorError) else f"cannot read {path}: {exc}"
            self._failed += 1
            self.emit(m.FileFailed(path=path, reason=reason, final=True))
            return UploadOutcome(
                target=target,
                size=size,
                md5=None,
                sent=live.sent,
                skipped=False,
                error=reason,
            )
        finally:
            self._active.pop(path, None)
        self._verified += 1
        self._done_bytes += size
        self.emit(
            m.FileVerified(path=path, bytes=size, md5=md5, verified_by="size", skipped=skipped)
        )
        return UploadOutcome(target=target, size=size, md5=md5, sent=live.sent, skipped=skipped)

    async def _attempt(self, target: Target, live: _Live) -> tuple[str, bool]:
        """One try on a new connection: ``(md5, skipped)``."""
        assert self._state is not None
        live.waiting = None
        st = target.local.stat()
        local = LocalFile(path=str(target.local), size=st.st_size, mtime_ns=st.st_mtime_ns)
        key = self.key(target.remote)
        sidecar = target.remote + ".md5"
        async with self.client() as ftp:
            directory = posixpath.dirname(target.remote)
            if directory and directory not in self._made:
                await ftp.makedirs(directory)
                self._made.add(directory)
            remote = await ftp.size(target.remote)
            if live.unfinished is not None:
                start, handed = live.unfinished
                arrived = max(0, (remote or 0) - start)
                # Count what reached the area (the rest sat in buffers when it broke).
                live.sent -= max(0, handed - arrived)
                live.unfinished = None
            record = await asyncio.to_thread(self._state.get, key)
            decision = decide(local, remote, record)
            log.info("%s: %s (%s)", target.remote, decision.action, decision.why)
            md5: str | None = None
            if decision.action == "skip":
                assert record is not None
                assert record.md5 is not None
                if await ftp.size(sidecar) != 32:
                    await self._put_sidecar(ftp, sidecar, record.md5)
                return record.md5, True
            if decision.action == "compare":
                md5 = await asyncio.to_thread(_hash_file, target.local)
                theirs = await ftp.retrieve(sidecar) if await ftp.size(sidecar) else b""
                if theirs.strip().lower() == md5_text(md5):
                    await asyncio.to_thread(self._state.put, key, _record(local, md5, "done"))
                    return md5, True
            offset = decision.offset if decision.action == "resume" else 0
            await asyncio.to_thread(self._state.put, key, _record(local, md5, "partial"))
            self.emit(
                m.FileStarted(
                    path=local.path,
                    url=f"{self.settings.endpoint.url}/{target.remote}",
                    size=local.size,
                    offset=offset,
                )
            )
            live.done = offset

            def sent(n: int) -> None:
                live.done += n
                live.sent += n
                self._sent += n
                start, handed = live.unfinished or (offset, 0)
                live.unfinished = (start, handed + n)

            async with _blocks(target.local, offset, hashed=md5 is None) as blocks:
                if offset < local.size or offset == 0:
                    await ftp.store(target.remote, blocks.next, offset=offset, sent=sent)
                    live.unfinished = None
                else:
                    await blocks.rest()  # every byte is there: only the MD5 is missing
                md5 = md5 or blocks.hexdigest()
            assert md5 is not None
            now = await ftp.size(target.remote)
            if now != local.size:
                raise RemoteFileChanged(
                    f"{target.remote}: the area holds {now} bytes after the upload, "
                    f"the local file {local.size}",
                    url=f"{self.settings.endpoint.url}/{target.remote}",
                )
            if target.local.stat().st_mtime_ns != local.mtime_ns:
                # webin-cli's checkUploadedFilesModified: the bytes sent may be mixed.
                raise RemoteFileChanged(f"{target.local} changed while it was uploaded")
            await self._put_sidecar(ftp, sidecar, md5)
            await asyncio.to_thread(self._state.put, key, _record(local, md5, "done"))
            return md5, False

    async def _put_sidecar(self, ftp: FtpsClient, sidecar: str, md5: str) -> None:
        body = [md5_text(md5)]

        async def blocks() -> bytes:
            return body.pop() if body else b""

        await ftp.store(sidecar, blocks)


def _record(local: LocalFile, md5: str | None, status: str) -> Record:
    return Record(
        local=local.path,
        size=local.size,
        mtime_ns=local.mtime_ns,
        md5=md5,
        status="done" if status == "done" else "partial",
    )
