"""A stream from a server that caps each connection is split over more connections.

The emulator's ``bandwidth`` paces every response on its own: a per-connection cap,
as nginx's ``limit_rate``. Rates and sizes are scaled down (a few MB at 2 MB/s) and
the split rule's knobs with them.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

import mirror
from mirror import _dest
from mirror._pace import Pace
from mirror.emulator import Catalog, Emulator, EnaFile, FilesOptions, LogEntry, md5_of

from .conftest import FAST_RETRY, ena_manifest, file_requests, md5_of_file, one_fastq_catalog

PATH = "vol1/fastq/ERR800/001/ERR8000001/ERR8000001.fastq.gz"
LOCAL = "ena/ERR8000001/ERR8000001.fastq.gz"
SIZE = 6_000_000
#: Each connection's cap: a stream takes 3 s for the whole file alone.
RATE = 2_000_000
#: The split rule scaled to these rates: a stream below 8 MB/s is slow (the emulator
#: sends an uncapped one at 50+ MB/s even on a loaded machine), judged after 0.2 s.
TUNING = mirror.Tuning(
    transfer=mirror.TransferTuning(
        split_below=8_000_000,
        split_probe=0.2,
        split_slice=512 << 10,
        flush_seconds=0.1,
        flush_bytes=256 << 10,
    )
)
#: What a paced response may have handed to the socket that the client never read
#: when it stopped (kernel buffers, the pieces in flight).
IN_FLIGHT = 512 << 10


def manifest(emu: Any, dest: Path, connections: int) -> dict[str, Any]:
    ftp = emu.endpoints["ena_files"].split("//", 1)[1].rstrip("/")
    return ena_manifest(
        emu.endpoints, dest, ["ERR8000001"], hosts={ftp: {"connections": connections}}
    )


def most_at_once(entries: Sequence[LogEntry]) -> int:
    """The most requests in flight together, from their arrival and end times."""
    edges = []
    for e in entries:
        assert e.ended is not None
        edges += [(e.t, 1), (e.ended, -1)]
    now = most = 0
    for _, step in sorted(edges, key=lambda edge: (edge[0], edge[1])):
        now += step
        most = max(most, now)
    return most


def byte_ranges(entries: Sequence[LogEntry]) -> list[tuple[int, int]]:
    out = []
    for e in entries:
        assert e.range is not None
        assert e.range.startswith("bytes=")
        first, last = e.range.removeprefix("bytes=").split("-")
        out.append((int(first), int(last)))
    return sorted(out)


async def fetch_one(tmp_path: Path, files: FilesOptions, connections: int) -> list[LogEntry]:
    async with Emulator(one_fastq_catalog(8, PATH, SIZE), files=files) as emu:
        summary = await mirror.run(
            manifest(emu, tmp_path / "data", connections), retry=FAST_RETRY, tuning=TUNING
        )
        await emu.wait_idle()
        requests = file_requests(emu.log)
        body = emu.ena.file_bytes(PATH)
    assert (summary.verified, summary.failed) == (1, 0)
    assert (tmp_path / "data" / LOCAL).read_bytes() == body
    assert md5_of_file(tmp_path / "data" / LOCAL) == md5_of(PATH, SIZE)
    assert not list((tmp_path / "data").rglob("*.part*"))
    return requests


def assert_split_once(requests: Sequence[LogEntry]) -> list[tuple[int, int]]:
    """One stream from the start, then Range slices of exactly the rest: no byte twice."""
    first, *slices = requests
    assert first.range is None
    ranges = byte_ranges(slices)
    held = ranges[0][0]
    assert 0 < held <= first.bytes <= held + IN_FLIGHT
    for (_, last), (start, _) in itertools.pairwise(ranges):
        assert start == last + 1
    assert ranges[-1][1] == SIZE - 1
    return ranges


async def test_a_throttled_stream_is_split_over_the_hosts_connections(tmp_path: Path) -> None:
    requests = await fetch_one(tmp_path, FilesOptions(bandwidth=RATE), connections=4)
    ranges = assert_split_once(requests)
    assert len(ranges) >= 4
    # The slices ran over all four connections the host allows, at once.
    assert most_at_once(requests[1:]) == 4
    assert sum(e.bytes for e in requests[1:]) == sum(b - a + 1 for a, b in ranges)


async def test_a_host_with_two_connections_never_gets_more(tmp_path: Path) -> None:
    requests = await fetch_one(tmp_path, FilesOptions(bandwidth=RATE), connections=2)
    assert_split_once(requests)
    # The first stream is closed before its slices start; the emulator notices only
    # at its next paced write, so its end time is left out.
    assert most_at_once(requests[1:]) == 2


async def test_a_file_fetched_in_slices_from_the_start_grows_its_connections(
    tmp_path: Path,
) -> None:
    # Sliced from its first byte (at least segment_min) over one connection: measured
    # slow, it takes the host's four.
    sliced = mirror.Tuning(
        transfer=mirror.TransferTuning(
            segment_min=1,
            segment_connections=1,
            slice=512 << 10,
            split_below=8_000_000,
            split_probe=0.2,
            flush_seconds=0.1,
            flush_bytes=256 << 10,
        )
    )
    capped = FilesOptions(bandwidth=RATE)
    async with Emulator(one_fastq_catalog(8, PATH, SIZE), files=capped) as emu:
        summary = await mirror.run(
            manifest(emu, tmp_path / "data", 4), retry=FAST_RETRY, tuning=sliced
        )
        await emu.wait_idle()
        requests = file_requests(emu.log)
    assert (summary.verified, summary.failed) == (1, 0)
    assert md5_of_file(tmp_path / "data" / LOCAL) == md5_of(PATH, SIZE)
    ranges = byte_ranges(requests)
    assert ranges == [(a, min(a + (512 << 10), SIZE) - 1) for a in range(0, SIZE, 512 << 10)]
    assert most_at_once(requests) == 4


async def test_slices_the_cpu_holds_back_do_not_grow_their_connections(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Sliced over one connection, each slice "slow" against this threshold, but the
    # loop's thread is busy the whole time (it says so: on a CPU or queued for one),
    # never waiting for the socket, so more connections would only share the same
    # cores. (The emulator on the same loop makes that nearly true; said outright, it
    # does not depend on how the machine schedules the test.)
    monkeypatch.setattr("mirror._segments.thread_busy", time.monotonic)
    big = 4 * SIZE
    path = "vol1/fastq/ERR800/002/ERR8000002/ERR8000002.fastq.gz"
    sliced = mirror.Tuning(
        transfer=mirror.TransferTuning(
            segment_min=1,
            segment_connections=1,
            slice=1 << 20,
            split_below=1 << 40,
            split_probe=0.02,
            flush_bytes=256 << 10,
        )
    )
    caplog.set_level(logging.INFO, logger="mirror._segments")
    async with Emulator(one_fastq_catalog(8, path, big)) as emu:
        summary = await mirror.run(
            manifest(emu, tmp_path / "data", 4), retry=FAST_RETRY, tuning=sliced
        )
        await emu.wait_idle()
        requests = file_requests(emu.log)
    assert (summary.verified, summary.failed) == (1, 0)
    assert len(requests) == -(-big // (1 << 20))
    # The engine says when a file's connections grow (``-v``): never here.
    assert not [r.message for r in caplog.records if "connections at" in r.message]


async def test_streams_that_fill_the_hosts_connections_are_not_split(tmp_path: Path) -> None:
    # Two files, two workers, a host of two connections: both streams are slow, but
    # slices could only queue behind the other file's stream.
    pair = dataclasses.replace(
        one_fastq_catalog(8, PATH, SIZE).runs[0],
        library_layout="PAIRED",
        fastq=tuple(EnaFile(path=PATH.replace(".fastq", f"_{n}.fastq"), size=SIZE) for n in (1, 2)),
    )
    async with Emulator(Catalog(runs=(pair,)), files=FilesOptions(bandwidth=RATE)) as emu:
        doc = manifest(emu, tmp_path / "data", 2)
        doc["workers"] = 2
        summary = await mirror.run(doc, retry=FAST_RETRY, tuning=TUNING)
        await emu.wait_idle()
        requests = [(e.range, e.bytes) for e in file_requests(emu.log)]
    assert (summary.verified, summary.failed) == (2, 0)
    assert requests == [(None, SIZE), (None, SIZE)]


async def test_an_unthrottled_stream_stays_one(tmp_path: Path) -> None:
    # Large enough that the rule looks at the stream several times before it ends.
    big = 4 * SIZE
    path = "vol1/fastq/ERR800/002/ERR8000002/ERR8000002.fastq.gz"
    async with Emulator(one_fastq_catalog(8, path, big)) as emu:
        fast = mirror.Tuning(
            transfer=mirror.TransferTuning(
                split_below=8_000_000, split_probe=0.02, flush_bytes=256 << 10
            )
        )
        summary = await mirror.run(
            manifest(emu, tmp_path / "data", 4), retry=FAST_RETRY, tuning=fast
        )
        await emu.wait_idle()
        requests = [(e.range, e.bytes) for e in file_requests(emu.log)]
    assert (summary.verified, summary.failed) == (1, 0)
    assert requests == [(None, big)]


async def test_a_stream_the_cpu_holds_back_stays_one(tmp_path: Path) -> None:
    # Every stream is "slow" against this threshold, but the emulator serves from the
    # client's own event loop: the loop is busy generating and receiving the bytes, not
    # waiting for the socket, so more connections would only share the same core.
    big = 4 * SIZE
    path = "vol1/fastq/ERR800/002/ERR8000002/ERR8000002.fastq.gz"
    async with Emulator(one_fastq_catalog(8, path, big)) as emu:
        busy = mirror.Tuning(
            transfer=mirror.TransferTuning(
                split_below=1 << 40, split_probe=0.02, flush_bytes=256 << 10
            )
        )
        summary = await mirror.run(
            manifest(emu, tmp_path / "data", 4), retry=FAST_RETRY, tuning=busy
        )
        await emu.wait_idle()
        requests = [(e.range, e.bytes) for e in file_requests(emu.log)]
    assert (summary.verified, summary.failed) == (1, 0)
    assert requests == [(None, big)]


def test_pace_splits_only_a_stream_that_waits_for_the_socket() -> None:
    clock = {"busy": 0.0}

    def pace() -> Pace:
        return Pace(below=100, probe=1.0, size=10_000, busy=lambda: clock["busy"])

    # 10 bytes a second while the loop thread ran (or queued for a CPU) 0.9 s of each
    # second: the machine, not the link, sets that pace.
    loaded = pace()
    assert not loaded.slow(0, 0.0)
    clock["busy"] = 0.9
    assert not loaded.slow(10, 1.0)
    # The same rate with the loop asleep on the socket: a capped connection.
    capped = pace()
    clock["busy"] = 0.0
    assert not capped.slow(0, 0.0)
    clock["busy"] = 0.1
    assert capped.slow(10, 1.0)
    # Asleep, but waiting for its own writes and hashes: the CPU's pace again.
    hashing = pace()
    clock["busy"] = 0.0
    assert not hashing.slow(0, 0.0)
    hashing.waited(0.7)
    clock["busy"] = 0.1
    assert not hashing.slow(10, 1.0)


async def test_a_server_that_does_not_serve_ranges_is_never_split(tmp_path: Path) -> None:
    requests = await fetch_one(
        tmp_path, FilesOptions(bandwidth=3 * RATE, range_support=False), connections=4
    )
    assert [(e.range, e.bytes) for e in requests] == [(None, SIZE)]


#: A child process that runs the pull with the split rule of these tests.
CHILD = """
import asyncio, json, sys
import mirror
from mirror import _dest
from tests.test_split import TUNING
asyncio.run(mirror.run(json.loads(sys.argv[1]), tuning=TUNING))
"""


@pytest.mark.slow  # kills a child process mid-transfer and resumes: real processes and signals
def test_a_split_killed_midway_resumes_its_slices(emulator_process: Any, tmp_path: Path) -> None:
    emu = emulator_process(one_fastq_catalog(8, PATH, SIZE), "--bandwidth", str(RATE))
    doc = json.dumps(manifest(emu, tmp_path / "data", 4))
    part = tmp_path / "data" / (LOCAL + ".part")
    sidecar = part.with_name(part.name + ".slices")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}

    def done() -> int:
        try:
            return sum(json.loads(sidecar.read_text())["done"])
        except (OSError, ValueError):
            return 0

    child = subprocess.Popen([sys.executable, "-c", CHILD, doc], env=env)
    try:
        # Killed once half the file is in place: the first stream's part and some slices.
        wait_until(lambda: done() >= SIZE // 2 or child.poll() is not None)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait()
    assert child.returncode == -signal.SIGKILL
    kept = json.loads(sidecar.read_text())
    assert sum(kept["done"]) < SIZE
    # The emulator logs a killed request when it notices: the rerun's are those that
    # arrived after it started.
    before = time.time()

    rerun = subprocess.run([sys.executable, "-c", CHILD, doc], env=env, timeout=60)
    assert rerun.returncode == 0
    final = tmp_path / "data" / LOCAL
    assert md5_of_file(final) == md5_of(PATH, SIZE)
    assert not part.exists()
    assert not sidecar.exists()
    # The rerun asked only for what the slice record lacked, slice by slice.
    again = [e for e in emu.log() if e["path"] == f"/{PATH}" and e["t"] >= before]
    wanted = []
    for index, got in enumerate(kept["done"]):
        start = index * kept["slice"]
        end = min(start + kept["slice"], SIZE)
        if start + got < end:
            wanted.append(f"bytes={start + got}-{end - 1}")
    assert sorted(e["range"] for e in again) == sorted(wanted)


def wait_until(condition: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.01)


async def test_a_file_sliced_from_the_start_shares_one_streams_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Four connections to one file hold what one stream holds: each gathers a quarter
    # of flush_bytes before it writes, not flush_bytes each.
    big = 4 * SIZE
    path = "vol1/fastq/ERR800/002/ERR8000002/ERR8000002.fastq.gz"
    batches: list[int] = []
    write_at = _dest._LocalSized.write_at

    def recorded(self: Any, chunks: Sequence[bytes | memoryview], position: int) -> None:
        batches.append(sum(len(c) for c in chunks))
        write_at(self, chunks, position)

    monkeypatch.setattr(_dest._LocalSized, "write_at", recorded)
    sliced = mirror.Tuning(
        transfer=mirror.TransferTuning(
            segment_min=1, slice=8 << 20, flush_bytes=4 << 20, split_connections=4
        )
    )
    async with Emulator(one_fastq_catalog(8, path, big)) as emu:
        summary = await mirror.run(
            manifest(emu, tmp_path / "data", 4), retry=FAST_RETRY, tuning=sliced
        )
    assert (summary.verified, summary.failed) == (1, 0)
    assert sum(batches) == big
    # A batch is written once it holds a quarter of 4 MiB: at most one piece more.
    assert max(batches) <= (1 << 20) + IN_FLIGHT
