"""One pull shared by several ``mirror run`` processes: real processes, real loopback.

The emulator's request log says what was served; the files on disk are checked byte
for byte against the catalog.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mirror.emulator import Catalog, Fault, GeneratedStudy, md5_of

from .conftest import one_fastq_catalog
from .multiproc import (
    Emulated,
    Expected,
    Run,
    expected_files,
    manifest_doc,
    md5_on_disk,
    mirror_here,
    most_in_window,
    read_index,
    run_here,
    start_emulator,
    start_run,
    wait_until,
    write_manifest,
    wrong_files,
)

#: 60 files of 50-150 KB (30 paired runs): study PRJEB70012.
STUDY = GeneratedStudy(index=12, runs=30, files_per_run=2, file_size=100_000, size_spread=0.5)


#: Short, so that a newcomer is admitted and a killed member's files are taken over
#: soon; still a heartbeat every 0.75 s.
LEASE = 3.0


@pytest.fixture(scope="module")
def files() -> list[Expected]:
    return expected_files(STUDY)


@pytest.fixture
def runs() -> Iterator[list[Run]]:
    """The ``mirror run`` processes a test starts, killed at teardown if still running."""
    started: list[Run] = []
    yield started
    for run in started:
        run.stop()


@pytest.fixture
def emulated() -> Iterator[list[Emulated]]:
    """The emulators a test starts, stopped at teardown."""
    started: list[Emulated] = []
    yield started
    for emu in started:
        emu.stop()


def _emulator(
    emulated: list[Emulated],
    tmp_path: Path,
    *,
    bandwidth: int | None = None,
    faults: Sequence[Fault] = (),
    study: GeneratedStudy = STUDY,
) -> Emulated:
    catalog = Catalog(generated_studies=(study,))
    emu = start_emulator(tmp_path / "emulator", catalog, bandwidth=bandwidth, faults=faults)
    emulated.append(emu)
    return emu


def _paced(bytes_per_second: int) -> Fault:
    """Every file response paced at ``bytes_per_second``."""
    return Fault(kind="slow", host="ftp", bytes_per_second=bytes_per_second)


def _served_over(emu: Emulated, files: list[Expected], since: float, factor: float) -> list[str]:
    """Files the file host served more than ``factor`` times their size since ``since``."""
    served = emu.log.served(since)
    return [
        f"{f.url_path}: {served.get(f.url_path, 0)} bytes for {f.size}"
        for f in files
        if served.get(f.url_path, 0) > factor * f.size
    ]


@pytest.mark.slow  # several mirror processes sharing one pull
def test_two_runs_of_one_manifest_share_the_pull(
    tmp_path: Path, files: list[Expected], runs: list[Run], emulated: list[Emulated]
) -> None:
    # Paced at 100 KB/s a response (a second a file, 7 s for one process alone) until
    # both hold files, however far apart the two processes start; then at full speed.
    emu = _emulator(emulated, tmp_path, faults=[_paced(100_000)])
    dest = tmp_path / "data"
    manifest = write_manifest(tmp_path / "m.yaml", manifest_doc(emu, dest, [STUDY.study]))
    # A short lease: a heartbeat every 0.75 s, so that the member that joins second is
    # admitted (once the first has applied the new count) within a second or so.
    runs += [start_run(manifest, tmp_path, name=f"run{i}", lease=LEASE) for i in range(2)]
    pids = {run.pid for run in runs}
    wait_until(
        lambda: all(_status(dest).held.get(pid, 0) > 0 for pid in pids),
        "both processes to hold files",
    )
    emu.set_faults([])
    codes = [run.wait(60) for run in runs]
    assert codes == [0, 0], "\n".join(run.stderr() for run in runs)

    assert wrong_files(dest, files) == []
    total = sum(f.size for f in files)
    assert sum(emu.log.served().values()) >= total
    assert _served_over(emu, files, 0.0, 1.15) == []
    rows = read_index(dest)
    assert sorted(r["path"] for r in rows) == sorted(f.local for f in files)
    assert {r["status"] for r in rows} == {"verified"}
    assert {r["path"]: r["md5"] for r in rows} == {f.local: f.md5 for f in files}
    for run in runs:
        summary = run.summary()
        # Each run reports the whole pull, whoever downloaded which file.
        assert (summary["planned"], summary["verified"], summary["failed"]) == (60, 60, 0)
        assert summary["bytes"] == total
        # Both took part: neither sat idle while the other did everything.
        assert summary["downloaded"] > 0, run.stderr()
    assert sum(run.summary()["downloaded"] for run in runs) <= 1.15 * total


RATE = 20


@pytest.mark.slow  # three mirror processes, one SIGKILLed, on a real PostgreSQL server
def test_three_processes_on_postgresql_survive_a_sigkill(
    tmp_path: Path,
    files: list[Expected],
    runs: list[Run],
    emulated: list[Emulated],
    postgres_url: str,
) -> None:
    emu = _emulator(emulated, tmp_path, bandwidth=2_000_000)
    dest = tmp_path / "data"
    # At most RATE file requests a second for the pull as a whole: 60 files take 3 s or more.
    # Two connections each: a killed member's transfers cut short cost little to redo.
    doc = manifest_doc(
        emu, dest, [STUDY.study], hosts={emu.file_host: {"rate": RATE, "connections": 6}}
    )
    manifest = write_manifest(tmp_path / "m.yaml", doc)
    total = sum(f.size for f in files)

    # The Portal requests of one process pulling the same sources alone (another dest,
    # so another pull in the same database): the yardstick for three. The file host's
    # limits do not change what is asked of the Portal, and without them this takes
    # seconds less. (It runs in this process: only the three need to be processes.)
    solo = {key: value for key, value in doc.items() if key != "hosts"}
    solo_manifest = write_manifest(tmp_path / "alone.yaml", {**solo, "workers": 16})
    alone = run_here(solo_manifest, dest=tmp_path / "alone", state=postgres_url, lease=LEASE)
    assert alone.wait(60).exit_code == 0
    portal_alone = len(emu.log.portal(alone.started))
    assert portal_alone > 0

    # Three machines as far as the pull can tell: a host name each (so a dead one is
    # noticed only by its lease, as across real machines), one database, one dest.
    three = [
        start_run(
            manifest,
            tmp_path,
            name=f"member{i}",
            state=postgres_url,
            lease=LEASE,
            hostname=f"node-{i}",
        )
        for i in range(3)
    ]
    runs += three
    began = min(run.started for run in three)
    wait_until(
        lambda: (
            emu.log.served_total(began) >= 0.3 * total
            or any(r.proc.poll() is not None for r in three)
        ),
        "30 % of the pull's bytes",
    )
    victim, *others = three
    assert victim.proc.poll() is None, "the pull ended before 30 % of it was served"
    victim.kill()
    wait_until(
        lambda: all(r.proc.poll() is not None for r in others),
        "the two others to finish the pull",
        timeout=LEASE + 30,
    )
    assert [r.proc.returncode for r in others] == [0, 0], "\n".join(r.stderr() for r in others)
    ended = time.time()  # every request of the three arrived before now

    assert wrong_files(dest, files) == []
    rows = read_index(dest)
    assert sorted(r["path"] for r in rows) == sorted(f.local for f in files)
    assert {r["status"] for r in rows} == {"verified"}
    for run in others:
        summary = run.summary()
        assert (summary["planned"], summary["verified"], summary["failed"]) == (60, 60, 0)

    served = emu.log.files(began)
    assert sum(e["bytes"] for e in served) <= 1.15 * total
    busiest = most_in_window((e["t"] for e in served), 0.9)
    assert busiest <= RATE, f"{busiest} file requests within 0.9 s (rate {RATE})"
    portal_three = len(emu.log.portal(began, ended))
    assert portal_three <= 1.5 * portal_alone, (portal_three, portal_alone)

    again = run_here(manifest, state=postgres_url, lease=LEASE)
    assert (again.wait(60).exit_code, again.wait().verified) == (0, 60)
    assert emu.log.files(again.started) == []


#: 40 files of 25-75 KB (20 paired runs): study PRJEB70013.
SMALL = GeneratedStudy(index=13, runs=20, files_per_run=2, file_size=50_000, size_spread=0.5)
#: "  HOST pid PID<TAB>last heartbeat HH:MM:SS (N s ago)<TAB>holds N file(s)"
_MEMBER = re.compile(r"^  (\S+) pid (\d+)\tlast heartbeat \S+ \((\d+) s ago\)\tholds (\d+) files?")
#: "PATH<TAB>running<TAB>HOST pid PID, lease N s left"
_RUNNING = re.compile(r"^(\S+)\trunning\t(\S+) pid (\d+), lease (\d+) s left$")


@dataclass
class Status:
    code: int
    #: pid -> files held, as the members' lines say.
    held: dict[int, int]
    #: pid -> the files in progress its lines name.
    running: dict[int, set[str]]
    verified: int
    pending: int
    text: str


def _status(dest: Path) -> Status:
    done = mirror_here("status", "--dest", str(dest))
    held: dict[int, int] = {}
    running: dict[int, set[str]] = {}
    verified = pending = -1
    for line in done.stdout.splitlines():
        if m := _MEMBER.match(line):
            held[int(m[2])] = int(m[4])
        elif m := _RUNNING.match(line):
            running.setdefault(int(m[3]), set()).add(m[1])
        elif line.startswith("verified "):
            verified = int(line.split()[1])
        elif line.startswith("pending "):
            pending = int(line.split()[1])
    assert "Traceback" not in done.stderr, done.stderr
    return Status(done.returncode, held, running, verified, pending, done.stdout)


@pytest.mark.slow  # several mirror processes sharing one pull
def test_status_lists_members_and_what_they_hold(
    tmp_path: Path, runs: list[Run], emulated: list[Emulated]
) -> None:
    small = expected_files(SMALL)
    # 100 KB/s a response (half a second a file) and two workers each, until the kill:
    # both members hold files for seconds (one alone would take 10 s).
    emu = _emulator(emulated, tmp_path, faults=[_paced(100_000)], study=SMALL)
    dest = tmp_path / "data"
    manifest = write_manifest(
        tmp_path / "m.yaml", manifest_doc(emu, dest, [SMALL.study], workers=2)
    )
    # Long enough that a status read right after the kill (in this process: no Python
    # to start) still comes before the dead one's leases run out.
    lease = 3.0
    two = [start_run(manifest, tmp_path, name=f"member{i}", lease=lease) for i in range(2)]
    runs += two
    pids = {r.pid for r in two}
    seen: list[Status] = []

    def both_hold_files() -> bool:
        seen.append(_status(dest))
        return all(seen[-1].held.get(pid, 0) > 0 for pid in pids)

    wait_until(both_hold_files, "mirror status to list both processes holding files")
    now = seen[-1]
    assert now.code == 1  # the pull is not done
    assert set(now.held) == pids, now.text
    # Each member's files in progress are listed under it (the counts may move between
    # the two reads while the members work).
    for pid in pids:
        assert now.running.get(pid), now.text
    assert set().union(*now.running.values()) <= {f.local for f in small}

    # A member killed outright on this host is no longer listed, nor is any file in
    # progress under it: its files wait for a taker (the survivor, once their lease
    # runs out), and status counts them as pending.
    victim, survivor = two
    victim.kill()
    killed = time.monotonic()
    after = _status(dest)
    # Its last heartbeat renewed its leases at most lease/4 before the kill.
    assert time.monotonic() - killed < 0.75 * lease, "status came too late after the kill"
    assert after.code == 1
    assert set(after.held) == {survivor.pid}, after.text
    assert set(after.running) <= {survivor.pid}, after.text
    emu.set_faults([])  # the rest at full speed

    assert survivor.wait(lease + 30) == 0, survivor.stderr()
    done = _status(dest)
    assert (done.code, done.held, done.running, done.verified, done.pending) == (
        0,
        {},
        {},
        40,
        0,
    ), done.text
    assert "members" not in done.text
    assert wrong_files(dest, small) == []


async def test_members_finishing_together_each_write_the_index(
    tmp_path: Path, postgres_url: str
) -> None:
    # Every member rewrites index.tsv as it leaves; members of one pull leave together.
    from mirror._dest import LocalDestination
    from mirror._index import write_index
    from mirror._state import open_store

    store = await open_store(postgres_url, tmp_path)
    try:
        here = LocalDestination(tmp_path)
        written = await asyncio.gather(*(write_index(store, 1, here) for _ in range(4)))
    finally:
        await store.aclose()
    assert written == [tmp_path / "index.tsv"] * 4
    assert (tmp_path / "index.tsv").read_text().splitlines()[0].split("\t")[:3] == [
        "source",
        "accession",
        "path",
    ]
    assert sorted(p.name for p in (tmp_path / ".mirror").iterdir()) == []


#: One 4 MB file (a single stream: far below the parallel-slice size). Its first
#: response is paced at 400 KB/s, so that it lasts while the other member starts and
#: joins, however loaded the machine; the resume is served at full speed.
BIG_PATH = "vol1/fastq/ERR600/001/ERR6000001/ERR6000001.fastq.gz"
BIG = 4_000_000
FIRST_RESPONSE_PACE = 400_000


@pytest.mark.slow  # kills a mirror process holding a file; another resumes it
@pytest.mark.parametrize("elsewhere", [False, True], ids=["same-host", "other-host"])
def test_a_killed_holders_file_is_resumed_by_another_from_its_part(
    tmp_path: Path, runs: list[Run], emulated: list[Emulated], elsewhere: bool
) -> None:
    slow_once = Fault(kind="slow", match=BIG_PATH, bytes_per_second=FIRST_RESPONSE_PACE, times=1)
    emu = start_emulator(
        tmp_path / "emulator", one_fastq_catalog(6, BIG_PATH, BIG), faults=[slow_once]
    )
    emulated.append(emu)
    dest = tmp_path / "data"
    # One connection: the holder's single stream is what the survivor resumes.
    manifest = write_manifest(
        tmp_path / "m.yaml",
        manifest_doc(emu, dest, ["ERR6000001"], hosts={emu.file_host: {"connections": 1}}),
    )
    local = "ena/ERR6000001/ERR6000001.fastq.gz"
    part = dest / (local + ".part")
    # Short, so that the other host's lease runs out soon; still a heartbeat every 0.75 s.
    lease = 3.0

    def part_size() -> int:
        try:
            return part.stat().st_size
        except FileNotFoundError:
            return 0

    # The holder starts first (on another host name, or on this host), the other joins
    # while it downloads: it has nothing to do but wait for the file. The other runs in
    # this process (it is not killed), a member of the pull like any.
    victim = start_run(
        manifest,
        tmp_path,
        name="victim",
        lease=lease,
        hostname="node-b" if elsewhere else None,
    )
    runs.append(victim)
    wait_until(lambda: part_size() > 0, "the download to start")
    survivor = run_here(manifest, lease=lease)
    status: dict[str, Any] = {}

    def both_joined() -> bool:
        status.update(json.loads(mirror_here("status", "--dest", str(dest), "--json").stdout))
        return len(status["members"]) == 2

    wait_until(both_joined, "the second member to join")
    assert {(m["host"] != socket.gethostname(), m["pid"]) for m in status["members"]} == {
        (elsewhere, victim.pid),
        (False, os.getpid()),
    }
    [file] = status["in_progress"]
    assert (file["path"], file["holder"].rsplit(" ", 1)[-1]) == (local, str(victim.pid))
    victim.kill()
    held = part_size()
    assert 0 < held < BIG

    # The other takes the file over and resumes it from the .part.
    summary = survivor.wait(lease + 30)
    assert summary.exit_code == 0, summary
    assert md5_on_disk(dest / local) == md5_of(BIG_PATH, BIG)
    assert not part.exists()
    tries = [e for e in emu.log.files() if e["path"] == "/" + BIG_PATH]
    assert [(e["range"], e["status"]) for e in tries] == [(None, 200), (f"bytes={held}-", 206)]
    assert tries[1]["bytes"] == BIG - held
    if elsewhere:
        # Of a member on another host only its lease tells: nobody takes the file while
        # it holds (it may only have grown since status read it).
        assert tries[1]["t"] >= file["lease_until"] - 0.05
    assert summary.verified == 1
