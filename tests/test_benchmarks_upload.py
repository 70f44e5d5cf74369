"""W11's rows: ebi-mirror held to lftp's wall, the floor the slower of lftp and the MD5 per
repetition; without ebi-mirror's row, no ratios and no target."""

from __future__ import annotations

import pytest

from benchmarks._floor import MD5_IN_MEMORY
from benchmarks._measure import Measurement
from benchmarks._results import WorkloadResult
from benchmarks._transfer import MIRROR
from benchmarks._upload import CURL, LFTP, _rows

SIZE = 1 << 30


def _m(tool: str, wall: float) -> Measurement:
    return Measurement(
        tool=tool, argv=[tool], wall=wall, user=1.0, sys=0.0, maxrss_kib=0, exit_code=0
    )


def test_rows_hold_mirror_to_lftp_and_the_floor_is_the_slower_per_repetition() -> None:
    result = WorkloadResult(key="W11", title="t")
    results = {
        MIRROR: [_m(MIRROR, 3.0), _m(MIRROR, 2.0)],
        LFTP: [_m(LFTP, 2.0), _m(LFTP, 2.0)],
        CURL: [_m(CURL, 4.0), _m(CURL, 4.0)],
    }
    _rows(result, results, [_m(MD5_IN_MEMORY, 2.5), _m(MD5_IN_MEMORY, 1.5)], SIZE)
    rows = {row.tool: row for row in result.rows}
    floor = rows["floor = max(lftp, MD5)"]
    assert [r.wall for r in floor.runs] == [2.5, 2.0]
    assert rows[LFTP].ratio == pytest.approx(1.25)
    assert rows[CURL].ratio == pytest.approx(0.625)
    (target,) = result.targets
    assert target.limit == pytest.approx(1.25)
    assert target.passed
    assert rows[LFTP].passed
    assert rows[LFTP].target == "<= 1.25"
    assert result.info["lftp_mb_s"] == pytest.approx(SIZE / 2.0 / 1e6)

    result = WorkloadResult(key="W11", title="t")
    slow = {MIRROR: [_m(MIRROR, 2.6)], LFTP: [_m(LFTP, 2.0)]}
    _rows(result, slow, [_m(MD5_IN_MEMORY, 1.0)], SIZE)
    assert not result.targets[0].passed


def test_without_mirror_there_are_no_ratios_and_no_target() -> None:
    result = WorkloadResult(key="W11", title="t")
    _rows(result, {LFTP: [_m(LFTP, 2.0)], CURL: [_m(CURL, 3.0)]}, [_m(MD5_IN_MEMORY, 1.0)], SIZE)
    assert not result.targets
    assert all(row.ratio is None for row in result.rows)
    floor = "floor = max(lftp, MD5)"
    assert [row.tool for row in result.rows] == [LFTP, CURL, MD5_IN_MEMORY, floor]
