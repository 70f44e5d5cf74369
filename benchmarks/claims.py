"""``python -m benchmarks.claims``: how many files per second the state store hands out.

The store is the pull's work queue: every file a member downloads costs one share of a
``claim`` and one ``complete``. This measures that overhead on its own, without any
download: a pull of 300,000 planned files, three claimer processes (as three members
of one pull would be), each looping ``claim(n)`` then ``complete`` of every file it got
(the n completions side by side, as the n workers given those files would send them),
for a fixed time; claims per second = files claimed and completed by all three per
second of wall time. With n=1 (one claim per file: a worker asking for its next file)
and n=16 (the dispatcher filling its queue), on PostgreSQL (a server this script starts
with initdb and its default settings, fsync on; ebi-mirror's sessions commit with
``synchronous_commit=off``) and on SQLite (WAL, ``synchronous=NORMAL``, as ebi-mirror
opens it). After planning, PostgreSQL's tables are vacuumed and analyzed (what autovacuum
does on its own soon after a bulk load) and checkpointed, so that the repetitions
measure claims and not that. Backends and n alternate per repetition; medians are
printed, raw numbers saved in ``results/<machine>-claims.json``.

Besides the rate, the CPU each file cost (the claimers' own, plus the PostgreSQL
server's: every process of it) is printed: on a machine shared with other work the
rate follows the machine's load, the CPU per file much less; the load average is
printed with the results.

Each repetition is checked: every ``complete`` must land (its fence held), and the
store's verified count must equal the files claimed, so a file handed to two claimers
would show.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mirror._models import FileTask, TaskStatus
from mirror._state import Member, open_store
from tests.postgres import start_postgres

from ._env import machine_info, machine_name
from ._report import save_json

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
#: Long enough that no lease runs out during a repetition.
LEASE = 600.0
#: PostgreSQL must hand out at least this many files per second (the issue's target).
TARGET = 2000.0


def _task(i: int) -> FileTask:
    path = f"vol1/fastq/ERR{i // 1000:04d}/ERR{i:07d}/ERR{i:07d}_1.fastq.gz"
    return FileTask(
        source="ena",
        accession=f"ERR{i:07d}",
        url=f"https://ftp.sra.ebi.ac.uk/{path}",
        path=path,
        size=1_000_000 + i,
        checksum=f"{i:032x}",
    )


# -- one claimer process -----------------------------------------------------------------


async def _claimer(url: str, dest: Path, name: str, n: int, seconds: float) -> None:
    store = await open_store(url, dest)
    me = Member(id=f"{name}-{os.getpid()}", host="bench", pid=os.getpid())
    try:
        generation = await store.join(me, lease=LEASE)
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        files = lost = 0
        latencies: list[float] = []
        cpu = time.process_time()
        start = time.perf_counter()
        deadline = start + seconds
        while (now := time.perf_counter()) < deadline:
            claims = await store.claim(me, generation, n, lease=LEASE)
            latencies.append(time.perf_counter() - now)
            if not claims:
                break
            # The n files complete side by side, as the n workers given them would.
            landed = await asyncio.gather(
                *(
                    store.complete(
                        c.task.key,
                        c.fence,
                        md5=c.task.checksum or "",
                        size=c.task.size or 0,
                        verified_by="md5",
                    )
                    for c in claims
                )
            )
            lost += landed.count(False)
            files += len(claims)
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu
        result = {
            "files": files,
            "lost": lost,
            "seconds": elapsed,
            "cpu_s": cpu,
            "claim_ms_median": statistics.median(latencies) * 1000 if latencies else None,
            "claim_ms_p99": sorted(latencies)[int(len(latencies) * 0.99)] * 1000
            if latencies
            else None,
        }
        print(json.dumps(result), flush=True)
        # Connected until the server's CPU has been read: a backend that exits takes
        # its CPU time with it.
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        await store.leave(me)
    finally:
        await store.aclose()


def _claimer_main(argv: Sequence[str]) -> int:
    url, dest, name, n, seconds = argv
    runner: contextlib.AbstractContextManager[asyncio.Runner]
    try:
        import uvloop  # the event loop the mirror command runs on

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    with runner as r:
        r.run(_claimer(url, Path(dest), name, int(n), float(seconds)))
    return 0


# -- the parent -------------------------------------------------------------------------


@dataclass
class Config:
    backend: str
    n: int
    url: str
    dest: Path
    #: The PostgreSQL server's data directory (its CPU is counted), None for SQLite.
    data: Path | None = None
    runs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.backend} n={self.n}"

    def rates(self) -> list[float]:
        return [r["claims_per_s"] for r in self.runs]


async def _plan(url: str, dest: Path, rows: int) -> float:
    """Plan ``rows`` files in batches of 1,000, as the planner does; its seconds.

    The planner stays a live member (it does not leave): the claimers then join its
    generation, as members joining a running pull do.
    """
    store = await open_store(url, dest)
    try:
        planner = Member(id=f"planner-{dest.name}", host="bench", pid=os.getpid())
        generation = await store.join(planner, lease=LEASE)
        start = time.perf_counter()
        for first in range(0, rows, 1000):
            batch = [_task(i) for i in range(first, min(rows, first + 1000))]
            await store.plan(batch, generation)
        return time.perf_counter() - start
    finally:
        await store.aclose()


def _server_cpu(data: Path | None) -> float:
    """CPU seconds used so far by the PostgreSQL server at ``data`` (the postmaster and
    every process it started: backends, WAL writer, checkpointer, autovacuum)."""
    if data is None:
        return 0.0
    postmaster = int((data / "postmaster.pid").read_text().split()[0])
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if int(entry) == postmaster or int(fields[1]) == postmaster:
            total += int(fields[11]) + int(fields[12])  # utime + stime, in ticks
    return total / os.sysconf("SC_CLK_TCK")


def _run_claimers(config: Config, claimers: int, seconds: float) -> dict[str, Any]:
    command = [sys.executable, "-m", "benchmarks.claims", "--claimer", config.url]
    procs = [
        subprocess.Popen(
            [*command, str(config.dest), f"c{i}", str(config.n), str(seconds)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        for i in range(claimers)
    ]
    try:
        for p in procs:
            assert p.stdout is not None
            line = p.stdout.readline()
            if line.strip() != "ready":
                raise RuntimeError(f"claimer did not start: {line!r}")
        server = _server_cpu(config.data)
        for p in procs:  # every claimer is connected and joined: go together
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        results = []
        for p in procs:
            assert p.stdout is not None
            line = p.stdout.readline()
            if not line.startswith("{"):
                raise RuntimeError(f"claimer failed: {line!r}")
            results.append(json.loads(line))
        server = _server_cpu(config.data) - server
        for p in procs:
            p.communicate("bye\n", timeout=120)
            if p.returncode != 0:
                raise RuntimeError(f"claimer exited {p.returncode}")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    files = sum(r["files"] for r in results)
    wall = max(r["seconds"] for r in results)
    client = sum(r["cpu_s"] for r in results)
    return {
        "files": files,
        "lost": sum(r["lost"] for r in results),
        "wall_s": wall,
        "claims_per_s": files / wall,
        "client_cpu_s": client,
        "server_cpu_s": server,
        "cpu_us_per_file": (client + server) / files * 1e6 if files else None,
        "claimers": results,
    }


async def _verified(c: Config) -> int:
    store = await open_store(c.url, c.dest)
    try:
        return (await store.counts(None))[TaskStatus.VERIFIED][0]
    finally:
        await store.aclose()


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _table(configs: Sequence[Config], header: str) -> str:
    lines = [
        header,
        "store        n  reps  claims/s (median)  min..max        claim ms p50/p99"
        "  CPU us/file (client+server)",
    ]
    lines.append("-" * len(lines[1]))
    for c in configs:
        rates = c.rates()
        p50 = statistics.median(
            x["claim_ms_median"] for r in c.runs for x in r["claimers"] if x["claim_ms_median"]
        )
        p99 = statistics.median(
            x["claim_ms_p99"] for r in c.runs for x in r["claimers"] if x["claim_ms_p99"]
        )
        client = statistics.median(r["client_cpu_s"] / r["files"] * 1e6 for r in c.runs)
        server = statistics.median(r["server_cpu_s"] / r["files"] * 1e6 for r in c.runs)
        lines.append(
            f"{c.backend:<10} {c.n:>3}  {len(rates):>4}  {statistics.median(rates):>17,.0f}  "
            f"{min(rates):>6,.0f}..{max(rates):<6,.0f}  {p50:>7.2f}/{p99:<6.2f}"
            f"  {client + server:>6,.0f} ({client:,.0f}+{server:,.0f})"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--claimer"]:
        return _claimer_main(argv[1:])
    p = argparse.ArgumentParser(prog="python -m benchmarks.claims", description=__doc__)
    p.add_argument("--rows", type=int, default=300_000, help="files planned (default 300,000)")
    p.add_argument("--claimers", type=int, default=3, help="claimer processes (default 3)")
    p.add_argument("--seconds", type=float, default=5.0, help="per repetition (default 5)")
    p.add_argument("--reps", type=int, default=3, help="repetitions (default 3)")
    p.add_argument("--quick", action="store_true", help="20,000 rows, 2 s, 1 repetition")
    p.add_argument("--work", type=Path, default=HERE / "work", help="default benchmarks/work")
    p.add_argument("--results", type=Path, default=HERE / "results")
    args = p.parse_args(argv)
    if args.quick:
        args.rows, args.seconds, args.reps = 20_000, 2.0, 1
    work: Path = args.work.resolve() / "claims"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    started = datetime.datetime.now(datetime.UTC)
    machine = machine_info({}, REPO)
    load = os.getloadavg()
    try:
        with start_postgres(durable=True) as server:
            configs: list[Config] = []
            for n in (1, 16):
                database = server.create_database()
                url = server.url(database)
                data = server.directory / "data"
                configs.append(Config("postgresql", n, url, work / f"pg{n}", data))
                configs.append(Config("sqlite", n, str(work / f"s{n}.sqlite"), work / f"s{n}"))
            planned: dict[str, float] = {}
            for c in configs:
                planned[c.label] = asyncio.run(_plan(c.url, c.dest, args.rows))
                _say(f"{c.label}: planned {args.rows:,} files in {planned[c.label]:.1f} s")
            for c in configs:
                if c.data is not None:
                    # What autovacuum does on its own a while after a table took a whole
                    # plan (and would otherwise do during a repetition): the claims are
                    # measured, not the aftermath of loading 300,000 rows.
                    server.psql("VACUUM ANALYZE ebi_mirror_files", database=c.url.rsplit("/")[-1])
            server.psql("CHECKPOINT")
            for rep in range(args.reps):
                for c in configs:  # alternating: a slow moment of the machine hits all
                    result = _run_claimers(c, args.claimers, args.seconds)
                    if result["lost"]:
                        raise RuntimeError(f"{c.label}: {result['lost']} completes did not land")
                    c.runs.append(result)
                    _say(
                        f"rep {rep + 1} {c.label}: {result['files']:,} files, "
                        f"{result['claims_per_s']:,.0f} claims/s"
                    )
            for c in configs:
                verified = asyncio.run(_verified(c))
                claimed = sum(r["files"] for r in c.runs)
                if verified != claimed:
                    raise RuntimeError(f"{c.label}: {claimed} files claimed, {verified} verified")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    header = (
        f"ebi-mirror state store claims {started:%Y-%m-%d %H:%M} UTC: {machine['cpus']} CPUs "
        f"{machine['cpu_model']}; {args.rows:,} files planned, {args.claimers} claimer "
        f"processes, claim(n) then complete each, {args.seconds:g} s x {args.reps} rep(s)"
    )
    table = _table(configs, header)
    pg = [c for c in configs if c.backend == "postgresql"]
    worst = min(statistics.median(c.rates()) for c in pg)
    for c in pg:
        rate = statistics.median(c.rates())
        verdict = "PASS" if rate >= TARGET else "FAIL"
        table += f"\nTarget: PostgreSQL n={c.n} >= {TARGET:,.0f} claims/s: {rate:,.0f}  {verdict}"
    table += (
        "\nplanning (1,000 per batch): "
        + ", ".join(f"{k} {args.rows / v:,.0f} files/s" for k, v in planned.items())
        + f"\nload average (1 min) at start {load[0]:.1f}, at end {os.getloadavg()[0]:.1f}"
    )
    stamp = machine_name() + ("-quick" if args.quick else "") + "-claims"
    doc = {
        "started": started.isoformat(),
        "options": vars(args) | {"work": str(args.work), "results": str(args.results)},
        "machine": machine,
        "postgres_settings": "initdb defaults (fsync on); sessions synchronous_commit=off",
        "load_average": {"start": load, "end": os.getloadavg()},
        "planning_seconds": planned,
        "configs": [
            {
                "backend": c.backend,
                "n": c.n,
                "median_claims_per_s": statistics.median(c.rates()),
                "runs": c.runs,
            }
            for c in configs
        ],
        "target": {"claims_per_s": TARGET, "value": worst, "passed": worst >= TARGET},
        "table": table,
    }
    path = save_json(args.results, stamp, doc)
    print(table)
    print(f"results: {path}")
    return 0 if worst >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
