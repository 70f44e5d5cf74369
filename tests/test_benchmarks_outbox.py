"""W10's floor: the Crypt4GH file decrypted and hashed in memory, checked against SHA256;
and its rows: the floor is the slower of sftp and the decryption, per repetition."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks._data import VerificationFailed
from benchmarks._measure import Measurement
from benchmarks._outbox import DECRYPT, FLOOR, SFTP, _Decrypt, _rows
from benchmarks._results import WorkloadResult
from benchmarks._transfer import MIRROR
from mirror.emulator import Catalog
from mirror.emulator.ega._outbox import write_c4gh
from mirror.emulator.ega._sftp import make_keys

# Three segments and a bit: the last one short.
ITEM = Catalog.generate_outbox("EGAD50000000003", files=1, sizes=(3 * 65536 + 5,))
FILE = ITEM.outbox_datasets[0].files[0]


def test_the_floor_decrypts_every_segment_and_checks_the_plaintext_sha256(tmp_path: Path) -> None:
    keys = make_keys(tmp_path / "keys")
    write_c4gh(FILE, tmp_path / "f.c4gh", keys.c4gh_public)
    data = (tmp_path / "f.c4gh").read_bytes()
    run = _Decrypt(data, keys, FILE.checksum).measure()
    assert run.tool == DECRYPT
    assert run.wall > 0
    with pytest.raises(VerificationFailed, match="SHA256"):
        _Decrypt(data, keys, "0" * 64).measure()
    # A file one byte short loses its last segment's MAC: decryption itself fails.
    with pytest.raises(ValueError, match="decryption failed"):
        _Decrypt(data[:-1], keys, FILE.checksum).measure()


def _m(tool: str, wall: float) -> Measurement:
    return Measurement(
        tool=tool, argv=[tool], wall=wall, user=1.0, sys=0.0, maxrss_kib=0, exit_code=0
    )


def test_rows_hold_mirror_to_sftp_and_the_floor_is_the_slower_per_repetition() -> None:
    result = WorkloadResult(key="W10", title="t")
    results = {MIRROR: [_m(MIRROR, 12.0), _m(MIRROR, 11.0)], SFTP: [_m(SFTP, 10.0), _m(SFTP, 10.0)]}
    _rows(result, results, [_m(DECRYPT, 11.0), _m(DECRYPT, 4.0)], FILE)
    rows = {row.tool: row for row in result.rows}
    assert [r.wall for r in rows[FLOOR].runs] == [11.0, 10.0]
    assert rows[SFTP].ratio == pytest.approx(1.15)
    (target,) = result.targets
    assert target.limit == pytest.approx(1.25)
    assert target.passed
    assert rows[SFTP].passed

    # Without ebi-mirror's row: no ratios, no target.
    result = WorkloadResult(key="W10", title="t")
    _rows(result, {SFTP: [_m(SFTP, 10.0)]}, [_m(DECRYPT, 4.0)], FILE)
    assert not result.targets
    assert all(row.ratio is None for row in result.rows)
