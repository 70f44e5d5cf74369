"""Workload 6: one large file over EGA's Data API, ebi-mirror's Range slices against curl.

Both download the same plain bytes from the same emulator (``python -m mirror.emulator``,
one aiohttp process) on loopback: ebi-mirror logs in with the password grant, lists the
dataset, fetches the file in parallel 64 MiB Range slices and checks its MD5 against
``plainChecksum``; curl is handed a bearer token fetched before the timing and reads
the file in one stream. The emulator's request log shows the slices; a thread of this
process notes when each log line appears (the emulator writes a line when its request
ends), so the log also shows how many slices were in flight at once.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from mirror.emulator import Catalog, EgaDataset, EgaFile, iter_range, md5_of
from mirror.sources.ega_data import CLIENT_ID, CLIENT_SECRET

from ._data import FileSpec, VerificationFailed
from ._floor import InMemory, floor_rows, hold, verifying_curl
from ._measure import Measurement
from ._results import GIB, WorkloadResult
from ._servers import Emulator
from ._suite import Runner, Suite, flat_location
from ._transfer import MIRROR, _ballast_note, _rows

__all__ = ["w6_ega_data_api"]

KEY = "W6"
DATASET = "EGAD00010000805"
FILE_ID = "EGAF00000900002"
FILE_NAME = "/wgs/sample.cram"
#: The emulator's account (its default too); ebi-mirror gets it in EGA_USERNAME/PASSWORD.
USER, PASSWORD = "testuser@ebi.ac.uk", "testpassword"
CURL = "curl (single stream)"
#: How often the log watcher looks for new lines, and the slack allowed for its lateness
#: (on a busy machine this thread may wake late) when it counts requests in flight.
_POLL = 0.01
_SLACK = 0.05
#: Only loopback: never through a proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class EgaFiles:
    """The one file of W6 as a :class:`~benchmarks._suite.FileSet`.

    ``path`` is where ebi-mirror puts it: ``ega/<dataset>/<file id>/<base name>``.
    """

    files: tuple[FileSpec, ...]

    @property
    def bytes(self) -> int:
        return sum(f.size for f in self.files)


def _mirror_location(out: Path, f: FileSpec) -> Path:
    return out / f.path


def _request(url: str, *, data: bytes | None = None, token: str | None = None) -> Any:
    req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    # The first listing makes the emulator hash the whole file for plainChecksum.
    with _OPENER.open(req, timeout=600) as resp:
        return json.load(resp)


def _token(auth_url: str) -> str:
    form = urllib.parse.urlencode(
        {
            "grant_type": "password",
            "client_id": CLIENT_ID,
            "scope": "openid",
            "client_secret": CLIENT_SECRET,
            "username": USER,
            "password": PASSWORD,
        }
    ).encode()
    return str(_request(auth_url, data=form)["access_token"])


def _proc_cpu(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (all its threads) so far."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class LogWatch:
    """Follows the emulator's JSON-lines log: each entry with the time its line appeared.

    The emulator writes (and flushes) a line when its request ends, so that time is the
    request's end, late by at most ``_POLL`` plus this thread's scheduling delay.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.seen: list[tuple[dict[str, Any], float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="log-watch", daemon=True)

    def _run(self) -> None:
        handle = None
        pending = b""
        try:
            while True:
                stopping = self._stop.is_set()
                if handle is None:
                    with contextlib.suppress(FileNotFoundError):
                        handle = self.path.open("rb")
                if handle is not None:
                    pending += handle.read()
                    now = time.time()
                    *lines, pending = pending.split(b"\n")
                    self.seen.extend((json.loads(line), now) for line in lines if line.strip())
                if stopping:
                    return
                self._stop.wait(_POLL)
        finally:
            if handle is not None:
                handle.close()

    def __enter__(self) -> LogWatch:
        self._thread.start()
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()


def _slices(watch: LogWatch, window: list[float]) -> dict[str, Any]:
    """The file's requests that arrived within ``window``: count, ranges, most in flight."""
    start, end = window
    hits = [
        (entry, seen)
        for entry, seen in watch.seen
        if entry.get("method") == "GET"
        and f"/files/{FILE_ID}" in str(entry.get("path"))
        and start <= float(entry["t"]) <= end
    ]
    ranged = [(float(e["t"]), seen) for e, seen in hits if e.get("range")]
    # In flight when request j arrived: those that arrived no later and whose log line
    # appeared (less the watcher's slack) after it; j itself counts once.
    in_flight = max(
        (
            1 + sum(1 for k, (ti, si) in enumerate(ranged) if k != j and ti <= tj < si - _SLACK)
            for j, (tj, _) in enumerate(ranged)
        ),
        default=0,
    )
    statuses: dict[str, int] = {}
    for e, _ in hits:
        statuses[str(e.get("status"))] = statuses.get(str(e.get("status")), 0) + 1
    return {
        "file_requests": len(hits),
        "range_requests": len(ranged),
        "distinct_ranges": len({e["range"] for e, _ in hits if e.get("range")}),
        "max_in_flight": in_flight,
        "statuses": statuses,
        "bytes_served": sum(int(e.get("bytes") or 0) for e, _ in hits),
    }


def w6_ega_data_api(suite: Suite) -> WorkloadResult:
    size = (512 << 20) if suite.quick else (2 << 30)
    result = WorkloadResult(key=KEY, title=f"EGA Data API, one {size / GIB:g} GiB file")
    ega_file = EgaFile(file_id=FILE_ID, file_name=FILE_NAME, size=size, dataset=DATASET)
    catalog = Catalog(ega_datasets=(EgaDataset(dataset_id=DATASET, files=(ega_file,)),))
    base = FILE_NAME.rsplit("/", 1)[1]
    expected = md5_of(ega_file.content_key, size)  # the plain bytes the Data API serves
    spec = FileSpec(f"ega/{DATASET}/{FILE_ID}/{base}", FILE_ID, size, expected)
    files = EgaFiles((spec,))
    curl = suite.tools["curl"]
    # The floor's bytes, the ones the Data API serves: made before any timing.
    in_memory = InMemory.from_chunks(iter_range(ega_file.content_key, size), expected)
    work = suite.work / "emulator" / KEY
    with Emulator(catalog.to_dict(), work, args=["--ega-user", f"{USER}:{PASSWORD}"]) as emu:
        auth, data = emu.endpoints["ega_auth"], emu.endpoints["ega_data"].rstrip("/")
        # Outside the timing: curl's token, and the listing (the emulator computes and
        # caches plainChecksum here, so no measured run pays for it).
        token = _token(auth)
        listing = _request(f"{data}/metadata/datasets/{DATASET}/files", token=token)
        (doc,) = [d for d in listing if d.get("fileId") == FILE_ID]
        if doc.get("plainChecksum") != expected:
            raise VerificationFailed(
                f"{FILE_ID}: plainChecksum {doc.get('plainChecksum')}, content MD5 {expected}"
            )
        headers = suite.work / "manifests" / f"{KEY}-curl-headers.txt"
        headers.parent.mkdir(parents=True, exist_ok=True)
        headers.write_text(f"Authorization: Bearer {token}\n", encoding="utf-8")
        headers.chmod(0o600)
        manifest = suite.work / "manifests" / f"{KEY}.yaml"
        manifest.write_text(
            json.dumps(
                {
                    "version": 1,
                    "dest": str(suite.work / "runs" / KEY / "default-dest"),
                    "endpoints": emu.endpoints,
                    "sources": [{"ega": {"datasets": [DATASET], "protocol": "data-api"}}],
                },
                indent=1,
            ),
            encoding="utf-8",
        )
        url = f"{data}/files/{FILE_ID}?destinationFormat=plain"
        runners = [
            Runner(
                MIRROR,
                lambda out: [*suite.mirror, "run", str(manifest), "--dest", str(out), "-q"],
                _mirror_location,
                env={"EGA_USERNAME": USER, "EGA_PASSWORD": PASSWORD},
            ),
            Runner(
                CURL,
                # The token from a file (-H @file), so it is not in the saved argv.
                lambda out: [curl, "-s", "-f", "-o", str(out / base), "-H", f"@{headers}", url],
                flat_location,
            ),
            # The token from a file here too; the sum compared with plainChecksum's.
            verifying_curl(curl, url, base, expected, ["-H", f"@{headers}"]),
        ]

        @contextlib.contextmanager
        def observe() -> Iterator[dict[str, Any]]:
            observed: dict[str, Any] = {}
            cpu, started = _proc_cpu(emu.pid), time.time()
            try:
                yield observed
            finally:
                observed.update(
                    window=[started, time.time()], emulator_cpu_s=_proc_cpu(emu.pid) - cpu
                )

        md5_runs: list[Measurement] = []
        with LogWatch(emu.log) as watch:
            results = suite.alternate(
                KEY,
                files,
                runners,
                around=observe,
                after_rep=lambda _rep: md5_runs.append(in_memory.measure()),
            )
            time.sleep(3 * _POLL)  # the last lines
    for runs in results.values():
        for m in runs:
            m.extra["emulator"] = _slices(watch, m.extra["window"])
    result.rows = _rows(results, files, "MB/s")
    md5_row, floor_row = floor_rows(
        results[MIRROR], results[CURL], md5_runs, files=1, nbytes=files.bytes
    )
    result.rows += [md5_row, floor_row]
    hold(result, floor_row, f"{KEY} wall ebi-mirror / floor", 1.10)
    _notes(result, results, size)
    _floor_note(result, results[CURL], md5_row.wall, size)
    _ballast_note(suite, result)
    result.info.update(
        dataset=DATASET, file=FILE_ID, size=size, md5=expected, plain_checksum=doc["plainChecksum"]
    )
    return result


def _notes(result: WorkloadResult, results: dict[str, list[Measurement]], size: int) -> None:
    ours = [m.extra["emulator"] for m in results[MIRROR]]
    slices = sorted({s["range_requests"] for s in ours})
    distinct = sorted({s["distinct_ranges"] for s in ours})
    flight = sorted({s["max_in_flight"] for s in ours})
    statuses = sorted({k for s in ours for k in s["statuses"]})
    theirs = [m.extra["emulator"] for m in results[CURL]]
    curl_gets = sorted({s["file_requests"] for s in theirs})
    curl_ranged = sorted({s["range_requests"] for s in theirs})
    result.notes.append(
        f"ebi-mirror: {'/'.join(map(str, slices))} Range requests for the file per run "
        f"({'/'.join(map(str, distinct))} distinct ranges, 64 MiB slices of "
        f"{size / GIB:g} GiB; status {', '.join(statuses)}), at most "
        f"{'/'.join(map(str, flight))} in flight at once (emulator log; files >= 512 MiB "
        "go in slices over up to 4 connections); curl: "
        f"{'/'.join(str(n) for n in curl_gets)} GET(s) of the file per run, "
        f"{'/'.join(str(n) for n in curl_ranged)} with Range"
    )
    parts = []
    for tool, runs in results.items():
        cpu = statistics.median(m.extra["emulator_cpu_s"] for m in runs)
        busy = statistics.median(m.extra["emulator_cpu_s"] / m.wall for m in runs)
        parts.append(f"{tool} {cpu:.2f} s ({busy:.0%} of its wall)")
    result.notes.append(
        "emulator (one Python process serving both) CPU per run, median: " + "; ".join(parts)
    )


def _floor_note(
    result: WorkloadResult, curl_runs: list[Measurement], md5: float, size: int
) -> None:
    """What any client that checks ``plainChecksum`` needs here, against curl's wall.

    It must do at least curl's work (receive, write) plus the MD5, while the emulator
    serving it takes its share of the same two cores; and MD5 cannot be split, so one
    core hashes every byte in order. Per curl run: max(MD5, (curl's CPU + MD5 + the
    emulator's CPU) / cores) / curl's wall.
    """
    cores = os.cpu_count() or 1
    ratios = [
        max(md5, (m.cpu + md5 + m.extra["emulator_cpu_s"]) / cores) / m.wall
        for m in curl_runs
        if m.wall > 0
    ]
    floor = statistics.median(ratios)
    result.notes.append(
        f"floor for a verifying client: MD5 of the {size / GIB:g} GiB in memory on one core "
        f"(hashlib) takes {md5:.2f} s; with curl's CPU and the emulator's on {cores} cores, "
        f"no client that checks plainChecksum can be faster than {floor:.2f} x curl's wall "
        f"(median of {', '.join(f'{r:.2f}' for r in ratios)})"
    )
    result.info.update(md5_in_memory_cpu_s=md5, verifying_floor_over_curl=floor)
