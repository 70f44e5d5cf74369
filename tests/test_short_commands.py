"""The short commands stay short: ``import mirror``, ``mirror --version``, ``--help`` and
``mirror status`` load neither the engine nor aiohttp (nor rich, YAML or uvloop where
they are not needed), whose imports take several times longer than these commands need
to run. Checked by what a fresh interpreter has imported, not by timing it; the wall
times are the benchmarks' W9 rows.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import mirror
from mirror._cli import main
from mirror._cli_parser import LEASE, PROGRESS_INTERVAL
from mirror._display import PLAIN_INTERVAL
from mirror._models import FileTask
from mirror._state import Member, open_store

#: Imported only by the commands that download.
ENGINE = ["aiohttp", "asyncpg", "uvloop", "mirror._api", "mirror._engine", "mirror._http"]
#: stderr through rich is made on first use: these commands print to stdout.
RICH = ["rich", "rich.console", "rich.logging"]
#: The tunables' dataclasses: a manifest loads them, the parser and a store do not.
TUNING = ["mirror._tuning", "mirror._retry"]
#: What only a command that reads the store needs: the parser alone needs none of it.
STORE = ["asyncio", "logging", "sqlite3", "mirror._models", "mirror._state", "mirror._cli_status"]

_CHILD = """
import json, sys
import mirror
import mirror._cli
try:
    code = mirror._cli.main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
sys.stdout.flush()
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


def _child(*args: str) -> tuple[int, list[str], set[str]]:
    """Exit code, output lines and imported modules of ``mirror ARGS`` in a fresh process."""
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "MIRROR_STATE": ""},
    )
    assert done.returncode == 0, done.stderr
    *lines, last = done.stdout.splitlines()
    report = json.loads(last)
    return report["code"], lines, set(report["modules"])


@pytest.mark.slow  # child processes: a fresh interpreter is the only honest sys.modules
@pytest.mark.parametrize(
    "args",
    [["--version"], ["--help"], ["status", "--help"], ["run", "--help"], ["get", "--help"]],
    ids=" ".join,
)
def test_the_parser_alone_imports_no_command(args: list[str]) -> None:
    code, lines, modules = _child(*args)
    assert code == 0
    if args == ["--version"]:
        assert lines == ["ebi-mirror 0.1.0"]
    else:
        assert lines[0].startswith(f"usage: mirror {args[0]}" if len(args) > 1 else "usage:")
    assert [m for m in [*ENGINE, *RICH, *TUNING, *STORE, "yaml"] if m in modules] == []


async def _pull(dest: Path) -> None:
    """A state store with a file verified, one failed and one pending."""
    store = await open_store(None, dest)
    try:
        member = Member(id="elsewhere:1:t", host="elsewhere", pid=1)
        generation = await store.join(member, lease=60)
        tasks = [
            FileTask(source="ena", accession="ERR164407", url=f"https://h/{n}", path=n, size=4)
            for n in ("ena/a.fastq.gz", "ena/b.fastq.gz", "ena/c.fastq.gz")
        ]
        await store.plan(tasks, generation)
        first, second = await store.claim(member, generation, 2, lease=60)
        assert await store.complete(
            first.task.key, first.fence, md5="0" * 32, size=4, verified_by="md5"
        )
        assert await store.fail(second.task.key, second.fence, "HTTP 404")
        await store.leave(member)
    finally:
        await store.aclose()


STATUS = [
    "verified         1 files          4 B",
    "pending          1 files          4 B",
    "failed           1 files          4 B",
    "ena/b.fastq.gz\tfailed\tHTTP 404",
]


@pytest.mark.slow  # child processes: a fresh interpreter is the only honest sys.modules
def test_status_by_dest_reads_the_store_without_engine_rich_yaml_or_asyncio(
    tmp_path: Path,
) -> None:
    asyncio.run(_pull(tmp_path))
    code, lines, modules = _child("status", "--dest", str(tmp_path))
    assert (code, lines) == (1, STATUS)
    assert [m for m in [*ENGINE, *RICH, *TUNING, "yaml", "asyncio", "ssl"] if m in modules] == []
    assert {"sqlite3", "mirror._state._sqlite_reads"} <= modules  # it did read the store


@pytest.mark.slow  # child processes: a fresh interpreter is the only honest sys.modules
def test_status_of_a_manifest_reads_its_dest_without_the_engine(tmp_path: Path) -> None:
    asyncio.run(_pull(tmp_path / "data"))
    manifest = tmp_path / "m.yaml"
    doc = {"version": 1, "dest": "data", "sources": [{"ena": {"accessions": ["ERR164407"]}}]}
    manifest.write_text(yaml.safe_dump(doc))
    code, lines, modules = _child("status", str(manifest))
    assert (code, lines) == (1, STATUS)
    # The manifest's dest is all status needs: no source module, no engine.
    assert "yaml" in modules
    assert [m for m in modules if m.startswith("mirror.sources")] == []
    assert [m for m in [*ENGINE, *RICH] if m in modules] == []


def test_the_parser_states_the_defaults_the_product_uses(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Written out in the parser, which imports neither of the modules that define them.
    assert (mirror.PullTuning().lease, PLAIN_INTERVAL) == (LEASE, PROGRESS_INTERVAL)
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    help_ = " ".join(capsys.readouterr().out.split())
    assert "loses its files to the others after this long (default 60)" in help_
    assert "a progress line this often (default 30)" in help_


@pytest.mark.slow  # child processes: a fresh interpreter is the only honest sys.modules
def test_import_mirror_loads_no_submodule_and_every_public_name_resolves() -> None:
    code = (
        "import json, sys\n"
        "import mirror\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('mirror.'))\n"
        "from mirror import Mirror, Tuning, run\n"
        "found = {n: getattr(mirror, n).__module__ for n in mirror.__all__}\n"
        "print(json.dumps([loaded, found, 'aiohttp' in sys.modules]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    loaded, found, aiohttp = json.loads(done.stdout)
    assert loaded == []
    # Each name is the object its module defines (not a copy, not a stand-in).
    assert set(found) == set(mirror.__all__)
    for name, module in found.items():
        assert getattr(importlib.import_module(module), name) is getattr(mirror, name), name
    assert aiohttp  # mirror.Mirror and mirror.run are the engine: asking for them loads it


def test_unknown_names_are_attribute_errors() -> None:
    with pytest.raises(AttributeError, match="module 'mirror' has no attribute 'Engine'"):
        _ = mirror.Engine  # type: ignore[attr-defined]
    with pytest.raises(ImportError, match="cannot import name 'Engine'"):
        from mirror import Engine  # type: ignore[attr-defined]  # noqa: F401
