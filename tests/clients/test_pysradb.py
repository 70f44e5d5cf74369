"""pysradb (saketkc/pysradb, from PyPI) against the emulator.

``pysradb search --db ena`` looks the organism up in ENA's taxonomy service
(``/ena/taxonomy/rest/scientific-name/NAME``), then asks the Portal's ``/search`` for
``read_run`` JSON with ``fields=all`` (``-v 3``) and a query of quoted terms joined by
OR/AND with ``tax_eq(ID)``; it runs unchanged. ``pysradb download`` reads that table
and fetches the ``fastq_ftp`` column: ``ftp.sra.ebi.ac.uk/...`` values, which it
fetches with ftplib. The emulator serves no FTP, so pysradb_launch.py maps those two
FTP helpers onto pysradb's own HTTP download (the same path over ``https://``, as ENA
serves it): HEAD for the size, a ranged GET into ``.part``, then the final name.
pysradb cannot download a run with two FASTQs from that column (it takes the
``;``-joined cell as one URL, against ENA too), so the download uses a single-end run.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
from pathlib import Path
from urllib.parse import parse_qs

import pytest

from .emulated import emulated, python_of

pytestmark = pytest.mark.clients

LAUNCHER = Path(__file__).with_name("pysradb_launch.py")
FILE = "vol1/fastq/ERR110/002/ERR11000002/ERR11000002.fastq.gz"


async def test_pysradb_searches_ena_and_downloads_the_run(tmp_path: Path) -> None:
    python = python_of("pysradb")
    async with emulated(tmp_path) as world:
        table = tmp_path / "search.tsv"
        found = await world.run(
            python, "pysradb", "search", "--db", "ena", "--accession", "PRJEB40002",
            "--organism", "human gut metagenome", "--layout", "SINGLE", "-v", "3",
            "--saveto", str(table),
            cwd=tmp_path, launcher=LAUNCHER,
        )  # fmt: skip
        assert found.returncode == 0, found.stderr
        (row,) = csv.DictReader(io.StringIO(table.read_text()), delimiter="\t")
        assert (row["run_accession"], row["study_accession"]) == ("ERR11000002", "PRJEB40002")
        assert (row["tax_id"], row["library_layout"]) == ("408170", "SINGLE")
        assert row["fastq_ftp"] == f"ftp.sra.ebi.ac.uk/{FILE}"
        assert row["fastq_md5"] == world.emu.ena.file_md5(FILE)

        out = tmp_path / "out"
        done = await world.run(
            python, "pysradb", "download", "--out-dir", str(out), "--col", "fastq_ftp",
            cwd=tmp_path, launcher=LAUNCHER, stdin=table.read_text(),
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        local = out / "PRJEB40002" / "ERX10500002" / "ERR11000002.fastq.gz"
        data = local.read_bytes()
        assert hashlib.md5(data).hexdigest() == world.emu.ena.file_md5(FILE)
        gzip.decompress(data)
        assert not local.with_name(local.name + ".part").exists()

        await world.emu.wait_idle()
        taxonomy, search, *files = world.emu.log
        assert (taxonomy.path, taxonomy.status) == (
            "/ena/taxonomy/rest/scientific-name/human gut metagenome",
            200,
        )
        sent = parse_qs(search.query)
        assert sent["format"] == ["json"]
        assert sent["fields"] == ["all"]
        assert sent["query"][0].endswith('AND tax_eq(408170) AND library_layout="SINGLE"')
        assert {(e.host, e.path) for e in files} == {("ftp", "/" + FILE)}
        assert [e.method for e in files][-1] == "GET"
