"""Workload 8: a server that caps each connection (nginx ``limit_rate 40m``).

The archives' servers limit every stream; a client that splits a file over several
connections is then faster by about the number of connections. ebi-mirror starts each
file as one stream and splits the rest once the stream is measured slow; aria2c splits
from the first byte.
"""

from __future__ import annotations

from pathlib import Path

from mirror.emulator import GeneratedStudy

from ._data import Dataset, prepare
from ._floor import VERIFYING_CURL, InMemory, floor_rows, hold, verifying_curl
from ._measure import Measurement
from ._results import GIB, Row, Target, WorkloadResult
from ._servers import Emulator, Nginx
from ._suite import Runner, Suite, flat_location, write_manifest
from ._transfer import _ARIA2, MIRROR, _list_file, _mirror_runner, _rows, _warm

__all__ = ["w8_throttled"]

#: Each connection's cap, in nginx's syntax (40 MiB/s).
LIMIT_RATE = "40m"
#: ebi-mirror's workers for the set, as aria2c's -j16.
WORKERS = 16
#: aria2c's connections per file (-x8 -s8); the host's connections ebi-mirror gets are
#: the same budget: 8 for one file, 16 × 8 for the set.
PER_FILE = 8


def _run(
    suite: Suite,
    key: str,
    ds: Dataset,
    connections: int,
    peers: list[str],
    data: InMemory | None = None,
    md5_runs: list[Measurement] | None = None,
) -> dict[str, list[Measurement]]:
    """Every tool's runs; with ``data``, its MD5 in memory after each repetition
    (into ``md5_runs``) and the verifying curl among the peers."""
    aria2c, curl = suite.tools["aria2c"], suite.tools["curl"]
    wget = suite.tools.get("wget")
    x8 = [f"-x{PER_FILE}", f"-s{PER_FILE}", "-k1M", *_ARIA2]
    with (
        Nginx(
            suite.tools["nginx"], suite.www, suite.work / "nginx" / key, limit_rate=LIMIT_RATE
        ) as ng,
        Emulator(ds.catalog.to_dict(), suite.work / "emulator" / key) as emu,
    ):
        urls = ds.urls(ng.url)
        manifest = write_manifest(
            suite.work / "manifests" / f"{key}.yaml",
            dest=suite.work / "runs" / key / "default-dest",
            portal=emu.portal,
            files=ng.url,
            accessions=[ds.study.study],
            workers=WORKERS,
            connections={ng.host: connections},
        )
        _warm(suite, key, manifest)
        url_list = _list_file(suite.work / "lists" / f"{key}.txt", urls)
        runners = [_mirror_runner(suite, manifest)]
        if len(urls) == 1:
            (url,) = urls
            name = url.rsplit("/", 1)[1]
            runners.append(
                Runner(
                    "aria2c -x8 -s8",
                    lambda out: [aria2c, *x8, "-d", str(out), "-o", name, url],
                    flat_location,
                )
            )
        else:
            runners.append(
                Runner(
                    "aria2c -j16 -x8 -s8 -i list",
                    lambda out: [aria2c, "-j16", *x8, "-i", str(url_list), "-d", str(out)],
                    flat_location,
                )
            )
        if "curl" in peers:

            def curl_command(out: Path) -> list[str]:
                config = out.parent / f"{out.name}-curl.cfg"
                config.write_text(
                    "".join(f'url = "{u}"\noutput = "{out / u.rsplit("/", 1)[1]}"\n' for u in urls),
                    encoding="utf-8",
                )
                return [curl, "--parallel", "--parallel-max", "16", "-s", "-f", "-K", str(config)]

            runners.append(Runner("curl (--parallel 16)", curl_command, flat_location))
        if data is not None:
            (spec,) = ds.files
            runners.append(verifying_curl(curl, urls[0], spec.name, spec.md5))
        if "wget" in peers and wget is not None:
            runners.append(
                Runner(
                    "wget -i list",
                    lambda out: [wget, "-q", "-i", str(url_list), "-P", str(out)],
                    flat_location,
                )
            )
        if data is None or md5_runs is None:
            return suite.alternate(key, ds, runners)
        runs = md5_runs
        return suite.alternate(key, ds, runners, after_rep=lambda _rep: runs.append(data.measure()))


def _part(result: WorkloadResult, label: str, rows: list[Row]) -> None:
    """Add one part's rows, named for the part, and its target against aria2c."""
    ours, aria2 = rows[0], rows[1]
    for row in rows:
        row.tool = f"{label}: {row.tool}"
    aria2.target = "<= 1.00"
    target = Target(
        what=f"W8 wall {ours.tool} / {aria2.tool}", value=aria2.ratio or 0, op="<=", limit=1.0
    )
    aria2.passed = target.passed
    result.targets.append(target)
    result.rows += rows


def w8_throttled(suite: Suite) -> WorkloadResult:
    big = (256 << 20) if suite.quick else (1 << 30)
    n, each = (16, 16 << 20) if suite.quick else (16, 128 << 20)
    result = WorkloadResult(
        key="W8",
        title=(
            f"nginx limit_rate {LIMIT_RATE} a connection: one {big / GIB:g} GiB file, "
            f"{n} files × {each >> 20} MiB"
        ),
    )
    study = GeneratedStudy(index=8, runs=1, files_per_run=1, file_size=big)
    ds = prepare("w8-one", study, suite.www, say=suite.say)
    (spec,) = ds.files
    # The floor's bytes: read before any timing, hashed after each repetition.
    data = InMemory.from_file(suite.www / spec.path, spec.md5)
    md5_runs: list[Measurement] = []
    results = _run(suite, "W8-one", ds, PER_FILE, ["curl", "wget"], data, md5_runs)
    rows = _rows(results, ds, "MB/s")
    # Over capped connections the fastest plain download is aria2c's split one.
    md5_row, floor_row = floor_rows(
        results[MIRROR],
        results["aria2c -x8 -s8"],
        md5_runs,
        files=1,
        nbytes=ds.bytes,
        download="aria2c -x8 -s8",
    )
    _part(result, "one", [*rows, md5_row, floor_row])
    hold(result, floor_row, f"W8 wall {rows[0].tool} / floor", 1.10)

    study = GeneratedStudy(index=9, runs=n, files_per_run=1, file_size=each)
    ds = prepare("w8-set", study, suite.www, say=suite.say)
    results = _run(suite, "W8-set", ds, WORKERS * PER_FILE, ["curl"])
    _part(result, "set", _rows(results, ds, "MB/s"))

    result.notes.append(
        f"ebi-mirror: one file with host connections {PER_FILE} (aria2c's -x{PER_FILE}); the "
        f"set with --workers {WORKERS} and host connections {WORKERS * PER_FILE} (aria2c's "
        f"-j{WORKERS} × -x{PER_FILE}), at most {PER_FILE} a file. Each file starts as one "
        "stream; the rest is split once the stream is measured below "
        "TransferTuning.split_below. wget fetches one file at a time, so it is left out of "
        "the set."
    )
    result.notes.append(
        "one: floor = max(aria2c -x8 -s8's wall, hashlib.md5's wall over the same bytes in "
        "memory on one core), per repetition: over capped connections the fastest plain "
        f"download splits the file; {VERIFYING_CURL} is one capped stream, for reference"
    )
    return result
