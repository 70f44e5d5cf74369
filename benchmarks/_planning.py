"""Workloads 4 and 5: planning from the Portal API, re-runs, and memory on huge plans."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from mirror.emulator import GeneratedStudy, md5_of

from ._data import FileSpec, verify
from ._measure import Measurement, run_measured
from ._results import MB, Row, Target, WorkloadResult
from ._servers import Emulator, Nginx
from ._suite import Suite, write_manifest
from ._transfer import WORKERS

__all__ = ["w4_planning", "w5_memory"]

_SETTLE = 0.2


def _settled(count: Callable[[], int]) -> int:
    """A request count once it stops moving (servers log a request as it ends)."""
    last = count()
    while True:
        time.sleep(_SETTLE)
        now = count()
        if now == last:
            return now
        last = now


def w4_planning(suite: Suite) -> WorkloadResult:
    from ._data import prepare

    n = 1_000 if suite.quick else 10_000
    key = "W4"
    result = WorkloadResult(key=key, title=f"ENA study of {n:,} runs: plan, run, re-run")
    study = GeneratedStudy(index=4, runs=n, files_per_run=1, file_size=1024)
    ds = prepare("w4", study, suite.www, say=suite.say)
    runs = [f.run for f in ds.files]
    steps: dict[str, list[Measurement]] = {
        "plan: the study": [],
        f"plan: {n:,} run accessions": [],
        f"run: {n:,} files × 1 KiB": [],
        "re-run, all verified: the study": [],
        f"re-run, all verified: {n:,} run accessions": [],
    }
    labels = list(steps)
    with (
        Nginx(suite.tools["nginx"], suite.www, suite.work / "nginx" / key, access_log=True) as ng,
        Emulator(ds.catalog.to_dict(), suite.work / "emulator" / key) as emu,
    ):
        dest = suite.work / "runs" / key / "dest"

        def manifest_for(name: str, accessions: list[str]) -> Path:
            return write_manifest(
                suite.work / "manifests" / f"W4-{name}.yaml",
                dest=dest,
                portal=emu.portal,
                files=ng.url,
                accessions=accessions,
                workers=WORKERS,
                connections={ng.host: WORKERS},
            )

        by_study = manifest_for("study", [study.study])
        by_runs = manifest_for("runs", runs)

        def measured(label: str, rep: int, argv: list[str]) -> Measurement:
            portal0, files0 = _settled(emu.requests), _settled(ng.requests)
            os.sync()
            m = run_measured(label, argv, log=suite.log(key, f"{len(steps[label])}-{rep}"))
            m.extra["portal_requests"] = _settled(emu.requests) - portal0
            m.extra["file_requests"] = _settled(ng.requests) - files0
            steps[label].append(m)
            suite.say(
                f"  {key} rep {rep + 1}/{suite.reps} {label:<40} {m.wall:6.2f} s  "
                f"portal {m.extra['portal_requests']:>3}  files {m.extra['file_requests']:>6}  "
                f"rss {m.rss_mib:6.1f} MiB"
            )
            return m

        scratch = suite.fresh(key, "plan")
        mirror = suite.mirror
        run_measured(
            "warm-up",
            [*mirror, "plan", str(by_study), "--dest", str(scratch)],
            log=suite.log(key, "warm-up"),
        )
        for rep in range(suite.reps):
            for label, manifest in ((labels[0], by_study), (labels[1], by_runs)):
                scratch = suite.fresh(key, "plan")
                measured(label, rep, [*mirror, "plan", str(manifest), "--dest", str(scratch)])
            dest = suite.fresh(key, "dest")
            measured(labels[2], rep, [*mirror, "run", str(by_study), "--dest", str(dest), "-q"])
            checked = verify(
                "ebi-mirror",
                ((dest / "ena" / f.run / f.name, f.size, f.md5) for f in ds.files),
            )
            steps[labels[2]][-1].extra.update(files=checked.files, verified=True)
            measured(labels[3], rep, [*mirror, "run", str(by_study), "--dest", str(dest), "-q"])
            measured(labels[4], rep, [*mirror, "run", str(by_runs), "--dest", str(dest), "-q"])
            suite.discard(dest, last=rep == suite.reps - 1)

    for label in labels:
        row = Row(tool=label, runs=steps[label], files=n, bytes=0, unit="files/s")
        portal = max(m.extra["portal_requests"] for m in row.runs)
        files = max(m.extra["file_requests"] for m in row.runs)
        row.note = f"Portal requests {portal}, file requests {files}"
        result.rows.append(row)
    plan_study, plan_runs, _, rerun_study, rerun_runs = result.rows
    targets = [
        Target(
            what=f"W4 Portal requests to plan {n:,} run accessions",
            value=max(m.extra["portal_requests"] for m in plan_runs.runs),
            op="<=",
            limit=15,
        ),
        Target(
            what="W4 Portal requests to plan the study",
            value=max(m.extra["portal_requests"] for m in plan_study.runs),
            op="<=",
            limit=15,
        ),
        Target(what="W4 plan wall, the study", value=plan_study.wall, op="<", limit=10, unit="s"),
        Target(
            what=f"W4 plan wall, {n:,} run accessions",
            value=plan_runs.wall,
            op="<",
            limit=10,
            unit="s",
        ),
        Target(
            what="W4 verified re-run wall (study)",
            value=rerun_study.wall,
            op="<",
            limit=3,
            unit="s",
        ),
        Target(
            what=f"W4 verified re-run wall ({n:,} run accessions)",
            value=rerun_runs.wall,
            op="<",
            limit=3,
            unit="s",
        ),
        Target(
            what="W4 file requests in verified re-runs",
            value=max(m.extra["file_requests"] for m in rerun_study.runs + rerun_runs.runs),
            op="==",
            limit=0,
        ),
    ]
    result.targets += targets
    plan_study.target, plan_study.passed = "< 10 s", targets[2].passed and targets[1].passed
    plan_runs.target, plan_runs.passed = (
        "< 10 s, <= 15 req",
        targets[3].passed and targets[0].passed,
    )
    rerun_study.target, rerun_study.passed = (
        "< 3 s, 0 files",
        targets[4].passed and targets[6].passed,
    )
    rerun_runs.target, rerun_runs.passed = "< 3 s, 0 files", targets[5].passed and targets[6].passed
    result.notes.append(
        f"ebi-mirror --workers {WORKERS}; file requests counted in nginx's access log "
        "(on for W4 only), Portal requests in the emulator's request log"
    )
    return result


def _downloaded(study: GeneratedStudy, dest: Path) -> Iterator[tuple[Path, int, str]]:
    """Every file at its final path under ``dest/ena`` with the size and MD5 it must have."""
    root = dest / "ena"
    if not root.is_dir():
        return
    for run_dir in root.iterdir():
        expected: dict[str, FileSpec] = {}
        for run in study.runs_for(run_dir.name, "run"):
            for item in run.fastq:
                spec = FileSpec(item.path, run.accession, item.size, "")
                expected[spec.name] = spec
        for path in run_dir.iterdir():
            if path.name.endswith(".part") or path.name.startswith("."):
                continue
            spec_or_none = expected.get(path.name)
            if spec_or_none is None:
                yield path, -1, "not in the catalog"
                continue
            yield path, spec_or_none.size, md5_of(spec_or_none.path, spec_or_none.size)


def w5_memory(suite: Suite) -> WorkloadResult:
    sizes = (10_000, 100_000) if suite.quick else (100_000, 1_000_000)
    limit = 5.0 if suite.quick else 20.0
    key = "W5"
    result = WorkloadResult(
        key=key, title=f"plans of {sizes[0]:,} and {sizes[1]:,} tasks: peak RSS"
    )
    plans: list[Row] = []
    runs: list[Row] = []
    for index, tasks in zip((5, 6), sizes, strict=True):
        study = GeneratedStudy(index=index, runs=tasks // 2, files_per_run=2, file_size=16)
        with Emulator(
            {"generated_studies": [study.to_dict()]}, suite.work / "emulator" / f"{key}-{tasks}"
        ) as emu:
            dest = suite.fresh(key, f"dest-{tasks}")
            manifest = write_manifest(
                suite.work / "manifests" / f"{key}-{tasks}.yaml",
                dest=dest,
                portal=emu.portal,
                files=emu.files,
                accessions=[study.study],
                workers=WORKERS,
                connections={},
            )
            label = f"plan: {tasks:,} tasks"
            os.sync()
            plan = run_measured(
                label, [*suite.mirror, "plan", str(manifest)], log=suite.log(key, f"plan-{tasks}")
            )
            suite.say(f"  {key} {label:<34} {plan.wall:7.2f} s  rss {plan.rss_mib:6.1f} MiB")
            plans.append(Row(tool=label, runs=[plan], files=tasks, bytes=0, unit="files/s"))
            shutil.rmtree(dest, ignore_errors=True)
            dest.mkdir(parents=True)
            label = f"run {limit:g} s: {tasks:,} tasks"
            os.sync()
            run = run_measured(
                label,
                [*suite.mirror, "run", str(manifest), "-q"],
                log=suite.log(key, f"run-{tasks}"),
                interrupt_after=limit,
            )
            checked = verify("ebi-mirror", _downloaded(study, dest))
            run.extra.update(files=checked.files, verified=True)
            suite.say(
                f"  {key} {label:<34} {run.wall:7.2f} s  rss {run.rss_mib:6.1f} MiB  "
                f"({checked.files:,} files done and ok)"
            )
            row = Row(tool=label, runs=[run], files=checked.files, bytes=0, unit="files/s")
            row.note = f"stopped (SIGINT) after {limit:g} s; {checked.files:,} files verified"
            runs.append(row)
            suite.discard(dest, last=True)
    result.rows = [*plans, *runs]
    small, big = plans
    small_run, big_run = runs
    for row in (big, big_run):
        row.target = "< 250 MB"
    growth = [
        Target(
            what=f"W5 plan peak RSS growth {sizes[0]:,} → {sizes[1]:,} tasks",
            value=big.rss_mb - small.rss_mb,
            op="<=",
            limit=max(20.0, 0.1 * small.rss_mb),
            unit="MB",
        ),
        Target(
            what=f"W5 run peak RSS growth {sizes[0]:,} → {sizes[1]:,} tasks",
            value=big_run.rss_mb - small_run.rss_mb,
            op="<=",
            limit=max(20.0, 0.1 * small_run.rss_mb),
            unit="MB",
        ),
    ]
    peaks = [
        Target(
            what=f"W5 plan peak RSS, {sizes[1]:,} tasks",
            value=big.rss_mb,
            op="<",
            limit=250,
            unit="MB",
        ),
        Target(
            what=f"W5 run peak RSS, {sizes[1]:,} tasks",
            value=big_run.rss_mb,
            op="<",
            limit=250,
            unit="MB",
        ),
    ]
    result.targets += peaks + growth
    big.passed = peaks[0].passed and growth[0].passed
    big_run.passed = peaks[1].passed and growth[1].passed
    result.notes.append(
        f"files of 16 bytes, two per run, served by the emulator's file host (not on disk); "
        f"'mirror run' is stopped with SIGINT after {limit:g} s (downloading {sizes[1]:,} "
        "files would take too long), so its RSS covers planning and downloading the first "
        "files of the plan; growth allowed: max(20 MB, 10 %)"
    )
    result.info["rss_unit"] = f"MB = {MB} bytes"
    return result
