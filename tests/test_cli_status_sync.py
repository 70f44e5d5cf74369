"""``mirror status`` reads a SQLite store read-only, without an event loop, and says
exactly what the store opened as a run opens it says: the same lines, the same JSON,
the same exit code. A store that opening would change, or a pull the store does not
hold, is read as before.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from mirror._cli_parser import _parser
from mirror._cli_status import _status, _status_async
from mirror._models import FileTask
from mirror._state import Member, open_store

from .state_schema_1 import downgrade_to_schema_1


def _args(*argv: str) -> argparse.Namespace:
    args = _parser().parse_args(["status", *argv])
    args.state = args.state or None
    return args


def _dead_pid() -> int:
    """The id of a process of this host that has ended (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


async def _busy_pull(dest: Path, *, state: str | None = None) -> None:
    """Every kind of line: verified, failed, pending, a file held by a live member, one
    held by a member whose process died, a source's error and a refusal."""
    store = await open_store(state, dest)
    try:
        here = socket.gethostname()
        live = Member(id=f"{here}:{os.getpid()}:a", host=here, pid=os.getpid())
        pid = _dead_pid()
        dead = Member(id=f"{here}:{pid}:b", host=here, pid=pid)
        generation = await store.join(live, lease=60)
        await store.join(dead, lease=60)
        tasks = [
            FileTask(source="ena", accession="ERR1", url=f"https://h/{n}", path=n, size=3 + i)
            for i, n in enumerate(["ena/a.gz", "ena/b.gz", "ena/c.gz", "ena/d.gz", "ena/e.gz"])
        ]
        await store.plan(tasks, generation)
        first, second, held = await store.claim(live, generation, 3, lease=60)
        (stale,) = await store.claim(dead, generation, 1, lease=60)
        assert (held.task.path, stale.task.path) == ("ena/c.gz", "ena/d.gz")
        assert await store.complete(
            first.task.key, first.fence, md5="0" * 32, size=3, verified_by="md5"
        )
        assert await store.fail(second.task.key, second.fence, "HTTP 404: gone")
        await store.record_problem(generation, "error", "mgnify: MGYS1: HTTP 500")
        await store.record_problem(generation, "refused", "ega: EGAD1: 401 Unauthorized")
    finally:
        await store.aclose()


def _printed(fn: Callable[[], int]) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = fn()
    return code, out.getvalue()


def _read_only(args: argparse.Namespace) -> tuple[int, str]:
    """Exit code and output of ``mirror status ARGS``, answered without an event loop."""

    def run() -> int:
        code = _status(args)
        assert isinstance(code, int), "the store was opened as a run opens it"
        return code

    return _printed(run)


def _reopened(args: argparse.Namespace) -> tuple[int, str]:
    """Exit code and output of ``mirror status ARGS``, which opens the store as a run does."""

    def run() -> int:
        coro = _status(args)
        assert asyncio.iscoroutine(coro), "answered read-only"
        return asyncio.run(coro)

    return _printed(run)


@pytest.mark.parametrize("json_", [False, True], ids=["text", "json"])
def test_the_read_only_path_says_what_the_store_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, json_: bool
) -> None:
    asyncio.run(_busy_pull(tmp_path))
    # One moment for both, so "N s ago" and "lease N s left" cannot differ by a tick.
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now)
    args = _args("--dest", str(tmp_path), *(["--json"] if json_ else []))
    code, quick = _read_only(args)
    assert (code, quick) == _printed(lambda: asyncio.run(_status_async(args, tmp_path)))
    assert code == 1
    if json_:
        doc = json.loads(quick)
        assert [f["path"] for f in doc["in_progress"]] == ["ena/c.gz"]
        assert (doc["running"], doc["pending"]) == (
            {"files": 1, "bytes": 5},
            {"files": 2, "bytes": 6 + 7},
        )
    else:
        lines = quick.splitlines()
        assert lines[:4] == [
            "verified         1 files          3 B",
            "running          1 files          5 B",
            "pending          2 files         13 B",
            "failed           1 files          4 B",
        ]
        assert lines[-4:] == [
            "ena/c.gz\trunning\t" + f"{socket.gethostname()} pid {os.getpid()}, lease 60 s left",
            "mgnify\tnot planned\tMGYS1: HTTP 500",
            "ega\tcredentials refused\tEGAD1: 401 Unauthorized",
            "ena/b.gz\tfailed\tHTTP 404: gone",
        ]


