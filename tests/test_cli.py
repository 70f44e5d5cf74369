"""The ``mirror`` command line, run as a user runs it: child processes, real signals.

One child process per command (run, plan, verify, get, status); the rest of each test
calls the command line in this process (``cli``), against the emulator in a thread.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from mirror.emulator import Catalog, Fault, md5_of

from .conftest import ena_manifest, mirror_cmd, one_fastq_catalog, read_index
from .inproc import Cli, ThreadedEmulator

#: One file, served slowly to the first request only: a run is stopped part-way
#: through it, and the run after resumes it at full speed.
SIZE = 6_000_000
PATH = "vol1/fastq/ERR500/001/ERR5000001/ERR5000001.fastq.gz"
#: Four seconds for the whole file: the first batch lands on disk after half a second
#: (TransferTuning.flush_seconds), and the stop comes long before the end.
SLOW = Fault(kind="slow", host="ftp", match=f"*/{PATH}", bytes_per_second=1_500_000, times=1)


def write_manifest(path: Path, doc: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def slow_file_manifest(emu: ThreadedEmulator, tmp_path: Path) -> Path:
    # One connection to the file host: the file travels as one stream, so the run
    # after resumes it with one Range request.
    host = emu.endpoints["ena_files"].split("/")[2]
    doc = ena_manifest(
        emu.endpoints, tmp_path / "data", ["ERR5000001"], hosts={host: {"connections": 1}}
    )
    return write_manifest(tmp_path / "m.yaml", doc)


def wait_for(condition: Any, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def part_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def slices_done(part: Path) -> int:
    """Bytes a segmented download has on disk, from its ``.slices`` sidecar."""
    try:
        return sum(json.loads(part.with_name(part.name + ".slices").read_text())["done"])
    except (FileNotFoundError, ValueError, KeyError):
        return 0


@pytest.mark.slow  # kills a child process mid-transfer and resumes: real processes and signals
def test_sigkill_mid_download_then_rerun_resumes_with_range(
    emulator_thread: Callable[..., ThreadedEmulator], cli: Cli, tmp_path: Path
) -> None:
    emu = emulator_thread(one_fastq_catalog(5, PATH, SIZE), faults=[SLOW])
    manifest = slow_file_manifest(emu, tmp_path)
    part = tmp_path / "data/ena/ERR5000001/ERR5000001.fastq.gz.part"
    proc = subprocess.Popen(
        [sys.executable, "-m", "mirror", "run", str(manifest), "-q"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: part_size(part) > 0 or proc.poll() is not None, "the download")
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    held = part_size(part)
    assert 0 < held < SIZE
    final = tmp_path / "data/ena/ERR5000001/ERR5000001.fastq.gz"
    assert not final.exists()

    done = cli("run", str(manifest), "-q")
    assert done.returncode == 0, done.stderr
    assert final.stat().st_size == SIZE
    assert hashlib.md5(final.read_bytes()).hexdigest() == md5_of(PATH, SIZE)
    assert not part.exists()
    rows = read_index(tmp_path / "data")
    assert [(r["status"], r["verified_by"]) for r in rows] == [("verified", "md5")]

    emu.idle()  # the killed run's request is logged once the emulator sees it end
    tries = [e for e in emu.log() if e["path"].endswith("ERR5000001.fastq.gz")]
    assert len(tries) == 2
    assert tries[0]["range"] is None
    resumed = tries[-1]
    assert resumed["status"] == 206
    # Exactly the bytes the .part lacks are asked for again: every byte on disk counts.
    assert resumed["range"] == f"bytes={held}-"
    assert resumed["bytes"] == SIZE - held
    served = sum(e["bytes"] for e in tries)
    assert served <= 1.15 * SIZE, f"served {served} bytes for a {SIZE}-byte file"


@pytest.mark.slow  # interrupts a child process (SIGINT) mid-run: real processes and signals
def test_sigint_exits_130_and_rerun_resumes(
    emulator_thread: Callable[..., ThreadedEmulator], cli: Cli, tmp_path: Path
) -> None:
    emu = emulator_thread(one_fastq_catalog(5, PATH, SIZE), faults=[SLOW])
    manifest = slow_file_manifest(emu, tmp_path)
    part = tmp_path / "data/ena/ERR5000001/ERR5000001.fastq.gz.part"
    proc = subprocess.Popen(
        [sys.executable, "-m", "mirror", "run", str(manifest)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: part_size(part) > 0 or proc.poll() is not None, "the download")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:  # a hung run must not outlive its test
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert "Traceback" not in err
    assert part.exists()
    # The status command as a user runs it, in a process of its own.
    status = mirror_cmd("status", str(manifest))
    assert "pending" in status.stdout
    done = cli("run", str(manifest), "-q")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "data/ena/ERR5000001/ERR5000001.fastq.gz").stat().st_size == SIZE


@pytest.mark.slow  # the command line's own retry backoff (about a second) between the tries
def test_always_corrupt_file_is_listed_by_status(
    emulator_thread: Callable[..., ThreadedEmulator], cli: Cli, tmp_path: Path
) -> None:
    corrupt = Fault(kind="corrupt", match="*/ERR4080001_2.fastq.gz")
    emu = emulator_thread(Catalog.demo(), faults=[corrupt])
    manifest = write_manifest(
        tmp_path / "m.yaml", ena_manifest(emu.endpoints, tmp_path / "data", ["ERR4080001"])
    )
    run = cli("run", str(manifest), "--json")
    assert run.returncode == 1
    events = [json.loads(line) for line in run.stdout.splitlines()]
    assert {e["event"] for e in events} >= {"file-started", "file-verified", "file-failed"}
    assert not (tmp_path / "data/ena/ERR4080001/ERR4080001_2.fastq.gz").exists()
    status = cli("status", str(manifest))
    assert status.returncode == 1
    failed = [line for line in status.stdout.splitlines() if "\tfailed\t" in line]
    assert len(failed) == 1
    path, word, reason = failed[0].split("\t")
    assert (path, word) == ("ena/ERR4080001/ERR4080001_2.fastq.gz", "failed")
    assert "MD5 mismatch" in reason


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "version: 1\nsources:\n\t- ena: {accessions: [ERR164407]}\n",
            "m.yaml:3: invalid YAML",
            id="malformed-yaml",
        ),
        pytest.param(
            "version: 1\nworkres: 4\nsources:\n  - ena: {accessions: [ERR164407]}\n",
            "m.yaml:2: workres: unknown key (did you mean 'workers'?)",
            id="unknown-key",
        ),
        pytest.param(
            "version: 1\nsources:\n  - ena:\n      accessions:\n        - ERR164407\n"
            "        - XRR12\n",
            "m.yaml:6: sources[0].ena.accessions[1]: 'XRR12' is not an ENA accession",
            id="bad-accession",
        ),
        pytest.param("version: 1\nsources: []\n", "m.yaml:2: sources:", id="empty-sources"),
    ],
)
def test_manifest_errors_exit_2_with_one_line(
    cli: Cli, tmp_path: Path, text: str, expected: str
) -> None:
    (tmp_path / "m.yaml").write_text(text)
    result = cli("run", "m.yaml", cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert expected in lines[0]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "mirror-data").exists()


@pytest.mark.slow  # mirrors the whole demo manifest: every archive of the emulator in one run
def test_demo_runs_offline_and_verifies(cli: Cli, tmp_path: Path) -> None:
    result = cli("demo", "--dest", "out", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = read_index(tmp_path / "out")
    assert len(rows) >= 12
    assert {r["status"] for r in rows} == {"verified"}
    assert "files verified" in result.stderr


def test_help_teaches(cli: Cli) -> None:
    result = cli("--help")
    assert result.returncode == 0
    for word in ("demo", "run", "plan", "status", "verify", "get", "exit codes"):
        assert word in result.stdout


@pytest.mark.slow  # runs plan, verify and get in child processes, as a user would
def test_plan_get_and_verify(
    emulator_thread: Callable[..., ThreadedEmulator], cli: Cli, tmp_path: Path
) -> None:
    emu = emulator_thread(Catalog.demo())
    manifest = write_manifest(
        tmp_path / "m.yaml", ena_manifest(emu.endpoints, tmp_path / "data", ["ERR164407"])
    )
    plan = mirror_cmd("plan", str(manifest))
    assert plan.returncode == 0, plan.stderr
    size = sum(f.size for r in Catalog.demo().runs if r.accession == "ERR164407" for f in r.fastq)
    assert plan.stdout.startswith(f"2 files, {size} bytes")
    assert not (tmp_path / "data/ena").exists()
    emu.idle()
    assert [e for e in emu.log() if e["host"] == "ftp"] == []

    run = cli("run", str(manifest), "-q")
    assert run.returncode == 0, run.stderr
    ok = mirror_cmd("verify", str(manifest))
    assert (ok.returncode, ok.stdout.strip()) == (0, "2 files re-hashed, 0 mismatched")

    # Someone edits a verified file: verify notices, and the next run fetches it again.
    victim = tmp_path / "data/ena/ERR164407/ERR164407_2.fastq.gz"
    data = bytearray(victim.read_bytes())
    data[100] ^= 0xFF
    victim.write_bytes(bytes(data))
    bad = cli("verify", str(manifest))
    assert bad.returncode == 1
    assert bad.stdout.splitlines()[0].startswith("ena/ERR164407/ERR164407_2.fastq.gz\tmismatch")
    again = cli("run", str(manifest), "-q")
    assert again.returncode == 0
    assert cli("verify", str(manifest)).returncode == 0

    # The manifest-free path: same engine, layout and exit codes, into --dest.
    get = mirror_cmd(
        "get",
        "ERR4080002",
        "--dest",
        str(tmp_path / "get"),
        "-q",
        *[f"--endpoint={k}={v}" for k, v in emu.endpoints.items()],
    )
    assert get.returncode == 0, get.stderr
    assert sorted(p.name for p in (tmp_path / "get/ena/ERR4080002").iterdir()) == [
        "ERR4080002.fastq.gz",
        "ERR4080002_1.fastq.gz",
        "ERR4080002_2.fastq.gz",
    ]
    bad_get = cli("get", "XRR1", "--dest", str(tmp_path / "get"))
    assert bad_get.returncode == 2
    assert "'XRR1' is not an ENA, MGnify or EGA accession" in bad_get.stderr
