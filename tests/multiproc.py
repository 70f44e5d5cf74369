"""Several ``mirror run`` processes on one pull, against an emulator on loopback.

The emulator's request log (JSONL, one line per request as it ends) is the ground
truth: what was served, to whom it does not matter, how many bytes and when.
Everything here polls a condition with a deadline; nothing sleeps in place of
synchronisation.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mirror import Summary
from mirror.emulator import Catalog, Emulator, Fault, FilesOptions, GeneratedStudy, md5_of

from .threaded import Served, serving

__all__ = [
    "Emulated",
    "Expected",
    "RequestLog",
    "Run",
    "RunHere",
    "expected_files",
    "manifest_doc",
    "md5_on_disk",
    "mirror_here",
    "most_in_window",
    "read_index",
    "run_here",
    "start_emulator",
    "start_run",
    "wait_until",
    "write_manifest",
    "wrong_files",
]

#: Where the package under test lives: child processes import this copy of it.
REPO = Path(__file__).resolve().parent.parent


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    path = os.environ.get("PYTHONPATH")
    return {
        **os.environ,
        "PYTHONPATH": f"{REPO}{os.pathsep}{path}" if path else str(REPO),
        **(extra or {}),
    }


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> float:
    """Poll ``condition`` until it holds; the monotonic time it did. Fails after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.02)
    return time.monotonic()


# -- the emulator -------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Expected:
    """One file of the pull: where it lands under ``dest`` and what it must hold."""

    url_path: str
    local: str
    size: int
    md5: str


def expected_files(study: GeneratedStudy) -> list[Expected]:
    """Every FASTQ file of ``study``, with the MD5 the emulator serves it with."""
    out = []
    for run in study.iter_runs():
        for f in run.fastq:
            name = f.path.rsplit("/", 1)[1]
            out.append(
                Expected(
                    url_path="/" + f.path.lstrip("/"),
                    local=f"ena/{run.accession}/{name}",
                    size=f.size,
                    md5=md5_of(f.path, f.size),
                )
            )
    return out


