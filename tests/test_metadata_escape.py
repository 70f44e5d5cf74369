"""``dest/metadata/`` tables: one record a line, whatever a server put in a value."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import yaml
from aiohttp import web

from mirror._metadata import MetadataWriter

from .inproc import Background, mirror_main
from .replay import Answer, Chooser, Replay

HOSTILE = {
    "run_accession": "ERR1000001",
    "scientific_name": "Homo\tsapiens\r",
    "library_strategy": "WGS\r\nINJECTED\tROW",
    "instrument_platform": "back\\slash \\t literal",
}


def unescape(cell: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"t": "\t", "n": "\n", "r": "\r"}.get(m[1], m[1]), cell)


def read_table(path: Path) -> list[list[str]]:
    """As a CSV reader sees the file: tab-separated, no quoting, any line ending."""
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


async def test_tabs_newlines_and_backslashes_in_values_are_escaped(tmp_path: Path) -> None:
    columns = list(HOSTILE)
    table = MetadataWriter(tmp_path).table("ena/runs.tsv", columns)
    await table.write([HOSTILE, {"run_accession": "ERR1000002"}])
    await table.close()

    rows = read_table(tmp_path / "ena/runs.tsv")
    assert len(rows) == 3
    assert {len(row) for row in rows} == {len(columns)}
    assert rows[0] == columns
    assert [unescape(cell) for cell in rows[1]] == list(HOSTILE.values())
    assert rows[1][1] == "Homo\\tsapiens\\r"
    assert rows[2] == ["ERR1000002", "", "", ""]


def test_a_portal_row_with_a_tab_and_a_carriage_return_stays_one_row(
    background: Background, tmp_path: Path
) -> None:
    fastq = "ftp.sra.ebi.ac.uk/vol1/fastq/ERR100/001/ERR1000001/ERR1000001.fastq.gz"
    row = {**HOSTILE, "fastq_ftp": fastq, "fastq_md5": "0" * 32, "fastq_bytes": "10"}
    fields = Answer.recorded("ena/returnFields_read_run.json")

    def report(request: web.Request, body: bytes) -> Answer:
        if b"result=read_run" not in body:
            return Answer(body=b"", status=204, content_type="text/plain")
        return Answer(body=json.dumps([row]).encode())

    routes: dict[str, Answer | Chooser] = {
        "/portal/returnFields": fields,
        "/portal/search": report,
    }
    replay = background.enter(lambda: Replay(routes))
    manifest = tmp_path / "m.yaml"
    doc = {
        "version": 1,
        "dest": str(tmp_path / "data"),
        "endpoints": {"ena_portal": f"{replay.base}/portal", "ena_files": replay.base},
        "sources": [{"ena": {"accessions": ["ERR1000001"]}}],
    }
    manifest.write_text(yaml.safe_dump(doc))
    done = mirror_main("plan", str(manifest))
    assert done.returncode == 0, done.stderr

    rows = read_table(tmp_path / "data/metadata/ena/runs.tsv")
    assert len(rows) == 2
    header, values = rows
    assert len(values) == len(header)
    got = dict(zip(header, (unescape(v) for v in values), strict=True))
    for name, value in HOSTILE.items():
        assert got[name] == value
