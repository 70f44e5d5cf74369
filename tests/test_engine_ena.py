"""The engine end to end on ENA, against the emulator over loopback sockets."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import mirror
from mirror import RetryPolicy
from mirror._engine import Engine
from mirror._manifest import load_manifest
from mirror._state._sqlite_base import SQLiteBase
from mirror.emulator import Catalog, Emulator, EnaOptions, Fault, FilesOptions

from .clock import VirtualClock
from .conftest import (
    FAST_RETRY,
    MIXED,
    ena_manifest,
    file_requests,
    md5_of_file,
    mixed_expected,
    one_fastq_catalog,
    read_index,
)


async def test_study_sample_and_runs_end_verified_and_rerun_sends_no_file_request(
    emulator: Emulator, tmp_path: Path
) -> None:
    dest = tmp_path / "data"
    doc = ena_manifest(emulator.endpoints, dest, MIXED, files=["fastq", "submitted"])
    summary = await mirror.run(doc, retry=FAST_RETRY)

    expected = mixed_expected()
    assert len(expected) >= 12
    assert summary.planned == len(expected)
    assert summary.verified == len(expected)
    assert (summary.failed, summary.pending, summary.exit_code) == (0, 0, 0)

    for rel, served in expected.items():
        local = dest / rel
        assert local.read_bytes() == emulator.ena.file_bytes(served), rel
        assert md5_of_file(local) == emulator.ena.file_md5(served)
    # The run with three FASTQs keeps all three, each checked against its own MD5.
    assert sorted(p.name for p in (dest / "ena/ERR4080002").iterdir()) == [
        "ERR4080002.fastq.gz",
        "ERR4080002_1.fastq.gz",
        "ERR4080002_2.fastq.gz",
    ]
    assert not list(dest.rglob("*.part"))

    index = read_index(dest)
    assert {row["path"] for row in index} == set(expected)
    assert {row["status"] for row in index} == {"verified"}
    assert {row["verified_by"] for row in index} == {"md5"}
    for row in index:
        assert row["md5"] == md5_of_file(dest / row["path"])
        assert int(row["bytes"]) == (dest / row["path"]).stat().st_size
    runs_tsv = (dest / "metadata/ena/runs.tsv").read_text().splitlines()
    assert runs_tsv[0].split("\t")[0] == "run_accession"
    assert len(runs_tsv) == 1 + 8
    await emulator.wait_idle()

    # Batch lookups: one POST /search per accession type, not one per accession.
    searches = [e for e in emulator.log if e.path.endswith("/search")]
    assert all(e.method == "POST" for e in searches)
    assert len(searches) <= 6

    before = len(emulator.log)
    again = await mirror.run(doc, retry=FAST_RETRY)
    await emulator.wait_idle()
    assert (again.verified, again.skipped, again.exit_code) == (len(expected), len(expected), 0)
    assert file_requests(emulator.log[before:]) == []


async def test_no_transaction_commits_a_verified_row_before_its_file_is_in_place(
    emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Completions of many files share a transaction: each one in it still names a file
    # already renamed into place, checked at every commit, inside the transaction.
    dest = tmp_path / "data"
    checked: list[str] = []
    missing: list[str] = []
    write = SQLiteBase._write

    async def watched(self: SQLiteBase, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        def then_check(db: sqlite3.Connection) -> Any:
            result = fn(db)
            for (key,) in db.execute("SELECT key FROM files WHERE status='verified'"):
                checked.append(key)
                if not (dest / key).is_file():
                    missing.append(key)
            return result

        return await write(self, then_check)

    monkeypatch.setattr(SQLiteBase, "_write", watched)
    doc = ena_manifest(emulator.endpoints, dest, MIXED, files=["fastq", "submitted"], workers=16)
    summary = await mirror.run(doc, retry=FAST_RETRY)
    assert summary.verified == len(mixed_expected()) >= 12
    assert len(set(checked)) == summary.verified
    assert missing == []


async def test_mirror_events_drive_the_run(emulator: Emulator, tmp_path: Path) -> None:
    doc = ena_manifest(emulator.endpoints, tmp_path, ["ERR4080002"])
    kinds: list[str] = []
    async with mirror.Mirror(doc, retry=FAST_RETRY) as m:
        async for event in m.events():
            kinds.append(event.kind)
    assert kinds.count("file-verified") == 3
    assert kinds[-1] == "run-finished"
    assert "plan-finished" in kinds
    assert m.summary.verified == 3


async def test_the_run_ends_when_its_last_download_does(emulator: Emulator, tmp_path: Path) -> None:
    doc = ena_manifest(emulator.endpoints, tmp_path, ["ERR120000001"])
    loop = asyncio.get_running_loop()
    last = 0.0
    async with mirror.Mirror(doc, retry=FAST_RETRY) as m:
        async for event in m.events():
            if event.kind == "file-verified":
                last = loop.time()
    # Not when the dispatcher next looks for work (it looks once a second).
    assert loop.time() - last < 0.5
    assert (m.summary.verified, m.summary.exit_code) == (2, 0)


async def test_runs_inside_a_busy_loop(emulator: Emulator, tmp_path: Path) -> None:
    ticks = 0

    async def busy() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    other = asyncio.create_task(busy())
    try:
        doc = ena_manifest(emulator.endpoints, tmp_path, ["ERR11000001", "ERR120000001"])
        summary = await mirror.run(doc, retry=FAST_RETRY)
    finally:
        other.cancel()
    assert (summary.planned, summary.verified, summary.failed) == (4, 4, 0)
    assert summary.bytes == sum(
        (tmp_path / p).stat().st_size for p in [r["path"] for r in read_index(tmp_path)]
    )
    assert ticks > 100  # the other task kept running while we mirrored


async def test_faults_on_ten_percent_of_requests_still_end_verified(tmp_path: Path) -> None:
    faults = [
        # A bad patch, not a hostile server: random throttling that never ends would
        # (rightly) drive the adaptive rate to its floor.
        Fault(kind="status", status=429, retry_after=1, probability=0.1, times=8),
        Fault(kind="status", status=503, probability=0.1, times=8),
        Fault(kind="reset", host="ftp", after_bytes=5_000, probability=0.025),
        Fault(kind="truncate", host="ftp", after_bytes=2_000, probability=0.025),
        Fault(kind="corrupt", host="ftp", probability=0.025),
        Fault(kind="short", host="ftp", after_bytes=100, probability=0.025),
    ]
    # Many files, so that every kind of fault comes up; small ones (7 to 23 kB), past
    # every cut above.
    catalog = Catalog.generate(
        3, runs_per_study=120, files_per_run=2, file_size=15_000, size_spread=0.5
    )
    async with Emulator(catalog, faults=faults, seed=11) as emu:
        doc = ena_manifest(emu.endpoints, tmp_path, ["PRJEB70000"], workers=16)
        # Retry-After pauses and the rate cuts after each 429/503 (tens of seconds
        # of slow pace) pass on a virtual clock.
        clock = VirtualClock()
        summary = await Engine(load_manifest(doc), retry=FAST_RETRY, clock=clock).run()
        await emu.wait_idle()
        log = emu.log
        expected = {
            f.path.rsplit("/", 1)[-1]: emu.ena.file_md5(f.path)
            for r in catalog.iter_runs()
            for f in r.fastq
        }
    assert (summary.planned, summary.verified, summary.failed) == (240, 240, 0)
    assert summary.exit_code == 0
    assert 1.0 in clock.slept  # a 429's Retry-After, waited out
    faulted = [e for e in log if e.fault]
    assert len(faulted) >= 0.10 * len(log)
    assert {"status", "reset", "truncate", "corrupt", "short"} <= {e.fault for e in faulted}
    assert {429, 503} <= {e.status for e in faulted}
    rows = read_index(tmp_path)
    assert len(rows) == 240
    for row in rows:
        assert row["status"] == "verified"
        assert md5_of_file(tmp_path / row["path"]) == row["md5"]
        assert expected[row["path"].rsplit("/", 1)[-1]] == row["md5"]


async def test_always_corrupt_file_fails_alone_and_never_lands(
    emulator: Emulator, tmp_path: Path
) -> None:
    emulator.faults.add(Fault(kind="corrupt", match="*/ERR4080001_2.fastq.gz"))
    doc = ena_manifest(emulator.endpoints, tmp_path, ["ERR4080001", "ERR164407"])
    summary = await mirror.run(doc, retry=FAST_RETRY)
    await emulator.wait_idle()
    assert (summary.planned, summary.verified, summary.failed, summary.exit_code) == (4, 3, 1, 1)
    bad = tmp_path / "ena/ERR4080001/ERR4080001_2.fastq.gz"
    assert not bad.exists()
    assert not bad.with_name(bad.name + ".part").exists()
    rows = {r["path"]: r for r in read_index(tmp_path)}
    assert rows["ena/ERR4080001/ERR4080001_2.fastq.gz"]["status"] == "failed"
    assert "MD5 mismatch" in rows["ena/ERR4080001/ERR4080001_2.fastq.gz"]["reason"]
    tries = [e for e in file_requests(emulator.log) if e.path.endswith("ERR4080001_2.fastq.gz")]
    assert len(tries) == 3  # three wrong digests in a row is not a transient fault

    # A re-run retries only the failed file.
    emulator.faults.clear()
    before = len(emulator.log)
    again = await mirror.run(doc, retry=FAST_RETRY)
    await emulator.wait_idle()
    assert (again.verified, again.failed, again.exit_code) == (4, 0, 0)
    assert [e.path.rsplit("/", 1)[-1] for e in file_requests(emulator.log[before:])] == [
        "ERR4080001_2.fastq.gz"
    ]


async def test_rate_limit_holds_in_every_second_with_64_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The host gates keep time on a virtual clock and the emulator stamps each arrival
    # with it: five seconds of rate windows pass at the speed of the loop.
    clock = VirtualClock()
    monkeypatch.setattr("mirror.emulator._middleware.time", clock)
    catalog = Catalog.generate(5, runs_per_study=50, files_per_run=2, file_size=2048)
    async with Emulator(catalog, ena=EnaOptions(portal_rate_limit=None)) as emu:
        host = emu.endpoints["ena_files"].split("//", 1)[1]
        www = emu.endpoints["ena_portal"].split("//", 1)[1].split("/", 1)[0]
        doc = ena_manifest(
            emu.endpoints,
            tmp_path,
            ["PRJEB70000"],
            workers=64,
            hosts={host: {"rate": 20, "connections": 64}, www: {"rate": 20}},
        )
        summary = await Engine(load_manifest(doc), retry=FAST_RETRY, clock=clock).run()
        await emu.wait_idle()
        log = emu.log
    assert (summary.planned, summary.verified) == (100, 100)
    for which in ("ftp", "www"):
        times = sorted(e.t for e in log if e.host == which)
        # No window [t, t+1s) holds more than 20 request arrivals.
        j = 0
        for i, t in enumerate(times):
            while times[j] <= t - 1.0:
                j += 1
            assert i - j + 1 <= 20, f"{i - j + 1} requests to {which} within one second"
    assert len([e for e in log if e.host == "ftp"]) == 100


@pytest.mark.parametrize(
    ("ranges", "status", "sent"),
    [
        pytest.param(True, 206, lambda size, held: size - held, id="206-resumes"),
        # Asked to resume, answered 200 with everything: restarted from zero.
        pytest.param(False, 200, lambda size, held: size, id="200-restarts"),
    ],
)
async def test_partial_download_is_resumed_or_restarted(
    tmp_path: Path, ranges: bool, status: int, sent: Callable[[int, int], int]
) -> None:
    path = "vol1/fastq/ERR700/001/ERR7000001/ERR7000001.fastq.gz"
    # Paced, so the bytes before the cut are read (aiohttp drops what is buffered at a cut).
    async with Emulator(
        one_fastq_catalog(7, path, 1_500_000),
        files=FilesOptions(range_support=ranges, bandwidth=4_000_000),
    ) as emu:
        # A download interrupted after at most 1 MB, as a killed run leaves it.
        emu.faults.add(Fault(kind="truncate", match=f"*{path}", after_bytes=1_000_000, times=1))
        part = tmp_path / "ena/ERR7000001/ERR7000001.fastq.gz.part"
        doc = ena_manifest(emu.endpoints, tmp_path, ["ERR7000001"])
        await mirror.run(doc, retry=RetryPolicy(attempts=1))
        held = part.stat().st_size
        assert 0 < held <= 1_000_000
        await emu.wait_idle()
        first = len(emu.log)
        summary = await mirror.run(doc, retry=FAST_RETRY)
        await emu.wait_idle()
        tries = [e for e in file_requests(emu.log[first:]) if e.path.endswith(path[-20:])]
        expected = emu.ena.file_bytes(path)
    assert (summary.verified, summary.failed) == (1, 0)
    assert (tmp_path / "ena/ERR7000001/ERR7000001.fastq.gz").read_bytes() == expected
    assert [(e.range, e.status, e.bytes) for e in tries] == [
        (f"bytes={held}-", status, sent(len(expected), held))
    ]
    assert not part.exists()


async def test_gzip_content_encoding_is_not_decoded(emulator: Emulator, tmp_path: Path) -> None:
    emulator.faults.add(Fault(kind="gzip_header", host="ftp"))
    doc = ena_manifest(emulator.endpoints, tmp_path, ["ERR11000001"])
    summary = await mirror.run(doc, retry=FAST_RETRY)
    await emulator.wait_idle()
    assert (summary.verified, summary.failed) == (2, 0)
    assert all(e.fault == "gzip_header" for e in file_requests(emulator.log))


async def test_unknown_accessions_and_empty_runs_fail_the_entry_naming_them(
    emulator: Emulator, tmp_path: Path
) -> None:
    doc = ena_manifest(emulator.endpoints, tmp_path, ["ERR4080003", "ERR9999999", "ERA1234567"])
    warnings: list[str] = []
    async with mirror.Mirror(doc, retry=FAST_RETRY) as m:
        async for event in m.events():
            if event.kind == "warning":
                warnings.append(getattr(event, "message", ""))
    assert m.summary.planned == 0
    # Nothing to download is not a success: one error says why.
    assert m.summary.exit_code == 1
    (error,) = m.summary.errors
    assert "ERR9999999, ERA1234567 matched nothing: no public runs or analyses found" in error
    assert "have no fastq files (they have submitted files" in error
    assert "ERR4080003: no fastq files (it has submitted files" in "\n".join(warnings)


async def test_downloads_start_before_planning_ends_and_a_cancelled_run_resumes(
    tmp_path: Path,
) -> None:
    catalog = Catalog.generate(9, runs_per_study=40, files_per_run=1, file_size=512)
    # The first run's study report (9 kB) trickles in over three seconds, handed to the
    # store five rows at a time: the first files download while the rest is to come.
    slow_report = Fault(kind="slow", host="www", match="*/search", bytes_per_second=3000, times=1)
    tuning = mirror.Tuning(sources=mirror.SourceTuning(ena_batch=5))
    async with Emulator(
        catalog, ena=EnaOptions(portal_rate_limit=None), faults=[slow_report]
    ) as emu:
        doc = ena_manifest(emu.endpoints, tmp_path, ["PRJEB70000"], workers=4)
        seen: list[str] = []
        async with mirror.Mirror(doc, retry=FAST_RETRY, tuning=tuning) as m:
            async for event in m.events():
                seen.append(event.kind)
                if event.kind == "file-verified":
                    break  # the consumer walks away: the run is cancelled
        assert "plan-finished" not in seen
        # Nothing half-done is at a final path; the index says what is verified.
        rows = read_index(tmp_path)
        verified = [r for r in rows if r["status"] == "verified"]
        assert 1 <= len(verified) < 40
        for row in rows:
            local = tmp_path / row["path"]
            if row["status"] == "verified":
                assert md5_of_file(local) == row["md5"]
            else:
                assert not local.exists()
        summary = await mirror.run(doc, retry=FAST_RETRY, tuning=tuning)
    assert (summary.planned, summary.verified, summary.skipped) == (40, 40, len(verified))


@contextlib.contextmanager
def emulator_on_a_thread(catalog: Catalog) -> Iterator[Emulator]:
    """An emulator on an event loop of its own thread, for a test whose thread calls
    ``asyncio.run`` as a script would."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="emulator", daemon=True)
    thread.start()
    emu = Emulator(catalog)
    try:
        asyncio.run_coroutine_threadsafe(emu.__aenter__(), loop).result(timeout=30)
        try:
            yield emu
        finally:
            asyncio.run_coroutine_threadsafe(emu.__aexit__(None, None, None), loop).result(30)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


def test_asyncio_run_of_a_manifest_path(tmp_path: Path) -> None:
    with emulator_on_a_thread(Catalog.demo()) as emu:
        doc = ena_manifest(emu.endpoints, tmp_path / "data", ["ERR120000001", "ERR4080002"])
        path = tmp_path / "manifest.yaml"
        path.write_text(yaml.safe_dump(doc))
        summary = asyncio.run(mirror.run(str(path)))
    assert isinstance(summary, mirror.Summary)
    assert (summary.planned, summary.verified, summary.failed, summary.pending) == (5, 5, 0, 0)
    assert summary.bytes == sum(int(r["bytes"]) for r in read_index(tmp_path / "data"))
    assert summary.downloaded == summary.bytes
