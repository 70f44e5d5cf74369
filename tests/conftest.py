"""Shared fixtures: the archive emulator on loopback, manifests pointing at it."""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import json
import linecache
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mirror import RetryPolicy
from mirror.emulator import Catalog, Emulator, EnaFile, EnaRun, LogEntry

#: ``postgres_server``/``postgres_url``: a real PostgreSQL server for the state store tests;
#: ``background``, ``cli``, ``emulator_thread``: the command and servers in this process;
#: ``outbox``: EGA's Live Outbox (sshd); ``ftps``: a Webin upload area (vsftpd).
pytest_plugins = ["tests.postgres", "tests.inproc", "tests.outbox", "tests.ftps"]

#: Retries as in production, but with short waits so fault tests stay fast.
FAST_RETRY = RetryPolicy(attempts=10, base=0.02, cap=0.2)


def pytest_configure(config: pytest.Config) -> None:
    """Compile the package once, before any child ``mirror`` or emulator process starts.

    With ``PYTHONDONTWRITEBYTECODE`` set (as in CI) nothing writes bytecode, so each of
    the suite's child processes would compile every module it imports again (a quarter
    of a second each). Done by the xdist controller (or a plain run), once.
    """
    if not hasattr(config, "workerinput"):
        import compileall

        compileall.compile_dir(Path(__file__).resolve().parents[1] / "mirror", quiet=1)


@pytest.hookimpl(trylast=True)  # after tests/clients/conftest.py has marked its tests
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The archives' own clients run only when asked for (``-m clients``): they need
    ``tests/clients/install.sh`` first. So ``-m "not slow"`` need not repeat it."""
    if "clients" in (config.option.markexpr or ""):
        return
    chosen = [item for item in items if item.get_closest_marker("clients") is None]
    if len(chosen) < len(items):
        config.hook.pytest_deselected(items=[i for i in items if i not in chosen])
        items[:] = chosen


#: A callback that holds the event loop this long off the CPU (blocked in a system call:
#: a file, a lock, a child process, a sleep) fails the test that ran it.
BLOCKING_LIMIT = 0.1
#: Blocking allowed, and why (matched against the report: the callback and its stack).
BLOCKING_ALLOWED: dict[str, str] = {
    # asyncio.to_thread's executor starts a worker thread on first use (and grows up to
    # its maximum): Thread.start() waits for the new thread to run, which a busy machine
    # can take a quarter of a second to do. Inherent to the default executor.
    ", in _adjust_thread_count\n": "the default executor starting a worker thread",
    # The same thread start seen from another executor: submit() takes the lock that
    # every executor holds while it starts a thread (with two loops in one process, as
    # a test running the command beside its own loop has, the other one may be starting).
    "with self._shutdown_lock, _global_shutdown_lock:": "another executor starting a thread",
    # asyncio.run's end starts a thread that joins the default executor: the same
    # Thread.start() wait, in the standard library's teardown of the loop.
    ", in shutdown_default_executor\n": "the loop's end starting its executor-joining thread",
    # The PostgreSQL tests read the server's tables back with psql, between the steps
    # they test: nothing of the product runs on the loop then.
    '/tests/postgres.py", line': "psql run by a PostgreSQL test to check the tables",
}


class LoopWatch:
    """Times every callback of every asyncio event loop while a test runs.

    Off the CPU is not enough to call a callback blocking: on a busy machine the
    scheduler (or a CPU quota) can hold a thread that only computes for 100 ms too.
    So a thread beside the loop looks every few milliseconds at a callback that runs
    long: the loop thread's state in ``/proc`` (``S``/``D``: waiting in a system call,
    ``R``: runnable) and its innermost Python line. A callback counts as blocking when
    it was seen waiting in a system call at the same line on two looks in a row; the
    report then names that line.
    """

    def __init__(self) -> None:
        self.found: list[str] = []
        #: Per loop thread (ident): when its current callback started, its native id.
        self._running: dict[int, tuple[float, int]] = {}
        #: Per loop thread: (line, stack) of its last look, and whether the line was
        #: seen waiting on two looks in a row (then the stack is the report).
        self._last: dict[int, tuple[str, str]] = {}
        self._blocked: dict[int, str] = {}
        self._stop = threading.Event()

    def install(self) -> Callable[[], None]:
        original = asyncio.events.Handle._run

        def timed(handle: asyncio.Handle) -> None:
            me = threading.get_ident()
            wall, cpu = time.perf_counter(), time.thread_time()
            self._running[me] = (wall, threading.get_native_id())
            try:
                original(handle)
            finally:
                self._running.pop(me, None)
                self._last.pop(me, None)
                stack = self._blocked.pop(me, None)
                wall = time.perf_counter() - wall
                if stack is not None and wall > BLOCKING_LIMIT:
                    off = wall - (time.thread_time() - cpu)
                    if off > BLOCKING_LIMIT:
                        self.found.append(_describe(handle, wall, off) + stack)

        asyncio.events.Handle._run = timed  # type: ignore[method-assign,assignment]
        sampler = threading.Thread(target=self._look, name="loop-watch", daemon=True)
        sampler.start()

        def uninstall() -> None:
            asyncio.events.Handle._run = original  # type: ignore[method-assign]
            self._stop.set()
            sampler.join()

        return uninstall

    def _look(self) -> None:
        step = BLOCKING_LIMIT / 5
        while not self._stop.wait(step):
            now = time.perf_counter()
            frames = sys._current_frames()
            for ident, (began, native) in list(self._running.items()):
                frame = frames.get(ident)
                if now - began < step or frame is None or ident in self._blocked:
                    continue
                if _thread_state(native) not in ("S", "D") or _waits_for_gil(native, frame):
                    self._last.pop(ident, None)
                    continue
                line = f"{frame.f_code.co_filename}:{frame.f_lineno}"
                stack = "".join(traceback.format_stack(frame)[-8:])
                if self._last.get(ident, ("", ""))[0] == line:
                    self._blocked[ident] = "\n    waiting in a system call at:\n" + stack
                self._last[ident] = (line, stack)


def _thread_state(native_id: int) -> str:
    """``R`` (running or runnable), ``S`` (sleeping), ``D`` (disk), ... of a thread."""
    try:
        with open(f"/proc/self/task/{native_id}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "?"


#: futex(2)'s number where the watch knows it: a thread waits there for a lock, or for
#: the GIL, which another thread may hold for 100 ms and more on a busy machine.
_FUTEX = {"x86_64": 202, "aarch64": 98}.get(os.uname().machine)
#: What a line that waits for a lock on purpose calls (a join, an event, a future).
_LOCK_CALLS = ("acquire(", "wait(", "join(", "result(", "start(", "lock")


def _waits_for_gil(native_id: int, frame: Any) -> bool:
    """Whether the thread is in futex(2) at a line that takes no lock: then it waits to
    run Python again (the GIL), which is the machine being busy, not the loop blocking."""
    if _FUTEX is None:
        return False
    try:
        with open(f"/proc/self/task/{native_id}/syscall") as f:
            if f.read().split(" ", 1)[0] != str(_FUTEX):
                return False
    except OSError:
        return False
    line = linecache.getline(frame.f_code.co_filename, frame.f_lineno)
    return not any(call in line for call in _LOCK_CALLS)


def _describe(handle: asyncio.Handle, wall: float, off: float) -> str:
    """The callback, and for a task the line it went on to wait at (after the block)."""
    what = repr(handle)
    owner = getattr(getattr(handle, "_callback", None), "__self__", None)  # a task step
    where = ""
    if isinstance(owner, asyncio.Task):
        frames = owner.get_stack(limit=1)
        if frames:
            code = frames[0].f_code
            where = f" (in {code.co_qualname}, {code.co_filename}:{frames[0].f_lineno})"
    return f"{what}{where} held the event loop {wall:.3f} s, {off:.3f} s of it blocked"


@pytest.fixture(autouse=True)
def no_blocking_on_the_loop(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail an async test during which a callback blocked the event loop (file I/O, a
    lock, a child process waited for on the loop's thread): that stalls every transfer."""
    if not inspect.iscoroutinefunction(request.function):
        yield
        return
    watch = LoopWatch()
    uninstall = watch.install()
    try:
        yield
    finally:
        uninstall()
    found = [f for f in watch.found if not any(key in f for key in BLOCKING_ALLOWED)]
    if found:
        pytest.fail("blocking I/O on the event loop:\n" + "\n".join(found), pytrace=False)


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


