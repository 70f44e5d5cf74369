"""Workloads 1–3: bytes over loopback from nginx, ebi-mirror against aria2c, curl and wget."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mirror.emulator import GeneratedStudy

from ._data import Dataset, prepare
from ._floor import VERIFYING_CURL, InMemory, floor_rows, hold, verifying_curl
from ._measure import Measurement, run_measured
from ._results import GIB, Row, Target, Unit, WorkloadResult, median_ratio
from ._servers import Emulator, Nginx
from ._suite import FileSet, Runner, Suite, flat_location, mirror_location, write_manifest
from ._tls import TlsFiles, make_ca

__all__ = ["Transport", "transports", "w1_big_file", "w2_many_small", "w3_medium"]

MIRROR = "ebi-mirror"
CURL = "curl"
ARIA2_J16 = "aria2c -j16 -i list"
WGET = "wget -i list"
#: ebi-mirror's workers and its connection cap on the nginx host in W2/W3.
WORKERS = 16
_ARIA2 = ["-q", "--file-allocation=none", "--allow-overwrite=true", "--auto-file-renaming=false"]


def _mirror_runner(suite: Suite, manifest: Path, env: dict[str, str] | None = None) -> Runner:
    def command(out: Path) -> list[str]:
        return [*suite.mirror, "run", str(manifest), "--dest", str(out), "-q"]

    return Runner(MIRROR, command, mirror_location, env=env)


@dataclass(frozen=True)
class Transport:
    """HTTP, or HTTPS from an nginx whose certificate every tool is told to trust."""

    name: str
    tls: TlsFiles | None = None

    def nginx(self, suite: Suite, key: str) -> Nginx:
        prefix = suite.work / "nginx" / (key if self.tls is None else f"{key}-https")
        return Nginx(suite.tools["nginx"], suite.www, prefix, tls=self.tls)

    def key(self, key: str) -> str:
        return key if self.tls is None else f"{key}-https"

    @property
    def mirror_env(self) -> dict[str, str] | None:
        return None if self.tls is None else {"SSL_CERT_FILE": str(self.tls.ca)}

    @property
    def curl(self) -> list[str]:
        return [] if self.tls is None else ["--cacert", str(self.tls.ca)]

    @property
    def aria2c(self) -> list[str]:
        return [] if self.tls is None else [f"--ca-certificate={self.tls.ca}"]

    @property
    def wget(self) -> list[str]:
        return [] if self.tls is None else [f"--ca-certificate={self.tls.ca}"]


def transports(suite: Suite) -> list[Transport]:
    """HTTP, then HTTPS with a CA made for this run under ``WORK/tls``."""
    tls = make_ca(suite.work / "tls", suite.tools.get("openssl", "openssl"))
    return [Transport("http"), Transport("https", tls)]


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
    result = WorkloadResult(key=key, title=f"one {size / GIB:g} GiB file, HTTP and HTTPS")
    study = GeneratedStudy(index=1, runs=1, files_per_run=1, file_size=size)
    ds = prepare("w1", study, suite.www, say=suite.say)
    (spec,) = ds.files
    # The floor's bytes: read before any timing, hashed after each repetition.
    in_memory = InMemory.from_file(suite.www / spec.path, spec.md5)
    for transport in transports(suite):
        _w1_over(suite, result, ds, transport, in_memory)
    result.notes.append(
        f"ebi-mirror: nginx host connections {WORKERS}; how many of them one file uses "
        "is ebi-mirror's own choice"
    )
    result.notes.append(
        "floor = max(curl's wall, hashlib.md5's wall over the same bytes in this process's "
        "memory on one core), per repetition: no client that checks the MD5 beats either; "
        f"its CPU s/GiB is curl's + MD5's. {VERIFYING_CURL}: the verifying peer (sum compared)"
    )
    _ballast_note(suite, result)
    result.info.update(file=spec.path, md5=spec.md5)
    return result


def _w1_over(
    suite: Suite, result: WorkloadResult, ds: Dataset, transport: Transport, data: InMemory
) -> None:
    """W1's runs over one transport: rows and targets, labelled with the transport."""
    (spec,) = ds.files
    key = transport.key(result.key)
    aria2c, curl = suite.tools["aria2c"], suite.tools["curl"]
    md5_runs: list[Measurement] = []
    with (
        transport.nginx(suite, result.key) as ng,
        Emulator(ds.catalog.to_dict(), suite.work / "emulator" / key) as emu,
    ):
        (url,) = ds.urls(ng.url)
        manifest = _manifest(suite, key, ds, emu, ng)
        _warm(suite, key, manifest)
        x8 = ["-x8", "-s8", "-k1M", *_ARIA2, *transport.aria2c]
        runners = [
            _mirror_runner(suite, manifest, transport.mirror_env),
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
                CURL,
                lambda out: [curl, "-s", "-f", *transport.curl, "-o", str(out / spec.name), url],
                flat_location,
            ),
            verifying_curl(curl, url, spec.name, spec.md5, transport.curl),
        ]
        results = suite.alternate(
            key, ds, runners, after_rep=lambda _rep: md5_runs.append(data.measure())
        )
    rows = _rows(results, ds, "MB/s")
    md5_row, floor_row = floor_rows(
        results[MIRROR], results[CURL], md5_runs, files=len(ds.files), nbytes=ds.bytes
    )
    rows += [md5_row, floor_row]
    for row in rows:
        row.transport = transport.name
    ours = rows[0]
    (verifying,) = [r for r in rows if r.tool == VERIFYING_CURL]
    label = f"W1 {transport.name}"
    hold(result, floor_row, f"{label} wall ebi-mirror / floor", 1.10)
    hold(result, verifying, f"{label} wall ebi-mirror / {VERIFYING_CURL}", 1.0)
    cpu_floor = floor_row.cpu_per_gib or 0.0
    result.targets.append(
        Target(
            what=f"{label} CPU s/GiB ebi-mirror / (curl + MD5)",
            value=(ours.cpu_per_gib or 0.0) / cpu_floor if cpu_floor else float("inf"),
            op="<=",
            limit=1.15,
        )
    )
    result.targets.append(
        Target(what=f"{label} peak RSS ebi-mirror", value=ours.rss_mb, op="<=", limit=80, unit="MB")
    )
    result.rows += rows
    result.info[f"{transport.name}_md5_in_memory"] = [m.to_dict() for m in md5_runs]


