"""Command-line and engine behaviours a review found wrong, each pinned by a test."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

import mirror
from mirror import _cli_demo
from mirror._config import HostLimit
from mirror._http import Http
from mirror.emulator import Catalog, Emulator

from .conftest import FAST_RETRY, ena_manifest, read_index
from .inproc import Cli, ThreadedEmulator
from .replay import Answer, Replay

#: The emulator serving from a thread, for the command line run in this process.
Serve = Callable[..., ThreadedEmulator]


def write(path: Path, doc: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def endpoint_flags(endpoints: dict[str, str]) -> list[str]:
    return [f"--endpoint={k}={v}" for k, v in endpoints.items()]


def test_plan_uses_the_state_store_named_by_state(
    emulator_thread: Serve, cli: Cli, tmp_path: Path
) -> None:
    emu = emulator_thread(Catalog.demo())
    m = write(tmp_path / "m.yaml", ena_manifest(emu.endpoints, tmp_path / "data", ["ERR164407"]))
    store = tmp_path / "elsewhere" / "state.sqlite"
    plan = cli("plan", str(m), "--state", f"sqlite:///{store}")
    assert plan.returncode == 0, plan.stderr
    assert store.is_file()
    assert not (tmp_path / "data/.mirror/state.sqlite").exists()
    status = cli("status", str(m), "--state", f"sqlite:///{store}")
    counts = [line.split()[:2] for line in status.stdout.splitlines()]
    assert counts == [["verified", "0"], ["pending", "2"], ["failed", "0"]]


@pytest.mark.parametrize("command", ["run", "plan", "status", "verify"])
def test_a_bad_state_url_is_a_usage_error(cli: Cli, tmp_path: Path, command: str) -> None:
    # Nothing listens on port 9: the store must be refused before any request.
    endpoints = {"ena_portal": "http://127.0.0.1:9/ena/portal/api"}
    m = write(tmp_path / "m.yaml", ena_manifest(endpoints, tmp_path / "data", ["ERR164407"]))
    for how, env in ((["--state", "mysql://db/pulls"], {}), ([], {"MIRROR_STATE": "mysql://x"})):
        out = cli(command, str(m), *how, env=env)
        assert out.returncode == 2, out.stderr
        url = how[1] if how else env["MIRROR_STATE"]
        assert out.stderr.strip().splitlines() == [
            f"mirror: error: --state (or MIRROR_STATE): unknown state store URL {url!r}: "
            "expected a path, sqlite:///PATH or postgresql://[user@]host[:port]/db"
        ]


async def test_an_engine_runs_once(emulator: Emulator, tmp_path: Path) -> None:
    doc = ena_manifest(emulator.endpoints, tmp_path / "data", ["ERR164407"])
    engine = mirror.Mirror(doc, retry=FAST_RETRY).engine()
    summary = await engine.run()
    assert summary.verified == 2
    requests = len(emulator.log)
    with pytest.raises(RuntimeError, match="runs once"):
        await engine.run()
    with pytest.raises(RuntimeError, match="runs once"):
        await engine.plan_only()
    assert len(emulator.log) == requests


async def test_a_run_ends_with_its_last_file_not_a_look_later(
    emulator: Emulator, tmp_path: Path
) -> None:
    # While files are in flight the run looks for more work every second (an eighth of
    # the lease, at most 1 s); the end of its last file must not wait for the next look.
    doc = ena_manifest(emulator.endpoints, tmp_path / "data", ["ERR164407"])
    loop = asyncio.get_running_loop()
    last = 0.0
    async with mirror.Mirror(doc, retry=FAST_RETRY, lease=600) as run:
        async for event in run.events():
            if isinstance(event, mirror.FileVerified):
                last = loop.time()
    assert run.summary.verified == 2
    assert loop.time() - last < 0.5


def test_demo_uses_the_packaged_manifest_whatever_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs/demo.yaml").write_text("version: 1\nsources: []\n")
    monkeypatch.chdir(tmp_path)
    chosen = _cli_demo._demo_manifest()
    assert chosen == Path(_cli_demo.__file__).parent / "emulator" / "demo.yaml"
    assert mirror.load_manifest(chosen).sources


def test_verify_rehashes_every_verified_file_of_the_pull(
    emulator_thread: Serve, cli: Cli, tmp_path: Path
) -> None:
    emu = emulator_thread(Catalog.demo())
    dest = tmp_path / "data"
    first = write(tmp_path / "a.yaml", ena_manifest(emu.endpoints, dest, ["ERR164407"]))
    second = write(tmp_path / "b.yaml", ena_manifest(emu.endpoints, dest, ["ERR4080002"]))
    for m in (first, second):
        assert cli("run", str(m), "-q").returncode == 0
    # A file the earlier run verified, damaged on disk after the later run.
    victim = dest / "ena/ERR164407/ERR164407_1.fastq.gz"
    data = bytearray(victim.read_bytes())
    data[10] ^= 0xFF
    victim.write_bytes(bytes(data))
    out = cli("verify", str(second))
    assert out.returncode == 1, out.stdout
    assert out.stdout.splitlines()[0].startswith("ena/ERR164407/ERR164407_1.fastq.gz\tmismatch")
    assert out.stdout.splitlines()[-1].startswith("5 files re-hashed, 1 mismatched")


def test_get_chooses_file_families_with_files(
    emulator_thread: Serve, cli: Cli, tmp_path: Path
) -> None:
    emu = emulator_thread(Catalog.demo())
    flags = endpoint_flags(emu.endpoints)
    # ERR4080003 has only a submitted file: nothing to download (exit 1), and the
    # message teaches get's own option.
    plain = cli("get", "ERR4080003", "--dest", str(tmp_path / "a"), *flags)
    assert plain.returncode == 1, plain.stderr
    assert "warning: ENA: ERR4080003: no fastq files (it has submitted files: " in plain.stderr
    assert "add --files fastq,submitted)" in plain.stderr
    assert "add them to 'files'" not in plain.stderr
    got = cli(
        "get", "ERR4080003", "--files", "submitted", "--dest", str(tmp_path / "b"), "-q", *flags
    )
    assert got.returncode == 0, got.stderr
    rows = read_index(tmp_path / "b")
    submitted = next(r for r in Catalog.demo().runs if r.accession == "ERR4080003").submitted
    assert len(rows) == len(submitted) > 0
    for row in rows:
        assert row["status"] == "verified"
        on_disk = (tmp_path / "b" / row["path"]).read_bytes()
        assert hashlib.md5(on_disk).hexdigest() == row["md5"]
    bad = cli("get", "ERR4080003", "--files", "fastq,bam", "--dest", str(tmp_path / "c"))
    assert bad.returncode == 2
    assert bad.stderr.strip() == (
        "mirror: error: <command line>: --files: 'bam' is not an ENA file family; "
        "expected any of fastq, submitted, sra, generated"
    )
    assert "--files FAMILIES" in cli("get", "--help").stdout


async def test_a_200_that_is_not_json_fails_fast_naming_url_and_type() -> None:
    routes = {
        "/html": Answer(body=b"<html><body>Maintenance</body></html>", content_type="text/html"),
        "/cut": Answer(body=b'{"data": [1, 2', content_type="application/json"),
    }
    async with Replay(routes) as replay, Http(lambda h: HostLimit(), retry=FAST_RETRY) as http:
        with pytest.raises(mirror.SourceError) as html:
            await http.get_json(f"{replay.base}/html")
        assert f"{replay.base}/html: expected JSON, got text/html" in str(html.value)
        assert [p for _, p, _, _ in replay.log] == ["/html"]
        # A body cut short may come whole next time, but not after three tries.
        with pytest.raises(mirror.SourceError, match="cut short"):
            await http.get_json(f"{replay.base}/cut")
        assert [p for _, p, _, _ in replay.log].count("/cut") == 3