@dataclass
class RequestLog:
    """The emulator's JSONL request log, re-read on demand (it only grows)."""

    path: Path
    _entries: list[dict[str, Any]] = field(default_factory=list)
    _offset: int = 0

    def entries(self) -> list[dict[str, Any]]:
        """Every request logged so far (only whole lines: the writer may be mid-line)."""
        try:
            with self.path.open("rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return self._entries
        whole = data.rfind(b"\n") + 1
        for line in data[:whole].splitlines():
            if line.strip():
                self._entries.append(json.loads(line))
        self._offset += whole
        return self._entries

    def files(self, since: float = 0.0) -> list[dict[str, Any]]:
        """Requests to the file host that arrived at or after ``since`` (epoch seconds)."""
        return [e for e in self.entries() if e["host"] == "ftp" and e["t"] >= since]

    def portal(self, since: float = 0.0, until: float = float("inf")) -> list[dict[str, Any]]:
        """Requests to the Portal API host (``/ena/portal/api/...``) within [since, until)."""
        return [
            e
            for e in self.entries()
            if e["host"] == "www" and "/portal/api/" in e["path"] and since <= e["t"] < until
        ]

    def served(self, since: float = 0.0) -> dict[str, int]:
        """Body bytes the file host sent, per URL path."""
        out: dict[str, int] = defaultdict(int)
        for e in self.files(since):
            out[e["path"]] += e["bytes"]
        return dict(out)

    def served_total(self, since: float = 0.0) -> int:
        return sum(e["bytes"] for e in self.files(since))


def most_in_window(times: Iterable[float], window: float) -> int:
    """The most request arrivals within any ``window`` seconds (a closed interval)."""
    ts = sorted(times)
    most = j = 0
    for i, t in enumerate(ts):
        while ts[j] < t - window:
            j += 1
        most = max(most, i - j + 1)
    return most


@dataclass
class Emulated:
    """The emulator on a thread of this process, with its own event loop (the ``mirror``
    processes reach it over loopback, as any other server)."""

    endpoints: dict[str, str]
    log: RequestLog
    _served: Served[Emulator]
    _stop: contextlib.ExitStack

    @property
    def file_host(self) -> str:
        """The file host as the manifest's ``hosts:`` keys it (``127.0.0.1:PORT``)."""
        return self.endpoints["ena_files"].split("//", 1)[1].split("/", 1)[0]

    @property
    def portal_host(self) -> str:
        return self.endpoints["ena_portal"].split("//", 1)[1].split("/", 1)[0]

    def set_faults(self, faults: Sequence[Fault]) -> None:
        """From now on, ``faults`` instead of the faults so far (responses under way keep
        theirs)."""
        emulator = self._served.value

        def apply() -> None:
            emulator.faults.clear()
            for fault in faults:
                emulator.faults.add(fault)

        self._served.call(apply)

    def stop(self) -> None:
        self._stop.close()


def start_emulator(
    work: Path, catalog: Catalog, *, bandwidth: int | None = None, faults: Sequence[Fault] = ()
) -> Emulated:
    """Start the emulator on ``catalog``, every file response paced at ``bandwidth``
    bytes/s, with ``faults``; its request log in ``work``."""
    work.mkdir(parents=True, exist_ok=True)
    log = work / "requests.jsonl"
    emulator = Emulator(
        catalog, files=FilesOptions(bandwidth=bandwidth), faults=faults, log_path=log
    )
    with contextlib.ExitStack() as stack:
        served = stack.enter_context(serving(emulator))
        return Emulated(
            endpoints=dict(emulator.endpoints),
            log=RequestLog(log),
            _served=served,
            _stop=stack.pop_all(),
        )


# -- manifests and runs --------------------------------------------------------------------


def manifest_doc(
    emu: Emulated,
    dest: Path,
    accessions: Sequence[str],
    *,
    workers: int = 8,
    hosts: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "version": 1,
        "dest": str(dest),
        "workers": workers,
        "endpoints": {
            "ena_portal": emu.endpoints["ena_portal"],
            "ena_files": emu.endpoints["ena_files"],
        },
        "sources": [{"ena": {"accessions": list(accessions), "files": ["fastq"]}}],
    }
    if hosts:
        doc["hosts"] = hosts
    return doc


def write_manifest(path: Path, doc: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


@dataclass
class Run:
    """One ``mirror run --json -q`` child process; its stdout and stderr go to files."""

    proc: subprocess.Popen[bytes]
    out: Path
    err: Path
    #: Epoch seconds just before the fork.
    started: float

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait(self, timeout: float = 60.0) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"mirror run (pid {self.pid}) still running after {timeout:g} s:\n{self.stderr()}"
            ) from None

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        """Kill it if it still runs (test teardown)."""
        if self.proc.poll() is None:
            self.kill()

    def stderr(self) -> str:
        return self.err.read_text(encoding="utf-8", errors="replace")

    def events(self) -> Iterator[dict[str, Any]]:
        for line in self.out.read_text(encoding="utf-8").splitlines():
            if line.startswith("{"):
                yield json.loads(line)

    def summary(self) -> dict[str, Any]:
        """The ``run-finished`` event's summary."""
        finished = [e for e in self.events() if e["event"] == "run-finished"]
        assert finished, f"no run-finished event from pid {self.pid}:\n{self.stderr()}"
        summary: dict[str, Any] = finished[-1]["summary"]
        return summary


def start_run(
    manifest: Path,
    work: Path,
    *,
    name: str,
    dest: Path | None = None,
    state: str | None = None,
    lease: float | None = None,
    extra: Sequence[str] = (),
    env: dict[str, str] | None = None,
    hostname: str | None = None,
) -> Run:
    """``mirror run MANIFEST [--dest D] [--state URL] [--lease S] --json -q`` in a child;
    with ``hostname``, under that host name (``unshare --uts``; its pid stays the same)."""
    argv = [sys.executable, "-m", "mirror", "run", str(manifest), "--json", "-q"]
    if dest is not None:
        argv += ["--dest", str(dest)]
    if state is not None:
        argv += ["--state", state]
    if lease is not None:
        argv += ["--lease", f"{lease:g}"]
    argv += list(extra)
    if hostname is not None:
        # A UTS namespace of its own: the process is a member of another host as far as
        # the pull can tell (same store, same dest, another host name).
        unshare = ["unshare", "--uts"] if os.geteuid() == 0 else ["unshare", "-Ur", "--uts"]
        argv = [*unshare, "sh", "-c", 'hostname "$0" && exec "$@"', hostname, *argv]
    out, err = work / f"{name}.out", work / f"{name}.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        started = time.time()
        proc = subprocess.Popen(argv, stdout=stdout, stderr=stderr, env=_env(env))
    return Run(proc=proc, out=out, err=err, started=started)


@dataclass
class RunHere:
    """``mirror.run`` on a thread of this process: a member of the pull (this process's
    pid) without a new Python to start, for the member a test does not kill."""

    thread: threading.Thread
    #: Epoch seconds just before it started.
    started: float
    outcome: list[Summary | BaseException]

    def wait(self, timeout: float = 60.0) -> Summary:
        self.thread.join(timeout)
        if self.thread.is_alive():
            raise AssertionError(f"mirror.run still running after {timeout:g} s")
        (outcome,) = self.outcome
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


def run_here(
    manifest: Path,
    *,
    dest: Path | None = None,
    state: str | None = None,
    lease: float | None = None,
) -> RunHere:
    """``mirror.run(MANIFEST, dest=, state=, lease=)`` on its own thread and event loop."""
    from mirror import run

    outcome: list[Summary | BaseException] = []

    def main() -> None:
        try:
            outcome.append(asyncio.run(run(str(manifest), dest=dest, state=state, lease=lease)))
        except BaseException as exc:  # handed to wait()
            outcome.append(exc)

    thread = threading.Thread(target=main, name="mirror-run", daemon=True)
    started = time.time()
    thread.start()
    return RunHere(thread=thread, started=started, outcome=outcome)


def mirror_here(*args: str) -> subprocess.CompletedProcess[str]:
    """The ``mirror`` command line run in this process: the same output, without the
    second or more a new Python takes to start on a loaded machine."""
    from mirror._cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return subprocess.CompletedProcess(["mirror", *args], code, out.getvalue(), err.getvalue())


# -- what is on disk ------------------------------------------------------------------------


def md5_on_disk(path: Path) -> str:
    h = hashlib.md5()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def wrong_files(dest: Path, files: Sequence[Expected]) -> list[str]:
    """Files missing or not byte-identical to the catalog's (empty: all good)."""
    bad = []
    for f in files:
        path = dest / f.local
        if not path.is_file():
            bad.append(f"{f.local}: missing")
        elif path.stat().st_size != f.size:
            bad.append(f"{f.local}: {path.stat().st_size} bytes, expected {f.size}")
        elif md5_on_disk(path) != f.md5:
            bad.append(f"{f.local}: MD5 differs")
    return bad


def read_index(dest: Path) -> list[dict[str, str]]:
    lines = (dest / "index.tsv").read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t")
    return [dict(zip(header, line.split("\t"), strict=True)) for line in lines[1:]]
