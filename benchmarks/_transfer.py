"""Workloads 1–3: bytes over loopback from nginx, ebi-mirror against aria2c, curl and wget."""

from __future__ import annotations

import hashlib
import statistics
import time
from pathlib import Path

from mirror.emulator import GeneratedStudy

from ._data import Dataset, prepare
from ._measure import Measurement, run_measured
from ._results import GIB, Row, Target, Unit, WorkloadResult, median_ratio
from ._servers import Emulator, Nginx
from ._suite import FileSet, Runner, Suite, flat_location, mirror_location, write_manifest

__all__ = ["md5_floor", "w1_big_file", "w2_many_small", "w3_medium"]

MIRROR = "ebi-mirror"
#: ebi-mirror's workers and its connection cap on the nginx host in W2/W3.
WORKERS = 16
_ARIA2 = ["-q", "--file-allocation=none", "--allow-overwrite=true", "--auto-file-renaming=false"]


def md5_floor(nbytes: int, reps: int) -> list[float]:
    """CPU seconds of ``hashlib.md5`` over ``nbytes`` in memory, 4 MiB at a time."""
    chunk = hashlib.shake_128(b"benchmarks").digest(4 << 20)
    out = []
    for _ in range(reps):
        digest = hashlib.md5()
        start = time.thread_time()
        for _ in range(nbytes // len(chunk)):
            digest.update(chunk)
        digest.update(chunk[: nbytes % len(chunk)])
        out.append(time.thread_time() - start)
    return out


def _mirror_runner(suite: Suite, manifest: Path) -> Runner:
    def command(out: Path) -> list[str]:
        return [*suite.mirror, "run", str(manifest), "--dest", str(out), "-q"]

    return Runner(MIRROR, command, mirror_location)


def _list_file(path: Path, urls: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{u}\n" for u in urls), encoding="utf-8")
    return path


def _curl_config(path: Path, urls: list[str], out: Path) -> Path:
    lines = []
    for u in urls:
        lines.append(f'url = "{u}"\noutput = "{out / u.rsplit("/", 1)[1]}"\n')
    path.write_text("".join(lines), encoding="utf-8")
    return path


def _warm(suite: Suite, key: str, manifest: Path) -> None:
    """One unmeasured plan: the emulator computes (and caches) the MD5s it reports."""
    run_measured(
        "warm-up",
        [*suite.mirror, "plan", str(manifest), "--dest", str(suite.fresh(key, "plan"))],
        log=suite.log(key, "warm-up"),
    )


def _rows(results: dict[str, list[Measurement]], dataset: FileSet, unit: Unit) -> list[Row]:
    ours = results[MIRROR]
    rows = []
    for tool, runs in results.items():
        ratio = None if tool == MIRROR else median_ratio(ours, runs)
        rows.append(
            Row(
                tool=tool,
                runs=runs,
                files=len(dataset.files),
                bytes=dataset.bytes,
                unit=unit,
                ratio=ratio,
            )
        )
    return rows


def _manifest(suite: Suite, key: str, dataset: Dataset, emu: Emulator, ng: Nginx) -> Path:
    return write_manifest(
        suite.work / "manifests" / f"{key}.yaml",
        dest=suite.work / "runs" / key / "default-dest",
        portal=emu.portal,
        files=ng.url,
        accessions=[dataset.study.study],
        workers=WORKERS,
        connections={ng.host: WORKERS},
    )


def w1_big_file(suite: Suite) -> WorkloadResult:
    size = (256 << 20) if suite.quick else (2 << 30)
    key = "W1"
    result = WorkloadResult(key=key, title=f"one {size / GIB:g} GiB file")
    study = GeneratedStudy(index=1, runs=1, files_per_run=1, file_size=size)
    ds = prepare("w1", study, suite.www, say=suite.say)
    (spec,) = ds.files
    floor = md5_floor(size, suite.reps)
    aria2c, curl = suite.tools["aria2c"], suite.tools["curl"]
    with (
        Nginx(suite.tools["nginx"], suite.www, suite.work / "nginx" / key) as ng,
        Emulator(ds.catalog.to_dict(), suite.work / "emulator" / key) as emu,
    ):
        (url,) = ds.urls(ng.url)
        manifest = _manifest(suite, key, ds, emu, ng)
        _warm(suite, key, manifest)
        x8 = ["-x8", "-s8", "-k1M", *_ARIA2]
        runners = [
            _mirror_runner(suite, manifest),
            Runner(
                "aria2c -x8 -s8",
                lambda out: [aria2c, *x8, "-d", str(out), "-o", spec.name, url],
                flat_location,
            ),
            Runner(
                "aria2c -x8 -s8 --checksum=md5",
                lambda out: [
                    aria2c,
                    *x8,
                    f"--checksum=md5={spec.md5}",
                    "-d",
                    str(out),
                    "-o",
                    spec.name,
                    url,
                ],
                flat_location,
            ),
            Runner(
                "curl",
                lambda out: [curl, "-s", "-f", "-o", str(out / spec.name), url],
                flat_location,
            ),
        ]
        results = suite.alternate(key, ds, runners)
    result.rows = _rows(results, ds, "MB/s")
    ours, fastest, curl_row = result.rows[0], result.rows[1], result.rows[3]
    fastest.target, curl_row.target = "<= 0.90", "<= 1.20"
    result.targets.append(
        Target(
            what="W1 wall ebi-mirror / aria2c -x8 -s8", value=fastest.ratio or 0, op="<=", limit=0.9
        )
    )
    result.targets.append(
        Target(what="W1 wall ebi-mirror / curl", value=curl_row.ratio or 0, op="<=", limit=1.2)
    )
    md5_per_gib = statistics.median(floor) / (size / GIB)
    curl_per_gib = curl_row.cpu_per_gib or 0.0
    floor_per_gib = curl_per_gib + md5_per_gib
    result.targets.append(
        Target(
            what="W1 CPU s/GiB ebi-mirror / (curl + hashlib.md5 in memory)",
            value=(ours.cpu_per_gib or 0) / floor_per_gib,
            op="<=",
            limit=1.15,
        )
    )
    result.notes.append(
        f"ebi-mirror: nginx host connections {WORKERS}; how many of them one file uses "
        "is ebi-mirror's own choice"
    )
    _ballast_note(suite, result)
    result.notes.append(
        f"CPU floor: curl {curl_per_gib:.3f} + hashlib.md5 in memory {md5_per_gib:.3f} "
        f"= {floor_per_gib:.3f} s/GiB; ebi-mirror {ours.cpu_per_gib or 0:.3f} s/GiB"
    )
    result.info.update(
        md5_in_memory_cpu_s=floor,
        md5_cpu_s_per_gib=md5_per_gib,
        cpu_floor_s_per_gib=floor_per_gib,
        file=spec.path,
        md5=spec.md5,
    )
    for row in result.rows:
        for t in result.targets[:2]:
            if t.what.endswith(row.tool):
                row.passed = t.passed
    return result


def _many(
    suite: Suite, key: str, dataset: Dataset, with_curl_wget: bool
) -> dict[str, list[Measurement]]:
    aria2c = suite.tools["aria2c"]
    with (
        Nginx(suite.tools["nginx"], suite.www, suite.work / "nginx" / key) as ng,
        Emulator(dataset.catalog.to_dict(), suite.work / "emulator" / key) as emu,
    ):
        urls = dataset.urls(ng.url)
        lists = suite.work / "lists"
        url_list = _list_file(lists / f"{key}.txt", urls)
        manifest = _manifest(suite, key, dataset, emu, ng)
        _warm(suite, key, manifest)
        runners = [
            _mirror_runner(suite, manifest),
            Runner(
                "aria2c -j16 -i list",
                lambda out: [aria2c, "-j16", *_ARIA2, "-i", str(url_list), "-d", str(out)],
                flat_location,
            ),
        ]
        if with_curl_wget:
            curl = suite.tools["curl"]

            def curl_command(out: Path) -> list[str]:
                config = _curl_config(lists / f"{key}-curl.cfg", urls, out)
                return [curl, "--parallel", "--parallel-max", "16", "-s", "-f", "-K", str(config)]

            runners.append(Runner("curl --parallel --parallel-max 16", curl_command, flat_location))
            wget = suite.tools.get("wget")
            if wget is not None:
                runners.append(
                    Runner(
                        "wget -i list",
                        lambda out: [wget, "-q", "-i", str(url_list), "-P", str(out)],
                        flat_location,
                    )
                )
            else:
                suite.say("  wget not installed: its W2 runs are skipped")
        return suite.alternate(key, dataset, runners)


def _ballast_note(suite: Suite, result: WorkloadResult) -> None:
    b = suite.ballast.get(result.key)
    if b is None:
        return
    result.info["ballast"] = b
    result.notes.append(
        f"ballast: writing {b['bytes'] / GIB:.2f} GiB of new page cache before the first run "
        f"took {b['wall_s']:.2f} s ({b['cpu_s']:.2f} s CPU) on this machine"
    )


def _fastest_peer(result: WorkloadResult, key: str) -> None:
    _ours, *peers = result.rows
    best = min(peers, key=lambda r: r.wall)
    best.target = "<= 1.00"
    target = Target(
        what=f"{key} wall ebi-mirror / fastest peer ({best.tool})",
        value=best.ratio or 0,
        op="<=",
        limit=1.0,
    )
    best.passed = target.passed
    result.targets.append(target)


def w2_many_small(suite: Suite) -> WorkloadResult:
    n = 200 if suite.quick else 2000
    key = "W2"
    result = WorkloadResult(key=key, title=f"{n:,} files × 256 KiB")
    study = GeneratedStudy(index=2, runs=n, files_per_run=1, file_size=256 << 10)
    ds = prepare("w2", study, suite.www, say=suite.say)
    results = _many(suite, key, ds, with_curl_wget=True)
    result.rows = _rows(results, ds, "files/s")
    _fastest_peer(result, key)
    result.notes.append(f"ebi-mirror --workers {WORKERS}, nginx host connections {WORKERS}")
    _ballast_note(suite, result)
    return result


def w3_medium(suite: Suite) -> WorkloadResult:
    n = 20 if suite.quick else 200
    key = "W3"
    result = WorkloadResult(key=key, title=f"{n:,} files × 8 MiB")
    study = GeneratedStudy(index=3, runs=n, files_per_run=1, file_size=8 << 20)
    ds = prepare("w3", study, suite.www, say=suite.say)
    results = _many(suite, key, ds, with_curl_wget=False)
    result.rows = _rows(results, ds, "MB/s")
    _fastest_peer(result, key)
    result.notes.append(f"ebi-mirror --workers {WORKERS}, nginx host connections {WORKERS}")
    _ballast_note(suite, result)
    return result
