"""The benchmark suite's floor: the in-memory MD5, the verifying curl, and the table rows."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from benchmarks._data import VerificationFailed
from benchmarks._floor import (
    FLOOR,
    MD5_IN_MEMORY,
    VERIFYING_CURL,
    InMemory,
    floor_rows,
    hold,
    verifying_curl,
)
from benchmarks._measure import CommandFailed, Measurement, run_measured
from benchmarks._report import format_table
from benchmarks._results import Row, WorkloadResult

DATA = bytes(range(256)) * 40_000  # ~10 MB: more than two 4 MiB pieces


def _run(tool: str, wall: float, cpu: float = 0.5) -> Measurement:
    return Measurement(
        tool=tool, argv=[tool], wall=wall, user=cpu, sys=0.0, maxrss_kib=20_000, exit_code=0
    )


def test_in_memory_md5_checks_the_bytes() -> None:
    good = InMemory(DATA, hashlib.md5(DATA).hexdigest())
    m = good.measure()
    assert m.tool == MD5_IN_MEMORY
    assert m.wall > 0
    assert m.maxrss_kib == 0
    chunks = [DATA[i : i + 1000] for i in range(0, len(DATA), 1000)]
    assert InMemory.from_chunks(chunks, good.md5).data == DATA
    with pytest.raises(VerificationFailed, match="in memory: MD5"):
        InMemory(DATA, "0" * 32).measure()


def test_floor_is_the_slower_of_curl_and_md5_per_repetition() -> None:
    ours = [_run("ebi-mirror", 3.0, cpu=2.0), _run("ebi-mirror", 4.0, cpu=2.0)]
    curl = [_run("curl", 1.0, cpu=0.25), _run("curl", 4.0, cpu=0.25)]
    md5 = [_run(MD5_IN_MEMORY, 2.0, cpu=0.75), _run(MD5_IN_MEMORY, 2.0, cpu=0.75)]
    md5_row, floor_row = floor_rows(ours, curl, md5, files=1, nbytes=1 << 30)
    assert [m.wall for m in floor_row.runs] == [2.0, 4.0]
    assert floor_row.ratio == pytest.approx((3.0 / 2.0 + 4.0 / 4.0) / 2)
    assert md5_row.ratio == pytest.approx((1.5 + 2.0) / 2)
    # The CPU floor: curl's + MD5's, per GiB.
    assert floor_row.cpu_per_gib == pytest.approx(1.0)
    result = WorkloadResult(key="W1", title="one file")
    ours_row = Row(tool="ebi-mirror", runs=ours, files=1, bytes=1 << 30, transport="https")
    floor_row.transport = md5_row.transport = "https"
    result.rows = [ours_row, md5_row, floor_row]
    target = hold(result, floor_row, "W1 https wall ebi-mirror / floor", 1.10)
    assert not target.passed
    assert floor_row.passed is False
    assert floor_row.target == "<= 1.10"
    table = format_table([result])
    (line,) = [t for t in table.splitlines() if FLOOR in t]
    assert line.startswith("W1 https")
    assert line.rstrip().endswith("<= 1.10  FAIL")
    assert " — " in line  # no peak RSS for an in-process row
    assert "W1 https wall ebi-mirror / floor" in table
    assert "0 of 1 targets met" in table


def test_a_floor_over_another_download_is_named_for_it() -> None:
    # Over a server that caps each connection the fastest plain download splits the
    # file: the floor is taken from that tool's runs and says so.
    ours = [_run("ebi-mirror", 3.0)]
    aria2 = [_run("aria2c -x8 -s8", 2.5)]
    md5 = [_run(MD5_IN_MEMORY, 2.0)]
    _, floor_row = floor_rows(ours, aria2, md5, files=1, nbytes=1 << 30, download="aria2c -x8 -s8")
    assert floor_row.tool == "floor = max(aria2c -x8 -s8, MD5)"
    assert [m.wall for m in floor_row.runs] == [2.5]
    assert floor_row.runs[0].argv == ["max(aria2c -x8 -s8 wall, MD5 wall)"]
    assert floor_row.ratio == pytest.approx(3.0 / 2.5)


def test_verifying_curl_fails_on_a_wrong_sum(tmp_path: Path) -> None:
    source = tmp_path / "source.bin"
    source.write_bytes(DATA)
    curl = shutil.which("curl") or "curl"
    url = source.as_uri()
    good = verifying_curl(curl, url, "out.bin", hashlib.md5(DATA).hexdigest())
    assert good.name == VERIFYING_CURL
    out = tmp_path / "good"
    out.mkdir()
    run_measured(good.name, good.command(out), log=tmp_path / "good.log")
    assert (out / "out.bin").read_bytes() == DATA
    bad = verifying_curl(curl, url, "out.bin", "0" * 32)
    with pytest.raises(CommandFailed, match="exit code 1"):
        run_measured(bad.name, bad.command(out), log=tmp_path / "bad.log")
    missing = verifying_curl(curl, url + ".gone", "out.bin", hashlib.md5(DATA).hexdigest())
    with pytest.raises(CommandFailed):
        run_measured(missing.name, missing.command(out), log=tmp_path / "missing.log")
