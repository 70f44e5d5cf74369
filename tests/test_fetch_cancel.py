"""A download cancelled at each step (Ctrl-C, a run stopping): what it leaves behind.

Whenever it is cancelled, and however often, the final path holds the whole verified
file or nothing; the store calls the file verified only when it is there; the ``.part``
keeps only bytes the next attempt may resume from; and no task is left running.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

from mirror._config import HostLimit
from mirror._fetch import Fetched, PartRecord, Received, fetch
from mirror._http import Http
from mirror._models import FileTask, TaskStatus
from mirror._state import Member, Store, open_store

from .scripted import Answer, Scripted, ranges, stall

DATA = bytes(range(256)) * 400
MD5 = hashlib.md5(DATA).hexdigest()
NAME = "runs/file.bin"
#: Bytes sent before the server stalls in the mid-stream case.
SENT = 30_000


def _limits(_host: str) -> HostLimit:
    return HostLimit(connections=4)


def _hold(until: asyncio.Event) -> Answer:
    """Never sends the status line until ``until`` is set (the request is "opening")."""

    async def answer(request: web.Request) -> web.StreamResponse:
        await until.wait()
        return web.Response(body=DATA)

    return answer


@dataclass
class Run:
    """One download to cancel: the phase it is held in, and how to tell it is there."""

    dest: Path
    store: Store
    release: asyncio.Event = field(default_factory=asyncio.Event)
    received: int = 0
    in_stream: asyncio.Event = field(default_factory=asyncio.Event)
    in_verify: asyncio.Event = field(default_factory=asyncio.Event)
    in_commit: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def final(self) -> Path:
        return self.dest / NAME

    @property
    def part(self) -> Path:
        return self.dest / (NAME + ".part")

    async def status(self, task: FileTask) -> TaskStatus:
        [row] = [f async for f in self.store.files(None) if f.path == task.path]
        return row.status


@pytest.fixture
async def run(tmp_path: Path) -> AsyncIterator[Run]:
    store = await open_store(None, tmp_path)
    try:
        yield Run(tmp_path, store)
    finally:
        await store.aclose()


async def _start(
    run: Run, server: Scripted, http: Http, phase: str
) -> tuple[FileTask, asyncio.Task[Fetched]]:
    task = FileTask(
        source="ena", accession="E1", url=server.url, path=NAME, size=len(DATA), checksum=MD5
    )
    generation = await run.store.join(Member(id="t", host="h", pid=os.getpid()), lease=60)
    await run.store.plan([task], generation)

    def progress(n: int) -> None:
        run.received += n
        if run.received >= SENT:
            run.in_stream.set()

    async def verifier(_task: FileTask, _got: Received) -> None:
        if phase == "verify":
            run.in_verify.set()
            await run.release.wait()

    async def commit(got: Fetched) -> None:
        if phase == "land":
            run.in_commit.set()
            await run.release.wait()
        await run.store.complete(task.key, None, md5=got.md5, size=got.size, verified_by="md5")

    job = asyncio.create_task(
        fetch(task, run.final, http, run.store, progress=progress, verifier=verifier, commit=commit)
    )
    reached = {
        "open": server.answering,
        "stream": run.in_stream,
        "verify": run.in_verify,
        "land": run.in_commit,
    }
    await asyncio.wait_for(reached[phase].wait(), 10)
    return task, job


PHASES = {
    # phase: the server's script (release lets it go on)
    "open": lambda release: [_hold(release)],
    "stream": lambda release: [stall(DATA, SENT, release)],
    "verify": lambda release: [ranges(DATA)],
    "land": lambda release: [ranges(DATA)],
}


@pytest.mark.parametrize("times", [1, 2], ids=["once", "twice"])
@pytest.mark.parametrize("phase", list(PHASES))
async def test_cancelled_download_leaves_a_consistent_state(
    run: Run, phase: str, times: int
) -> None:
    before = asyncio.all_tasks()
    async with Scripted(PHASES[phase](run.release)) as server, Http(_limits) as http:
        task, job = await _start(run, server, http, phase)
        job.cancel()
        for _ in range(times - 1):
            # The second Ctrl-C comes while the first is being handled.
            for _ in range(5):
                await asyncio.sleep(0)
            job.cancel()
        for _ in range(5):
            await asyncio.sleep(0)
        run.release.set()
        with pytest.raises(asyncio.CancelledError):
            await job
        landed = run.final.exists()
        held = run.part.read_bytes() if run.part.exists() else b""
        if landed:
            # Renamed into place: then whole, verified, and recorded so.
            assert run.final.read_bytes() == DATA
            assert await run.status(task) is TaskStatus.VERIFIED
            assert not run.part.exists()
        else:
            assert await run.status(task) is not TaskStatus.VERIFIED
            # Only bytes of the file, from its start: what a resume may build on.
            assert DATA.startswith(held)
            if held:
                record = PartRecord.loads(await run.store.get_validator(task.key))
                assert record is not None
                assert record.same_file(task)
        expected = {"open": False, "stream": False, "verify": False, "land": True}[phase]
        assert landed is expected
        if phase == "stream":
            assert len(held) == SENT  # every byte that arrived was kept
        if phase == "verify":
            assert held == DATA
    # Nothing of the download still runs (the server's own tasks end with it).
    left = {t for t in asyncio.all_tasks() - before if not t.done()}
    assert left == set(), left


@pytest.mark.parametrize("phase", ["open", "stream", "verify"])
async def test_the_next_attempt_after_a_cancel_completes_the_file(run: Run, phase: str) -> None:
    async with (
        Scripted([*PHASES[phase](run.release), ranges(DATA)]) as server,
        Http(_limits) as http,
    ):
        task, job = await _start(run, server, http, phase)
        job.cancel()
        run.release.set()
        with pytest.raises(asyncio.CancelledError):
            await job
        held = run.part.stat().st_size if run.part.exists() else 0
        got = await fetch(task, run.final, http, run.store)
    assert run.final.read_bytes() == DATA
    assert got.received == len(DATA) - held
    assert not run.part.exists()
