"""Range and resume decisions, table-tested (the shape of pip's test_network_download).

First the pure decisions; then ``fetch()`` itself against a scripted server, one row
per (what is on disk, what the server answers): the headers it sent and what it did.
"""

from __future__ import annotations

import hashlib
import os
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from mirror._config import HostLimit
from mirror._dest import LocalDestination
from mirror._download import Downloader, Stats
from mirror._exceptions import (
    ChecksumMismatch,
    ConnectionFailed,
    HTTPStatusError,
    IncompleteDownload,
    RateLimited,
    RemoteFileChanged,
    TransferError,
)
from mirror._fetch import Fetched, PartRecord, fetch
from mirror._http import Http
from mirror._models import Event, FileFailed, FileTask, FileVerified, TaskStatus
from mirror._ranges import RangeAction, decide, parse_content_range, resume_headers
from mirror._retry import RetryPolicy
from mirror._state import Member, Store, open_store

from .clock import VirtualClock
from .scripted import (
    Answer,
    Scripted,
    cut,
    ranges,
    status,
    unsatisfiable,
    whole,
    wrong_range,
)


@pytest.mark.parametrize(
    ("status", "offset", "content_range", "size", "expected"),
    [
        pytest.param(206, 100, "bytes 100-999/1000", 1000, RangeAction.APPEND, id="206-resume"),
        pytest.param(206, 100, "bytes 0-999/1000", 1000, RangeAction.CHANGED, id="206-wrong-start"),
        pytest.param(206, 100, "bytes 100-1999/2000", 1000, RangeAction.CHANGED, id="206-new-size"),
        pytest.param(206, 100, "bytes 100-999/*", 1000, RangeAction.APPEND, id="206-unknown-total"),
        pytest.param(206, 100, None, 1000, RangeAction.CHANGED, id="206-no-content-range"),
        pytest.param(200, 100, None, 1000, RangeAction.RESTART, id="200-ignores-range"),
        pytest.param(200, 0, None, 1000, RangeAction.RESTART, id="200-fresh"),
        pytest.param(416, 1000, "bytes */1000", 1000, RangeAction.COMPLETE, id="416-complete"),
        pytest.param(416, 1000, "bytes */1000", None, RangeAction.COMPLETE, id="416-no-plan"),
        pytest.param(416, 1500, "bytes */1000", 1500, RangeAction.CHANGED, id="416-shrank"),
        pytest.param(416, 1000, None, 1000, RangeAction.CHANGED, id="416-no-header"),
    ],
)
def test_decide(
    status: int, offset: int, content_range: str | None, size: int | None, expected: RangeAction
) -> None:
    assert decide(status, offset, content_range, size) is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("bytes 0-99/100", (0, 99, 100)),
        ("bytes 5-9/*", (5, 9, None)),
        ("bytes */1234", (None, None, 1234)),
        ("items 0-1/2", (None, None, None)),
        (None, (None, None, None)),
        ("", (None, None, None)),
    ],
)
def test_parse_content_range(
    value: str | None, expected: tuple[int | None, int | None, int | None]
) -> None:
    assert parse_content_range(value) == expected


def test_resume_headers_fresh_download_sends_no_range() -> None:
    assert resume_headers(0, '"etag"') == {}


def test_resume_headers_with_validator() -> None:
    assert resume_headers(4096, '"abc"') == {"Range": "bytes=4096-", "If-Range": '"abc"'}


def test_resume_headers_without_validator() -> None:
    assert resume_headers(10, None) == {"Range": "bytes=10-"}


def _task(checksum: str | None, size: int | None) -> FileTask:
    return FileTask(
        source="ena", accession="E", url="http://h/x", path="x", size=size, checksum=checksum
    )