def test_a_store_written_by_an_older_version_is_opened_as_before(tmp_path: Path) -> None:
    asyncio.run(_busy_pull(tmp_path))
    downgrade_to_schema_1(tmp_path / ".mirror" / "state.sqlite")
    code, out = _reopened(_args("--dest", str(tmp_path)))
    assert code == 1
    assert out.splitlines()[-1] == "ena/b.gz\tfailed\tHTTP 404: gone"
    db = sqlite3.connect(tmp_path / ".mirror" / "state.sqlite")
    try:
        version = db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
    finally:
        db.close()
    assert version == ("2",)  # the store opened as a run opens it: migrated


def test_a_pull_the_shared_store_does_not_hold_is_opened_as_before(tmp_path: Path) -> None:
    store = tmp_path / "shared.sqlite"
    asyncio.run(_busy_pull(tmp_path / "one", state=str(store)))
    code, out = _reopened(_args("--dest", str(tmp_path / "two"), "--state", str(store)))
    assert code == 0
    assert out.splitlines()[0] == "verified         0 files          0 B"
    # Opening it added the pull: now it is read as it stands.
    assert _read_only(_args("--dest", str(tmp_path / "two"), "--state", str(store)))[0] == 0
    assert _read_only(_args("--dest", str(tmp_path / "one"), "--state", str(store)))[0] == 1


def test_status_reads_while_another_process_writes(tmp_path: Path) -> None:
    asyncio.run(_busy_pull(tmp_path))
    writer = sqlite3.connect(tmp_path / ".mirror" / "state.sqlite", isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("UPDATE files SET reason='later' WHERE status='failed'")
        code, out = _read_only(_args("--dest", str(tmp_path)))
        writer.execute("COMMIT")
    finally:
        writer.close()
    # The last committed state: a write not yet committed is not seen, nor waited for.
    assert (code, out.splitlines()[-1]) == (1, "ena/b.gz\tfailed\tHTTP 404: gone")


@pytest.mark.slow  # a child process: a fresh interpreter is the only honest import list
def test_status_by_dest_imports_no_event_loop_engine_or_rich(tmp_path: Path) -> None:
    asyncio.run(_busy_pull(tmp_path))
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "mirror", "status", "--dest", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "MIRROR_STATE": ""},
    )
    assert done.returncode == 1, done.stderr
    assert done.stdout.splitlines()[-1] == "ena/b.gz\tfailed\tHTTP 404: gone"
    imported = {
        line.rsplit("|", 1)[-1].strip()
        for line in done.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert "mirror._state._sqlite_reads" in imported
    banned = ["asyncio", "aiohttp", "rich", "uvloop", "asyncpg", "ssl", "yaml", "logging"]
    assert sorted(m for m in imported if m.split(".")[0] in banned) == []


@pytest.mark.parametrize("dest", ["pulled", "~/pulled", None])
def test_status_by_manifest_reads_its_dest_without_the_sources(
    tmp_path: Path, dest: str | None
) -> None:
    # The store where the manifest's dest says (relative to the manifest, ~ expanded, or
    # the default), while the rest of it would not even validate.
    home = tmp_path / "home"
    where = {"pulled": tmp_path / "pulled", "~/pulled": home / "pulled", None: None}[dest]
    where = where or tmp_path / "mirror-data"
    asyncio.run(_busy_pull(where))
    manifest = tmp_path / "m.yaml"
    top = f"dest: {dest}\n" if dest else ""
    manifest.write_text(top + "sources:\n  - ena: {accessions: [NOT-AN-ACCESSION]}\n")
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "mirror", "status", str(manifest)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "MIRROR_STATE": "", "HOME": str(home)},
        cwd=home.parent,
    )
    assert done.returncode == 1, done.stderr
    assert done.stdout.splitlines()[-1] == "ena/b.gz\tfailed\tHTTP 404: gone"
    imported = {
        line.rsplit("|", 1)[-1].strip()
        for line in done.stderr.splitlines()
        if line.startswith("import time:")
    }
    banned = ["asyncio", "aiohttp", "rich", "uvloop", "mirror.sources", "mirror._manifest"]
    assert sorted(m for m in imported if any(m == b or m.startswith(b + ".") for b in banned)) == []


def test_status_by_a_manifest_that_is_not_yaml_names_the_line(tmp_path: Path) -> None:
    manifest = tmp_path / "m.yaml"
    manifest.write_text("dest: [unclosed\n")
    done = subprocess.run(
        [sys.executable, "-m", "mirror", "status", str(manifest)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "MIRROR_STATE": ""},
    )
    assert done.returncode == 2
    assert f"{manifest}:" in done.stderr
