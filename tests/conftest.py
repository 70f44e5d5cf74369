"""Shared fixtures: the archive emulator on loopback, manifests pointing at it."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mirror import RetryPolicy
from mirror.emulator import Catalog, Emulator, EnaFile, EnaRun, LogEntry

#: ``postgres_server``/``postgres_url``: a real PostgreSQL server for the state store tests.
pytest_plugins = ["tests.postgres"]

#: Retries as in production, but with short waits so fault tests stay fast.
FAST_RETRY = RetryPolicy(attempts=10, base=0.02, cap=0.2)


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    async with Emulator(Catalog.demo(), seed=7) as emu:
        yield emu


def ena_manifest(
    endpoints: dict[str, str],
    dest: Path,
    accessions: Sequence[str],
    *,
    files: Sequence[str] = ("fastq",),
    workers: int = 8,
    hosts: dict[str, Any] | None = None,
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "version": 1,
        "dest": str(dest),
        "workers": workers,
        "endpoints": endpoints,
        "sources": [{"ena": {"accessions": list(accessions), "files": list(files)}}],
    }
    if hosts:
        doc["hosts"] = hosts
    return doc


def file_requests(log: Sequence[LogEntry]) -> list[LogEntry]:
    return [e for e in log if e.host == "ftp"]


def md5_of_file(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def one_fastq_catalog(series: int, path: str, size: int) -> Catalog:
    """One single-end run (``ERR{series}000001``, in study ``PRJEB{series}0001``) of one file."""
    run = EnaRun(
        accession=f"ERR{series}000001",
        experiment=f"ERX{series}000001",
        sample=f"SAMEA{series}000001",
        secondary_sample=f"ERS{series}000001",
        study=f"PRJEB{series}0001",
        secondary_study=f"ERP1{series}0001",
        library_layout="SINGLE",
        fastq=(EnaFile(path=path, size=size),),
    )
    return Catalog(runs=(run,))


def read_index(dest: Path) -> list[dict[str, str]]:
    lines = (dest / "index.tsv").read_text().splitlines()
    header = lines[0].split("\t")
    return [dict(zip(header, line.split("\t"), strict=True)) for line in lines[1:]]


@dataclass
class EmulatorProcess:
    """``python -m mirror.emulator`` in its own process (for tests that kill the client)."""

    proc: subprocess.Popen[bytes]
    endpoints: dict[str, str]
    log_path: Path

    def log(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log_path.read_text().splitlines() if line]


@pytest.fixture
def emulator_process(tmp_path: Path) -> Iterator[Any]:
    """A factory: start an emulator process for a catalog (and faults); stopped by PID."""
    started: list[subprocess.Popen[bytes]] = []

    def start(catalog: Catalog, *extra: str) -> EmulatorProcess:
        work = tmp_path / f"emu{len(started)}"
        work.mkdir()
        (work / "catalog.json").write_text(json.dumps(catalog.to_dict()))
        ready = work / "ready.json"
        log = work / "requests.jsonl"
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mirror.emulator",
                "--catalog",
                str(work / "catalog.json"),
                "--ready-file",
                str(ready),
                "--log",
                str(log),
                *extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        started.append(proc)
        deadline = time.monotonic() + 30
        while not ready.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                detail = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                raise RuntimeError(f"emulator did not start: {detail}")
            time.sleep(0.02)
        info = json.loads(ready.read_text())
        return EmulatorProcess(proc=proc, endpoints=info["endpoints"], log_path=log)

    yield start
    for proc in started:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
        if proc.stderr:
            proc.stderr.close()


def mirror_cmd(
    *args: str, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the ``mirror`` command line as a user would, in a child process."""
    return subprocess.run(
        [sys.executable, "-m", "mirror", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