@pytest.mark.parametrize(
    ("started", "now", "same"),
    [
        pytest.param(("ab" * 16, 1000), ("AB" * 16, 1000), True, id="same-md5-any-case"),
        pytest.param(("ab" * 16, 1000), ("cd" * 16, 1000), False, id="new-md5-same-size"),
        pytest.param(("ab" * 16, 1000), ("ab" * 16, 1200), False, id="new-size"),
        pytest.param((None, None), (None, None), True, id="unsized-unchecked"),
        pytest.param((None, None), ("ab" * 16, None), False, id="checksum-appeared"),
    ],
)
def test_part_record_names_the_file_a_part_was_started_for(
    started: tuple[str | None, int | None], now: tuple[str | None, int | None], same: bool
) -> None:
    record = PartRecord.loads(PartRecord.of(_task(*started), '"etag"').dumps())
    assert record is not None
    assert record.validator == '"etag"'
    assert record.same_file(_task(*now)) is same


@pytest.mark.parametrize(
    "stored",
    [
        None,
        "",
        '"etag-1"',
        "Mon, 01 Jan 2024 00:00:00 GMT",
        "[1, 2]",
        '{"checksum": 5, "size": 1, "etag": null}',
    ],
)
def test_anything_but_a_record_is_no_record(stored: str | None) -> None:
    # An older store's bare ETag says nothing of the checksum: the .part starts again.
    assert PartRecord.loads(stored) is None


# --------------------------------------------------------------------------- fetch()

DATA = bytes(range(256)) * 400  # 102,400 bytes
MD5 = hashlib.md5(DATA).hexdigest()
HELD = 40_000  # what a .part left by an earlier attempt holds
NAME = "runs/file.bin"


def file_task(url: str, *, checksum: str = MD5) -> FileTask:
    return FileTask(
        source="ena", accession="E1", url=url, path=NAME, size=len(DATA), checksum=checksum
    )


@dataclass
class Disk:
    """What an earlier attempt left: the .part's bytes (None: no .part), and its record."""

    part: bytes | None = None
    record: Callable[[FileTask], str] | None = None


NOTHING = Disk()
RECORDED = Disk(DATA[:HELD], lambda t: PartRecord.of(t, '"v1"').dumps())
UNRECORDED = Disk(DATA[:HELD])
#: Started for another version of the file (the archive's MD5 changed since).
STALE = Disk(DATA[:HELD], lambda t: PartRecord(checksum="0" * 32, size=t.size).dumps())
#: A .part whose bytes are not a prefix of the file, with a record that says they are.
CORRUPT = Disk(b"x" * HELD, lambda t: PartRecord.of(t, '"v1"').dumps())


@dataclass
class Fixture:
    dest: Path
    store: Store
    clock: VirtualClock

    @property
    def final(self) -> Path:
        return self.dest / NAME

    @property
    def part(self) -> Path:
        return self.dest / (NAME + ".part")


@pytest.fixture
async def here(tmp_path: Path) -> AsyncIterator[Fixture]:
    store = await open_store(None, tmp_path)
    try:
        yield Fixture(tmp_path, store, VirtualClock())
    finally:
        await store.aclose()


async def _lay(here: Fixture, task: FileTask, disk: Disk) -> None:
    generation = await here.store.join(Member(id="t", host="h", pid=os.getpid()), lease=60)
    await here.store.plan([task], generation)
    if disk.part is not None:
        here.part.parent.mkdir(parents=True, exist_ok=True)
        here.part.write_bytes(disk.part)
    if disk.record is not None:
        await here.store.set_validator(task.key, disk.record(task))


def _limits(_host: str) -> HostLimit:
    return HostLimit(connections=4)


ONE_PIECE = (None, None)
RESUME = (f"bytes={HELD}-", '"v1"')


