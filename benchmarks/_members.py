"""Workload 7: one pull by 1 process and by 3 processes together, under the same host limits.

The host limits hold for the pull as a whole, so three processes cannot go faster than
one: what this measures is what sharing the pull through the state store costs (joining,
claiming, leases, splitting the host's rate), as the wall time of the last process to
exit against one process alone.

Joining costs a fixed second or so of the host's rate (a newcomer starts once every
member has applied the new member count, and one rate window later, since the requests
made at the old shares in the last second count against the new ones), so the ratio
shrinks as the pull grows.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from mirror.emulator import GeneratedStudy, md5_of
from tests.postgres import PostgresMissing, PostgresServer, start_postgres

from ._data import FileSpec, verify
from ._measure import CommandFailed, Measurement, run_measured
from ._results import MB, Row, Target, WorkloadResult, median_ratio
from ._servers import Emulator
from ._suite import Suite

__all__ = ["w7_members"]

#: The file host's limits in the manifest: the same for one process and for three.
RATE = 40
CONNECTIONS = 8
WORKERS = 8
MEMBERS = 3


def _specs(study: GeneratedStudy) -> list[FileSpec]:
    return [
        FileSpec(item.path, run.accession, item.size, md5_of(item.path, item.size))
        for run in study.iter_runs()
        for item in run.fastq
    ]


def _manifest(path: Path, emu: Emulator, study: GeneratedStudy) -> Path:
    host = emu.files.split("//", 1)[1].split("/", 1)[0]
    doc = {
        "version": 1,
        "dest": str(path.parent / "unused"),
        "workers": WORKERS,
        "hosts": {host: {"rate": RATE, "connections": CONNECTIONS}},
        "endpoints": {"ena_portal": emu.portal, "ena_files": emu.files},
        "sources": [{"ena": {"accessions": [study.study], "files": ["fastq"]}}],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1), encoding="utf-8")
    return path


def _file_requests(log: Path, since: float) -> list[float]:
    """Arrival times of the file host's requests since ``since`` (epoch seconds)."""
    out = []
    with log.open("rb") as f:
        for line in f:
            entry = json.loads(line)
            if entry["host"] == "ftp" and entry["t"] >= since:
                out.append(float(entry["t"]))
    return sorted(out)


def _most_in_window(times: list[float], window: float) -> int:
    """The most arrivals within any half-open ``window`` of sorted ``times``."""
    most = j = 0
    for i, t in enumerate(times):
        while times[j] <= t - window:
            j += 1
        most = max(most, i - j + 1)
    return most


def _postgres(stack: contextlib.ExitStack, result: WorkloadResult) -> PostgresServer | None:
    """A PostgreSQL server for the run (stopped with ``stack``), or None if none is installed."""
    try:
        return stack.enter_context(start_postgres(durable=True))
    except PostgresMissing as exc:
        result.notes.append(f"no PostgreSQL row: {exc}")
        return None


