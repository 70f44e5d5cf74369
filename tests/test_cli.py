"""The ``mirror`` command line, run as a user runs it: child processes, real signals."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from mirror.emulator import Catalog, Fault, md5_of

from .conftest import ena_manifest, mirror_cmd, one_fastq_catalog, one_stream, read_index

BIG = 300_000_000
BIG_PATH = "vol1/fastq/ERR500/001/ERR5000001/ERR5000001.fastq.gz"


def write_manifest(path: Path, doc: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def big_catalog() -> Catalog:
    return one_fastq_catalog(5, BIG_PATH, BIG)


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
    emulator_process: Any, tmp_path: Path
) -> None:
    # 150 MB/s: the 300 MB file (one stream: below the parallel-slice threshold) takes
    # about two seconds, time enough to kill it mid-way.
    emu = emulator_process(big_catalog(), "--bandwidth", "150000000")
    # One connection: a stream the loaded machine slows is not split (test_split.py).
    manifest = write_manifest(
        tmp_path / "m.yaml",
        ena_manifest(
            emu.endpoints, tmp_path / "data", ["ERR5000001"], hosts=one_stream(emu.endpoints)
        ),
    )
    part = tmp_path / "data/ena/ERR5000001/ERR5000001.fastq.gz.part"
    proc = subprocess.Popen(
        [sys.executable, "-m", "mirror", "run", str(manifest), "-q"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: part_size(part) > 60_000_000 or proc.poll() is not None, "the download")
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    held = part_size(part)
    assert 0 < held < BIG
    final = tmp_path / "data/ena/ERR5000001/ERR5000001.fastq.gz"
    assert not final.exists()

    done = mirror_cmd("run", str(manifest), "-q")
    assert done.returncode == 0, done.stderr
    assert final.stat().st_size == BIG
    h = hashlib.md5()
    with final.open("rb") as f:
        while chunk := f.read(8 << 20):
            h.update(chunk)
    assert h.hexdigest() == md5_of(BIG_PATH, BIG)
    assert not part.exists()
    rows = read_index(tmp_path / "data")
    assert [(r["status"], r["verified_by"]) for r in rows] == [("verified", "md5")]

    wait_for(lambda: len([e for e in emu.log() if e["host"] == "ftp"]) >= 2, "the log")
    tries = [e for e in emu.log() if e["path"].endswith("ERR5000001.fastq.gz")]
    assert tries[0]["range"] is None
    resumed = tries[-1]
    assert resumed["status"] == 206
    start = int(resumed["range"].removeprefix("bytes=").split("-")[0])
    assert start >= held - (8 << 20)  # at most the last unwritten batch is asked again
    assert start > 0
    served = sum(e["bytes"] for e in tries)
    assert served <= 1.15 * BIG, f"served {served} bytes for a {BIG}-byte file"


@pytest.mark.slow  # interrupts a child process (SIGINT) mid-run: real processes and signals
def test_sigint_exits_130_and_rerun_resumes(emulator_process: Any, tmp_path: Path) -> None:
    emu = emulator_process(big_catalog(), "--bandwidth", "150000000")
    # One connection: a stream the loaded machine slows is not split (test_split.py).
    manifest = write_manifest(
        tmp_path / "m.yaml",
        ena_manifest(
            emu.endpoints, tmp_path / "data", ["ERR5000001"], hosts=one_stream(emu.endpoints)
        ),
    )
    part = tmp_path / "data/ena/ERR5000001/ERR5000001.fastq.gz.part"
    proc = subprocess.Popen(
        [sys.executable, "-m", "mirror", "run", str(manifest)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(lambda: part_size(part) > 30_000_000 or proc.poll() is not None, "the download")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert "Traceback" not in err
    assert part.exists()
    status = mirror_cmd("status", str(manifest))
    assert "pending" in status.stdout
    done = mirror_cmd("run", str(manifest), "-q")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "data/ena/ERR5000001/ERR5000001.fastq.gz").stat().st_size == BIG


@pytest.mark.slow  # runs the mirror command (and the emulator) in child processes, as a user would
def test_always_corrupt_file_is_listed_by_status(emulator_process: Any, tmp_path: Path) -> None:
    faults = tmp_path / "faults.json"
    faults.write_text(
        json.dumps([Fault(kind="corrupt", match="*/ERR4080001_2.fastq.gz").to_dict()])
    )
    emu = emulator_process(Catalog.demo(), "--faults", str(faults))
    manifest = write_manifest(
        tmp_path / "m.yaml", ena_manifest(emu.endpoints, tmp_path / "data", ["ERR4080001"])
    )
    run = mirror_cmd("run", str(manifest), "--json")
    assert run.returncode == 1
    events = [json.loads(line) for line in run.stdout.splitlines()]
    assert {e["event"] for e in events} >= {"file-started", "file-verified", "file-failed"}
    assert not (tmp_path / "data/ena/ERR4080001/ERR4080001_2.fastq.gz").exists()
    status = mirror_cmd("status", str(manifest))
    assert status.returncode == 1
    failed = [line for line in status.stdout.splitlines() if "\tfailed\t" in line]
    assert len(failed) == 1
    path, word, reason = failed[0].split("\t")
    assert (path, word) == ("ena/ERR4080001/ERR4080001_2.fastq.gz", "failed")
    assert "MD5 mismatch" in reason


@pytest.mark.slow  # runs the mirror command (and the emulator) in child processes, as a user would
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
def test_manifest_errors_exit_2_with_one_line(tmp_path: Path, text: str, expected: str) -> None:
    (tmp_path / "m.yaml").write_text(text)
    result = subprocess.run(
        [sys.executable, "-m", "mirror", "run", "m.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert expected in lines[0]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "mirror-data").exists()


@pytest.mark.slow  # runs the mirror command (and the emulator) in child processes, as a user would
def test_demo_runs_offline_and_verifies(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mirror", "demo", "--dest", "out"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    rows = read_index(tmp_path / "out")
    assert len(rows) >= 12
    assert {r["status"] for r in rows} == {"verified"}
    assert "files verified" in result.stderr


@pytest.mark.slow  # runs the mirror command (and the emulator) in child processes, as a user would
def test_help_teaches(tmp_path: Path) -> None:
    result = mirror_cmd("--help")
    assert result.returncode == 0
    for word in ("demo", "run", "plan", "status", "verify", "get", "exit codes"):
        assert word in result.stdout


@pytest.mark.slow  # runs the mirror command (and the emulator) in child processes, as a user would
def test_plan_get_and_verify(emulator_process: Any, tmp_path: Path) -> None:
    emu = emulator_process(Catalog.demo())
    manifest = write_manifest(
        tmp_path / "m.yaml", ena_manifest(emu.endpoints, tmp_path / "data", ["ERR164407"])
    )
    plan = mirror_cmd("plan", str(manifest))
    assert plan.returncode == 0, plan.stderr
    size = sum(f.size for r in Catalog.demo().runs if r.accession == "ERR164407" for f in r.fastq)
    assert plan.stdout.startswith(f"2 files, {size} bytes")
    assert not (tmp_path / "data/ena").exists()
    assert [e for e in emu.log() if e["host"] == "ftp"] == []

    run = mirror_cmd("run", str(manifest), "-q")
    assert run.returncode == 0, run.stderr
    ok = mirror_cmd("verify", str(manifest))
    assert (ok.returncode, ok.stdout.strip()) == (0, "2 files re-hashed, 0 mismatched")

    # Someone edits a verified file: verify notices, and the next run fetches it again.
    victim = tmp_path / "data/ena/ERR164407/ERR164407_2.fastq.gz"
    data = bytearray(victim.read_bytes())
    data[100] ^= 0xFF
    victim.write_bytes(bytes(data))
    bad = mirror_cmd("verify", str(manifest))
    assert bad.returncode == 1
    assert bad.stdout.splitlines()[0].startswith("ena/ERR164407/ERR164407_2.fastq.gz\tmismatch")
    again = mirror_cmd("run", str(manifest), "-q")
    assert again.returncode == 0
    assert mirror_cmd("verify", str(manifest)).returncode == 0

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
    bad_get = mirror_cmd("get", "XRR1", "--dest", str(tmp_path / "get"))
    assert bad_get.returncode == 2
    assert "'XRR1' is not an ENA, MGnify or EGA accession" in bad_get.stderr