@pytest.mark.parametrize(
    ("disk", "answer", "sent", "starts", "outcome", "part_after"),
    [
        # Fresh: one plain GET, verified and renamed.
        pytest.param(NOTHING, whole(DATA), ONE_PIECE, [0], len(DATA), None, id="fresh-200"),
        # A .part with its record: Range + If-Range, the 206 appended.
        pytest.param(RECORDED, ranges(DATA), RESUME, [HELD], len(DATA) - HELD, None, id="206"),
        # The server ignores the Range: starts again from 0 with the 200's body.
        pytest.param(RECORDED, whole(DATA), RESUME, [HELD, 0], len(DATA), None, id="200-to-range"),
        # The ETag changed: the If-Range no longer matches, the server sends it all.
        pytest.param(
            RECORDED,
            ranges(DATA, etag='"v2"'),
            RESUME,
            [HELD, 0],
            len(DATA),
            None,
            id="etag-changed",
        ),
        # A 206 for another range than asked: the file is not the one started; dropped.
        pytest.param(
            RECORDED, wrong_range(DATA), RESUME, [HELD], RemoteFileChanged, 0, id="206-wrong"
        ),
        # 416 with a size that is not what is held: the file shrank; dropped.
        pytest.param(
            RECORDED, unsatisfiable(HELD - 1), RESUME, [HELD], RemoteFileChanged, 0, id="416-shrank"
        ),
        # No record, or one for another version: the .part is not trusted, no Range sent.
        pytest.param(UNRECORDED, ranges(DATA), ONE_PIECE, [0], len(DATA), None, id="no-record"),
        pytest.param(STALE, ranges(DATA), ONE_PIECE, [0], len(DATA), None, id="stale-record"),
        # Bytes that fail the checksum are dropped, not kept for a resume.
        pytest.param(
            CORRUPT, ranges(DATA), RESUME, [HELD], ChecksumMismatch, None, id="corrupt-part"
        ),
        pytest.param(
            NOTHING, whole(DATA[::-1]), ONE_PIECE, [0], ChecksumMismatch, None, id="wrong-bytes"
        ),
        # Cut short: every byte that arrived is kept for the next attempt.
        pytest.param(
            NOTHING, cut(DATA, 30_000), ONE_PIECE, [0], ConnectionFailed, 30_000, id="short"
        ),
        pytest.param(
            RECORDED, whole(DATA[:-1]), RESUME, [HELD, 0], IncompleteDownload, 0, id="other-length"
        ),
        # Errors before the body: the .part stays as it was.
        pytest.param(RECORDED, status(404), RESUME, [HELD], HTTPStatusError, HELD, id="404"),
        pytest.param(
            RECORDED, status(429, Retry_After="7"), RESUME, [HELD], RateLimited, HELD, id="429"
        ),
        pytest.param(NOTHING, status(503), ONE_PIECE, [0], RateLimited, 0, id="503"),
    ],
)
async def test_fetch(
    here: Fixture,
    disk: Disk,
    answer: Answer,
    sent: tuple[str | None, str | None],
    starts: list[int],
    outcome: int | type[TransferError],
    part_after: int | None,
) -> None:
    async with Scripted([answer]) as server, Http(_limits, clock=here.clock) as http:
        task = file_task(server.url)
        await _lay(here, task, disk)
        started: list[int] = []
        landed: list[Fetched] = []

        async def commit(got: Fetched) -> None:
            landed.append(got)

        async def attempt() -> Fetched:
            return await fetch(
                task, here.final, http, here.store, started=started.append, commit=commit
            )

        if isinstance(outcome, int):
            got = await attempt()
            assert (got.md5, got.size, got.received, got.verified_by) == (
                MD5,
                len(DATA),
                outcome,
                "md5",
            )
            assert here.final.read_bytes() == DATA
            assert landed == [got]
        else:
            with pytest.raises(outcome) as raised:
                await attempt()
            assert not here.final.exists()
            assert landed == []
            assert raised.value.url == task.url
            if isinstance(raised.value, RateLimited) and raised.value.status == 429:
                assert raised.value.retry_after == 7.0
    assert [(s.range, s.if_range) for s in server.seen] == [sent]
    assert started == starts
    assert (here.part.stat().st_size if here.part.exists() else None) == part_after
    if part_after:
        # What is kept is a true prefix, and says what it was started for.
        assert here.part.read_bytes() == DATA[:part_after]
        record = PartRecord.loads(await here.store.get_validator(task.key))
        assert record is not None
        assert record.same_file(task)
    if outcome is RemoteFileChanged:
        # Dropped with what it was started for: the next attempt starts afresh.
        assert await here.store.get_validator(task.key) is None


