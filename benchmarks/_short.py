"""Workload 8: the short commands a person types between runs, against Python's own start.

``mirror --version`` and ``mirror status`` (of a pull's SQLite store, by ``--dest`` and by
its manifest) start a fresh interpreter each; ``python -c pass`` with the same
interpreter and site-packages is the floor under all of them. ``python -c "import
asyncio"`` is beside it for scale: ``status`` of a SQLite store reads it without asyncio,
but ``status MANIFEST`` still loads the source modules, which import it.
What is above the floor is imports and the state store.

Python's bytecode caches are written, as an installed package has them:
``PYTHONDONTWRITEBYTECODE`` is dropped from the commands' environment and an unmeasured
run of each comes first.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from mirror._models import FileTask
from mirror._state import Member, open_store

from ._measure import Measurement, run_measured
from ._results import Row, Target, WorkloadResult
from ._suite import Suite

__all__ = ["w9_short_commands"]

#: Runs of each command, alternating; ten, whatever --reps says: each takes a blink.
RUNS = 10
#: The issue's goal for each mirror command's median wall, in seconds.
TARGET = 0.150
#: The pull ``status`` reports on: this many files, the last FAILED of them failed.
FILES = 1_000
FAILED = 10


async def _pull(dest: Path) -> None:
    """A finished pull's state store in ``dest``: verified files and a few failures."""
    store = await open_store(None, dest)
    try:
        member = Member(id="bench:1:w8", host="bench", pid=1)
        generation = await store.join(member, lease=60)
        tasks = [
            FileTask(
                source="ena",
                accession=f"ERR{8_000_000 + i}",
                url=f"https://ftp.sra.ebi.ac.uk/vol1/fastq/{i}.fastq.gz",
                path=f"ena/ERR{8_000_000 + i}/{i}.fastq.gz",
                size=1 << 20,
                checksum=f"{i:032x}",
            )
            for i in range(FILES)
        ]
        await store.plan(tasks, generation)
        for i, claim in enumerate(await store.claim(member, generation, FILES, lease=60)):
            if i < FILES - FAILED:
                size = claim.task.size or 0
                await store.complete(
                    claim.task.key,
                    claim.fence,
                    md5=claim.task.checksum or "",
                    size=size,
                    verified_by="md5",
                )
            else:
                await store.fail(claim.task.key, claim.fence, "HTTP 404 from ftp.sra.ebi.ac.uk")
        await store.leave(member)
    finally:
        await store.aclose()


def w9_short_commands(suite: Suite) -> WorkloadResult:
    key = "W9"
    dest = suite.fresh(key, "pull")
    asyncio.run(_pull(dest))
    manifest = dest.parent / "manifest.yaml"
    doc = {"version": 1, "dest": str(dest), "sources": [{"ena": {"accessions": ["PRJEB1787"]}}]}
    manifest.write_text(json.dumps(doc), encoding="utf-8")
    floor, loop = "python -c pass", "python -c 'import asyncio'"
    commands = {
        floor: [sys.executable, "-c", "pass"],
        loop: [sys.executable, "-c", "import asyncio"],
        "mirror --version": [*suite.mirror, "--version"],
        "mirror status --dest DIR": [*suite.mirror, "status", "--dest", str(dest)],
        "mirror status MANIFEST": [*suite.mirror, "status", str(manifest)],
    }
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    expected = f"verified  {FILES - FAILED:>8} files"
    # Unmeasured, once each: the bytecode caches are written, the files are in the page
    # cache, and the store reads back as written.
    for name, argv in commands.items():
        shown = subprocess.run(argv, capture_output=True, text=True, env=env)
        if "status" in argv and (shown.returncode != 1 or not shown.stdout.startswith(expected)):
            raise RuntimeError(f"{name} printed {shown.stdout!r} {shown.stderr!r}")
    measured: dict[str, list[Measurement]] = {name: [] for name in commands}
    for rep in range(RUNS):
        for name, argv in commands.items():
            slug = "".join(c if c.isalnum() else "-" for c in name)
            status = "status" in argv
            log = suite.log(key, f"{slug}-{rep}")
            m = run_measured(name, argv, log=log, ok_codes=(1,) if status else (0,), env=env)
            if status and expected not in log.read_text(encoding="utf-8"):
                raise RuntimeError(f"{name}: did not print {expected!r}; see {log}")
            measured[name].append(m)
        suite.say(
            f"  {key} rep {rep + 1}/{RUNS}  "
            + "  ".join(f"{name} {ms[-1].wall * 1000:.0f} ms" for name, ms in measured.items())
        )
    result = WorkloadResult(
        key=key,
        title=f"short commands, {RUNS} runs each; status of a SQLite store of {FILES:,} files",
    )
    base = Row(tool=floor, runs=measured[floor], files=0, bytes=0, unit="files/s")
    base.note = f"the floor: {base.wall * 1000:.0f} ms to start this Python and exit"
    under = Row(tool=loop, runs=measured[loop], files=0, bytes=0, unit="files/s")
    under.note = f"asyncio's import, for scale: {under.wall * 1000:.0f} ms"
    result.rows += [base, under]
    for name in list(commands)[2:]:
        row = Row(tool=name, runs=measured[name], files=0, bytes=0, unit="files/s")
        target = Target(
            what=f"{key} {name} median wall",
            value=row.wall * 1000,
            op="<=",
            limit=TARGET * 1000,
            unit="ms",
        )
        row.target, row.passed = f"<= {TARGET:.3f} s", target.passed
        row.note = (
            f"{row.wall * 1000:.0f} ms: {(row.wall - base.wall) * 1000:.0f} ms above "
            f"{base.tool}; CPU {row.cpu * 1000:.0f} ms"
        )
        result.rows.append(row)
        result.targets.append(target)
    result.notes.append(
        f"each run a fresh process ({' '.join(suite.mirror)}), alternating; the status rows "
        f"read {FILES - FAILED:,} verified and {FAILED} failed files and list the failures"
    )
    return result
