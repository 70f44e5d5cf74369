"""The transfer path against the emulator: what a ``.part`` may be joined with, and events."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from mirror import RetryPolicy
from mirror._config import HostLimit
from mirror._engine import Engine
from mirror._exceptions import ConnectionFailed
from mirror._fetch import fetch
from mirror._http import Http
from mirror._manifest import load_manifest
from mirror._models import Event, FileStarted, FileTask
from mirror._state import Member, open_store
from mirror.emulator import Catalog, Emulator, Fault, md5_of

from .conftest import ena_manifest, file_requests, md5_of_file, one_fastq_catalog

PATH = "vol1/fastq/ERR700/001/ERR7000001/ERR7000001.fastq.gz"
LOCAL = "ena/ERR7000001/ERR7000001.fastq.gz"
ONE_TRY = RetryPolicy(attempts=1)
#: Paced, so the bytes before a cut are read as they come: aiohttp drops what is
#: still buffered when it sees the connection end.
PACE = 2_000_000


def cut_after(n: int) -> list[Fault]:
    return [Fault(kind="truncate", host="ftp", match=f"/{PATH}", after_bytes=n, times=1)]


async def run_once(emu: Emulator, dest: Path, events: list[Event] | None = None) -> None:
    doc = ena_manifest(emu.endpoints, dest, ["ERR7000001"], workers=2)
    emit = events.append if events is not None else lambda e: None
    engine = Engine(load_manifest(doc), retry=ONE_TRY, emit=emit)
    await engine.run()


async def test_a_file_regenerated_with_a_new_size_and_md5_restarts_from_zero(
    tmp_path: Path,
) -> None:
    dest = tmp_path / "data"
    part = dest / (LOCAL + ".part")
    old, new = 3_000_000, 3_200_000
    first = Emulator(one_fastq_catalog(7, PATH, old), faults=cut_after(1 << 20), bandwidth=PACE)
    async with first as emu:
        await run_once(emu, dest)
    assert 0 < part.stat().st_size <= 1 << 20  # the bytes that arrived before the cut
    # The archive regenerated the FASTQ: the Portal now reports another size and MD5.
    async with Emulator(one_fastq_catalog(7, PATH, new)) as emu:
        await run_once(emu, dest)
        requests = file_requests(emu.log)
        assert md5_of_file(dest / LOCAL) == md5_of(PATH, new) != md5_of(PATH, old)
    assert [(r.range, r.status) for r in requests] == [(None, 200)]
    assert not part.exists()


async def test_a_changed_md5_of_the_same_size_is_never_joined(tmp_path: Path) -> None:
    # Same name, same size, other bytes: the Portal's MD5 is all that says so. The
    # second URL stands for the regenerated file (the emulator's content is keyed by path).
    size = 2_500_000
    first = "vol1/fastq/ERR700/002/ERR7000002/ERR7000002.fastq.gz"
    second = "vol1/fastq/ERR700/003/ERR7000003/ERR7000003.fastq.gz"
    catalog = Catalog(
        runs=(
            *one_fastq_catalog(7, first, size).runs,
            *one_fastq_catalog(8, second, size).runs,
        )
    )
    dest = tmp_path / "data"
    final = dest / "x.fastq.gz"
    store = await open_store(None, dest)
    try:
        faults = [Fault(kind="truncate", host="ftp", match=f"/{first}", after_bytes=700_000)]
        serving = Emulator(catalog, faults=faults, bandwidth=PACE)
        async with serving as emu, Http(limits) as http:

            def task(path: str) -> FileTask:
                return FileTask(
                    source="ena",
                    accession="ERR7000002",
                    url=emu.file_url(path),
                    path="x.fastq.gz",
                    size=size,
                    checksum=md5_of(path, size),
                )

            me = Member(id="test", host="node1", pid=os.getpid())
            await store.plan([task(first)], await store.join(me, lease=60))
            try:
                await fetch(task(first), final, http, store)
            except ConnectionFailed:
                pass
            else:
                raise AssertionError("the truncate fault did not fire")
            assert 0 < (dest / "x.fastq.gz.part").stat().st_size <= 700_000
            got = await fetch(task(second), final, http, store)
            assert got.md5 == md5_of(second, size)
            assert final.read_bytes() == emu.file_bytes(second)
            assert [(r.range, r.status) for r in emu.log if r.path == f"/{second}"] == [(None, 200)]
    finally:
        await store.aclose()


async def test_file_started_carries_the_resume_offset(tmp_path: Path) -> None:
    dest = tmp_path / "data"
    size = 3_000_000
    serving = Emulator(one_fastq_catalog(7, PATH, size), faults=cut_after(1 << 20), bandwidth=PACE)
    async with serving as emu:
        first: list[Event] = []
        await run_once(emu, dest, first)
        held = (dest / (LOCAL + ".part")).stat().st_size
        assert held > 0
        second: list[Event] = []
        await run_once(emu, dest, second)
        requests = file_requests(emu.log)
    assert [e.offset for e in first if isinstance(e, FileStarted)] == [0]
    assert [e.offset for e in second if isinstance(e, FileStarted)] == [held]
    assert requests[-1].range == f"bytes={held}-"
    assert md5_of_file(dest / LOCAL) == md5_of(PATH, size)


def limits(_host: str) -> HostLimit:
    return HostLimit(connections=4)


#: Bytes a test lets be in flight between the emulator's socket and the mirror's
#: reads (kernel buffers, the last paced piece): not held by the mirror.
IN_FLIGHT = 256 << 10


def test_sigkill_loses_at_most_the_last_half_second(emulator_process: Any, tmp_path: Path) -> None:
    # 1 MB/s: a 4 MiB batch would take four seconds to fill. What the emulator handed
    # to the socket minus what is in the .part is what the kill cost.
    rate = 1_000_000
    path = "vol1/fastq/ERR700/009/ERR7000009/ERR7000009.fastq.gz"
    emu = emulator_process(one_fastq_catalog(7, path, 16_000_000), "--bandwidth", str(rate))
    manifest = tmp_path / "m.yaml"
    doc = ena_manifest(emu.endpoints, tmp_path / "data", ["ERR7000001"])
    manifest.write_text(yaml.safe_dump(doc))
    part = tmp_path / "data/ena/ERR7000001/ERR7000009.fastq.gz.part"
    proc = subprocess.Popen(
        [sys.executable, "-m", "mirror", "run", str(manifest), "-q"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: part.exists() or proc.poll() is not None, "the .part")
        opened = time.monotonic()
        # Killed once 1.5 MB are on disk, or after 2.5 s of transfer whatever is there.
        wait_until(
            lambda: (
                size_of(part) >= 1_500_000
                or time.monotonic() - opened > 2.5
                or proc.poll() is not None
            ),
            "the transfer",
        )
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    held = size_of(part)

    def sent() -> list[int]:
        return [e["bytes"] for e in emu.log() if e["path"] == f"/{path}"]

    wait_until(lambda: len(sent()) == 1, "the emulator to log the dropped transfer")
    (served,) = sent()
    assert served >= 1_000_000
    lost = served - held
    # The README's bound: what arrived in the last half second.
    assert 0 <= lost <= 0.5 * rate + IN_FLIGHT, f"sent {served}, kept {held}"


def size_of(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def wait_until(condition: Any, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)