def run_together(tool: str, argvs: Sequence[Sequence[str]], *, log: Path) -> Measurement:
    """Start every command at once; wall from the first fork to the last exit.

    CPU is the sum over the processes (``wait4``), peak RSS the largest of them (an
    upper bound: a forked child starts with its parent's high-water mark).
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    procs: list[subprocess.Popen[bytes]] = []
    with log.open("ab") as out:
        for argv in argvs:
            out.write(f"$ {' '.join(argv)}\n".encode())
        out.flush()
        start = time.perf_counter()
        for argv in argvs:
            procs.append(
                subprocess.Popen(
                    list(argv),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        user = sys_ = 0.0
        rss = 0
        codes = []
        for proc in procs:
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            codes.append(proc.returncode)
            user += usage.ru_utime
            sys_ += usage.ru_stime
            rss = max(rss, usage.ru_maxrss)
        wall = time.perf_counter() - start
    if any(codes):
        raise CommandFailed(f"{tool}: exit codes {codes}; see {log}")
    return Measurement(
        tool=tool,
        argv=list(argvs[0]),
        wall=wall,
        user=user,
        sys=sys_,
        maxrss_kib=rss,
        exit_code=0,
        log=str(log),
        extra={"processes": len(procs), "rss_upper_bound": True},
    )


def w7_members(suite: Suite) -> WorkloadResult:
    runs = 60 if suite.quick else 400
    key = "W7"
    study = GeneratedStudy(index=7, runs=runs, files_per_run=2, file_size=256 << 10)
    files = _specs(study)
    total = sum(f.size for f in files)
    result = WorkloadResult(
        key=key,
        title=f"{len(files)} files × 256 KiB, host limit {RATE} req/s and {CONNECTIONS} "
        f"connections: 1 process vs {MEMBERS} on one pull",
    )
    one, many, many_pg = "1 process", f"{MEMBERS} processes", f"{MEMBERS} processes, PostgreSQL"
    measured: dict[str, list[Measurement]] = {one: [], many: [], many_pg: []}
    busiest = busiest_0_9 = 0
    with contextlib.ExitStack() as stack:
        emu = stack.enter_context(
            Emulator({"generated_studies": [study.to_dict()]}, suite.work / "emulator" / key)
        )
        server = _postgres(stack, result)
        manifest = _manifest(suite.work / "manifests" / f"{key}.yaml", emu, study)
        # Unmeasured: the emulator computes (and caches) the MD5s its Portal reports.
        run_measured(
            "warm-up",
            [*suite.mirror, "plan", str(manifest), "--dest", str(suite.fresh(key, "plan"))],
            log=suite.log(key, "warm-up"),
        )
        configs = [(one, 1, False), (many, MEMBERS, False)]
        if server is not None:
            configs.append((many_pg, MEMBERS, True))
        for rep in range(suite.reps):
            for label, count, shared_db in configs:
                dest = suite.fresh(key, "".join(c if c.isalnum() else "-" for c in label))
                argv = [*suite.mirror, "run", str(manifest), "--dest", str(dest), "-q"]
                database = None
                if shared_db and server is not None:
                    # A database per run: the pull is keyed by dest, which runs reuse.
                    database = server.create_database()
                    argv += ["--state", server.url(database)]
                os.sync()
                began = time.time()
                m = run_together(label, [argv] * count, log=suite.log(key, f"{label}-{rep}"))
                if database is not None and server is not None:
                    server.drop_database(database)
                arrivals = _file_requests(emu.log, began)
                m.extra.update(
                    file_requests=len(arrivals),
                    busiest_second=_most_in_window(arrivals, 1.0),
                    busiest_0_9_s=_most_in_window(arrivals, 0.9),
                )
                busiest = max(busiest, m.extra["busiest_second"])
                busiest_0_9 = max(busiest_0_9, m.extra["busiest_0_9_s"])
                checked = verify(
                    label, ((dest / "ena" / f.run / f.name, f.size, f.md5) for f in files)
                )
                m.extra.update(files=checked.files, bytes=checked.bytes, verified=True)
                measured[label].append(m)
                suite.say(
                    f"  {key} rep {rep + 1}/{suite.reps} {label:<26} {m.wall:7.2f} s  "
                    f"{total / MB / m.wall:6.1f} MB/s  cpu {m.cpu:6.2f} s  "
                    f"({checked.files} files ok; {len(arrivals)} file requests, at most "
                    f"{m.extra['busiest_second']} in one second)"
                )
                suite.discard(dest, last=rep == suite.reps - 1)
    single = Row(tool=one, runs=measured[one], files=len(files), bytes=total)
    result.rows.append(single)
    for label in (many, many_pg):
        if not measured[label]:
            continue
        row = Row(tool=label, runs=measured[label], files=len(files), bytes=total)
        row.ratio = median_ratio(measured[label], measured[one])
        target = Target(
            what=f"W7 {label} / 1 process wall, same host limits",
            value=row.ratio,
            op="<=",
            limit=1.10,
        )
        row.target, row.passed = "<= 1.10", target.passed
        result.rows.append(row)
        result.targets.append(target)
    floor = len(files) / RATE
    result.notes.append(
        f"one machine: the SQLite store in dest, or a PostgreSQL server on 127.0.0.1 (a "
        f"fresh database per run); --workers {WORKERS} per process; files from "
        f"the emulator's own file host; the rate limit alone needs {floor:.1f} s for "
        f"{len(files)} requests; 'mirror/tool' on a {MEMBERS}-process row is its wall over "
        "1 process's (paired repetitions); wall runs from the first fork to the last exit, "
        "CPU is the sum over the processes"
    )
    result.notes.append(
        f"the most file requests the emulator saw arrive in any one second of any run: "
        f"{busiest}, in any 0.9 s: {busiest_0_9} (limit {RATE} a second; the processes count "
        "requests as they send them, the emulator as they arrive)"
    )
    result.info["busiest_second"] = busiest
    result.info["busiest_0_9_s"] = busiest_0_9
    return result
