"""Metadata records: private temporaries, tables of one run merged, errors as one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from mirror import MirrorError
from mirror._metadata import MetadataWriter


async def test_two_writers_of_one_table_are_merged(tmp_path: Path) -> None:
    writer = MetadataWriter(tmp_path)
    first = writer.table("ena/runs.tsv", ["run", "md5"])
    second = writer.table("ena/runs.tsv", ["run", "md5", "size"])
    # Interleaved as two sources of one run write them.
    await first.write([{"run": "ERR1", "md5": "a"}])
    await second.write([{"run": "ERR2", "md5": "b", "size": "9"}])
    await first.write([{"run": "ERR3", "md5": "c"}])
    await second.write([{"run": "ERR1", "md5": "a"}])
    temporaries = sorted(p.name for p in (tmp_path / "ena").iterdir())
    assert len(temporaries) == 2
    assert all(name.startswith(".runs.tsv.") for name in temporaries)
    await first.close()
    await second.close()
    assert (tmp_path / "ena/runs.tsv").read_text().splitlines() == [
        "run\tmd5\tsize",
        "ERR1\ta\t",
        "ERR3\tc\t",
        "ERR2\tb\t9",
    ]
    assert [p.name for p in (tmp_path / "ena").iterdir()] == ["runs.tsv"]


async def test_a_later_run_replaces_the_table(tmp_path: Path) -> None:
    for run in ("ERR1", "ERR2"):
        table = MetadataWriter(tmp_path).table("ena/runs.tsv", ["run"])
        await table.write([{"run": run}])
        await table.close()
    assert (tmp_path / "ena/runs.tsv").read_text() == "run\nERR2\n"


async def test_a_table_never_closed_leaves_no_temporary(tmp_path: Path) -> None:
    writer = MetadataWriter(tmp_path)
    table = writer.table("ena/runs.tsv", ["run"])
    await table.write([{"run": "ERR1"}])
    writer.discard()
    assert list((tmp_path / "ena").iterdir()) == []


async def test_a_write_that_cannot_happen_is_a_mirror_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    writer = MetadataWriter(tmp_path / "file")
    with pytest.raises(MirrorError, match=r"cannot write .*file/mgnify/MGYA1\.json"):
        await writer.write_json("mgnify/MGYA1.json", {"a": 1})
    table = writer.table("ena/runs.tsv", ["run"])
    with pytest.raises(MirrorError, match=r"cannot write .*runs\.tsv"):
        await table.write([{"run": "ERR1"}])


async def test_a_table_closed_after_the_run_discarded_it_is_dropped_quietly(
    tmp_path: Path,
) -> None:
    # A cancelled source's generator closes its table after the engine discarded it.
    writer = MetadataWriter(tmp_path)
    table = writer.table("ena/runs.tsv", ["run"])
    await table.write([{"run": "ERR1"}])
    tmp = next((tmp_path / "ena").iterdir())
    writer._open.clear()  # as discard() does when it wins the race with close()
    await table.close()
    assert not tmp.exists()
    assert list((tmp_path / "ena").iterdir()) == []