def _many(
    suite: Suite,
    key: str,
    dataset: Dataset,
    with_curl_wget: bool,
    transport: Transport | None = None,
) -> dict[str, list[Measurement]]:
    aria2c = suite.tools["aria2c"]
    transport = transport or Transport("http")
    with (
        transport.nginx(suite, key) as ng,
        Emulator(dataset.catalog.to_dict(), suite.work / "emulator" / transport.key(key)) as emu,
    ):
        key = transport.key(key)
        urls = dataset.urls(ng.url)
        lists = suite.work / "lists"
        url_list = _list_file(lists / f"{key}.txt", urls)
        manifest = _manifest(suite, key, dataset, emu, ng)
        _warm(suite, key, manifest)
        runners = [
            _mirror_runner(suite, manifest, transport.mirror_env),
            Runner(
                ARIA2_J16,
                lambda out: [
                    aria2c,
                    "-j16",
                    *_ARIA2,
                    *transport.aria2c,
                    "-i",
                    str(url_list),
                    "-d",
                    str(out),
                ],
                flat_location,
            ),
        ]
        if with_curl_wget:
            curl = suite.tools["curl"]

            def curl_command(out: Path) -> list[str]:
                config = _curl_config(lists / f"{key}-curl.cfg", urls, out)
                return [
                    curl,
                    "--parallel",
                    "--parallel-max",
                    "16",
                    "-s",
                    "-f",
                    *transport.curl,
                    "-K",
                    str(config),
                ]

            runners.append(Runner("curl --parallel --parallel-max 16", curl_command, flat_location))
            wget = suite.tools.get("wget")
            if wget is not None:
                runners.append(
                    Runner(
                        WGET,
                        lambda out: [
                            wget,
                            "-q",
                            *transport.wget,
                            "-i",
                            str(url_list),
                            "-P",
                            str(out),
                        ],
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
    result = WorkloadResult(key=key, title=f"{n:,} files × 256 KiB, HTTP and HTTPS")
    study = GeneratedStudy(index=2, runs=n, files_per_run=1, file_size=256 << 10)
    ds = prepare("w2", study, suite.www, say=suite.say)
    for transport in transports(suite):
        results = _many(suite, key, ds, with_curl_wget=True, transport=transport)
        rows = _rows(results, ds, "files/s")
        for row in rows:
            row.transport = transport.name
            if row.tool == ARIA2_J16:
                hold(result, row, f"W2 {transport.name} wall ebi-mirror / {row.tool}", 1.0)
            elif row.tool == WGET:
                hold(result, row, f"W2 {transport.name} wall ebi-mirror / {row.tool}", 2.0)
        result.rows += rows
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