# --------------------------------------------------------------------------- retries

POLICY = RetryPolicy(attempts=4, base=1.0, cap=3.0, max_wait=60.0)
SEED = 11


def jitter(*ceilings: float, floors: tuple[float, ...] = ()) -> list[float]:
    """The rule written out: each wait drawn from all of [0, ceiling] (full jitter),
    raised to the server's Retry-After where one was given."""
    rng = random.Random(SEED)
    waits = [rng.uniform(0.0, c) for c in ceilings]
    return [max(w, f) for w, f in zip(waits, floors + (0.0,) * len(waits), strict=False)]


@pytest.mark.parametrize(
    ("script", "slept", "sent", "verified"),
    [
        # Server errors: retried after 0-1 s, then 0-2 s (the ceiling doubles).
        pytest.param(
            [status(503), status(503), ranges(DATA)], jitter(1, 2), [ONE_PIECE] * 3, True, id="503"
        ),
        # Retry-After is a floor on the wait ...
        pytest.param(
            [status(429, Retry_After="7"), ranges(DATA)], [7.0], [ONE_PIECE] * 2, True, id="429"
        ),
        # ... but never longer than the policy's max_wait.
        pytest.param(
            [status(429, Retry_After="86400"), ranges(DATA)],
            [60.0],
            [ONE_PIECE] * 2,
            True,
            id="cap",
        ),
        # The ceiling stops growing at the cap; after the last attempt, the file fails.
        pytest.param([status(500)], jitter(1, 2, 3), [ONE_PIECE] * 4, False, id="gives-up"),
        # A client error is not retried.
        pytest.param([status(404)], [], [ONE_PIECE], False, id="404"),
        pytest.param([status(403)], [], [ONE_PIECE], False, id="403"),
        # A body cut short is resumed from the bytes kept, validated by the ETag.
        pytest.param(
            [cut(DATA, 30_000), ranges(DATA)],
            jitter(1),
            [ONE_PIECE, ("bytes=30000-", '"v1"')],
            True,
            id="cut-resumed",
        ),
        # A wrong digest is retried from zero, three times at most.
        pytest.param([whole(DATA[::-1])], jitter(1, 2), [ONE_PIECE] * 3, False, id="bad-md5"),
    ],
)
async def test_retries(
    here: Fixture,
    script: list[Answer],
    slept: list[float],
    sent: list[tuple[str | None, str | None]],
    verified: bool,
) -> None:
    events: list[Event] = []
    async with Scripted(script) as server, Http(_limits, clock=here.clock) as http:
        task = file_task(server.url)
        await _lay(here, task, NOTHING)
        downloader = Downloader(
            dest=LocalDestination(here.dest),
            http=http,
            store=here.store,
            retry=POLICY,
            stats=Stats(),
            emit=events.append,
            rng=random.Random(SEED),
        )
        await downloader.download(task)
    assert here.clock.slept == pytest.approx(slept)
    assert [(s.range, s.if_range) for s in server.seen] == sent
    [row] = [f async for f in here.store.files(None)]
    retried = [e for e in events if isinstance(e, FileFailed) and not e.final]
    assert len(retried) == len(slept)
    if verified:
        assert row.status is TaskStatus.VERIFIED
        assert here.final.read_bytes() == DATA
        assert [e.path for e in events if isinstance(e, FileVerified)] == [NAME]
    else:
        assert row.status is TaskStatus.FAILED
        assert not here.final.exists()
        assert [e.final for e in events if isinstance(e, FileFailed)][-1]
