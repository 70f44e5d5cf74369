"""The floor of a verifying single-file download, measured in the same run as the tools.

A client that checks a file's MD5 must hash every byte in order, and MD5 cannot be
split: one core does it all. So no verifying client finishes before the MD5 of the
file's bytes (held in memory, nothing else to do) nor before a plain ``curl -o`` of the
same file: ``floor = max(curl's wall, MD5's wall)``, per repetition. The verifying peer
is what a careful shell user runs, ``curl URL | tee FILE | md5sum``, with the sum
compared (md5sum in a process of its own, so on the other core).

Any single-file workload uses it: ``InMemory`` (the bytes, hashed after each
repetition through ``Suite.alternate(after_rep=…)``), ``verifying_curl`` (the peer
row's runner), then ``floor_rows`` and ``hold`` for the rows and targets.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from ._data import VerificationFailed
from ._measure import Measurement
from ._results import Row, Target, WorkloadResult, median_ratio
from ._suite import Runner, flat_location

__all__ = [
    "FLOOR",
    "MD5_IN_MEMORY",
    "VERIFYING_CURL",
    "InMemory",
    "floor_rows",
    "hold",
    "verifying_curl",
]

MD5_IN_MEMORY = "MD5 in memory (hashlib, 1 core)"
FLOOR = "floor = max(curl, MD5)"
VERIFYING_CURL = "curl | tee FILE | md5sum"
#: hashlib releases the GIL for each update; 4 MiB pieces of one buffer, no copies.
_PIECE = 4 << 20


class InMemory:
    """One file's bytes in this process's memory, and the MD5 they must hash to."""

    def __init__(self, data: bytes | bytearray, md5: str) -> None:
        self.data = data
        self.md5 = md5

    @classmethod
    def from_file(cls, path: Path, md5: str) -> InMemory:
        return cls(path.read_bytes(), md5)

    @classmethod
    def from_chunks(cls, chunks: Iterable[bytes | bytearray | memoryview], md5: str) -> InMemory:
        data = bytearray()
        for piece in chunks:
            data += piece
        return cls(data, md5)

    def measure(self) -> Measurement:
        """Hash the bytes once on this thread: wall and CPU seconds; the MD5 is checked."""
        view = memoryview(self.data)
        digest = hashlib.md5()
        wall, cpu = time.perf_counter(), time.thread_time()
        for start in range(0, len(view), _PIECE):
            digest.update(view[start : start + _PIECE])
        wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
        if digest.hexdigest() != self.md5:
            raise VerificationFailed(f"in memory: MD5 {digest.hexdigest()}, expected {self.md5}")
        return Measurement.in_process(
            MD5_IN_MEMORY, ["hashlib.md5", f"{len(view)} bytes in memory"], wall, cpu
        )


def verifying_curl(curl: str, url: str, name: str, md5: str, args: Sequence[str] = ()) -> Runner:
    """``curl URL | tee out/NAME | md5sum`` compared with ``md5``: a wrong sum fails the run.

    ``args`` go to curl (``--cacert CA``, ``-H @file``).
    """
    script = '"$0" -s -f "${@:4}" "$1" | tee "$2" | md5sum | grep -q "^$3 "'

    def command(out: Path) -> list[str]:
        return ["bash", "-o", "pipefail", "-c", script, curl, url, str(out / name), md5, *args]

    return Runner(VERIFYING_CURL, command, flat_location)


def floor_rows(
    ours: Sequence[Measurement],
    curl: Sequence[Measurement],
    md5: Sequence[Measurement],
    *,
    files: int,
    nbytes: int,
    download: str = "curl",
) -> tuple[Row, Row]:
    """The MD5 row and the floor row, each with ebi-mirror's paired ratio to it.

    The floor of repetition i is max(curl's wall, MD5's wall) of that repetition; its
    CPU is curl's plus MD5's, the least CPU a verifying client spends. ``download``
    names the tool in ``curl`` when another one fetches the file fastest (over a
    server that caps each connection, one that splits it: aria2c).
    """
    tool = FLOOR if download == "curl" else f"floor = max({download}, MD5)"
    floors = [
        Measurement.in_process(
            tool,
            [f"max({download} wall, MD5 wall)"],
            max(c.wall, m.wall),
            c.cpu + m.cpu,
            curl_wall=c.wall,
            md5_wall=m.wall,
        )
        for c, m in zip(curl, md5, strict=True)
    ]
    md5_row = Row(
        tool=MD5_IN_MEMORY,
        runs=list(md5),
        files=files,
        bytes=nbytes,
        ratio=median_ratio(ours, md5),
    )
    floor_row = Row(
        tool=tool, runs=floors, files=files, bytes=nbytes, ratio=median_ratio(ours, floors)
    )
    return md5_row, floor_row


def hold(result: WorkloadResult, row: Row, what: str, limit: float) -> Target:
    """Hold ebi-mirror's ratio to ``row`` to ``<= limit``: in the row and in Targets."""
    target = Target(what=what, value=row.ratio or 0.0, op="<=", limit=limit)
    row.target = f"<= {limit:.2f}"
    row.passed = target.passed
    result.targets.append(target)
    return target