def one_stream(endpoints: dict[str, str]) -> dict[str, Any]:
    """``hosts:`` that give the file host one connection: a slow stream is never split
    (for tests of what one stream does: its resume, its pace)."""
    return {endpoints["ena_files"].split("//", 1)[1].split("/", 1)[0]: {"connections": 1}}


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


#: A study, a sample and two runs of the demo catalog: every ENA entry kind at once.
MIXED = ["PRJEB40001", "SAMEA110000010", "ERR120000001", "SRR9320616"]


def mixed_expected() -> dict[str, str]:
    """Local path → served path of every fastq and submitted file that ``MIXED`` names."""
    runs = {r.accession: r for r in Catalog.demo().runs}
    expected: dict[str, str] = {}
    for acc in (
        "ERR164407",
        "ERR4080001",
        "ERR4080002",
        "ERR4080003",
        "ERR11000001",
        "ERR11000002",
        "ERR120000001",
        "SRR9320616",
    ):
        for f in (*runs[acc].fastq, *runs[acc].submitted):
            expected[f"ena/{acc}/{f.path.rsplit('/', 1)[-1]}"] = f.path
    # The study also holds an analysis: its submitted file comes with `submitted`.
    (analysis,) = Catalog.demo().analyses
    for f in analysis.submitted:
        expected[f"ena/{analysis.accession}/{f.path.rsplit('/', 1)[-1]}"] = f.path
    return expected
