"""fastq-dl (rpetit3/fastq-dl, from PyPI) against the emulator, unchanged.

fastq-dl asks the Portal's ``/search`` with the whole query in quotes
(``query="(run_accession=…)"``, ``fields=all``, TSV), then runs
``wget {protocol}://{fastq_ftp value}`` for each FASTQ and checks its MD5 against
``fastq_md5``. Its ``--protocol https`` is used (ENA serves the same paths over HTTPS);
the emulator runs in HTTPS mode with local links, so the ``fastq_ftp`` values name
its own file host and wget trusts the test CA through a ``.wgetrc``.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
from pathlib import Path
from urllib.parse import parse_qs

import pytest

from .emulated import emulated, python_of

pytestmark = pytest.mark.clients

RUN = "ERR164407"
FILES = [
    f"vol1/fastq/ERR164/007/{RUN}/{RUN}_1.fastq.gz",
    f"vol1/fastq/ERR164/007/{RUN}/{RUN}_2.fastq.gz",
]


@pytest.mark.parametrize(
    ("accession", "query"),
    [
        pytest.param(RUN, f'"run_accession={RUN}"', id="run"),
        pytest.param("ERX148014", '"experiment_accession=ERX148014"', id="experiment"),
    ],
)
async def test_fastq_dl_downloads_a_run_with_verified_md5s(
    tmp_path: Path, accession: str, query: str
) -> None:
    python = python_of("fastq_dl")
    async with emulated(tmp_path, local_links=True) as world:
        (tmp_path / "home" / ".wgetrc").write_text(f"ca_certificate = {world.tls.ca}\n")
        out = tmp_path / "out"
        done = await world.run(
            python, "fastq-dl", "--accession", accession, "--provider", "ena", "--only-provider",
            "--protocol", "https", "--outdir", str(out), "--max-attempts", "1", "--sleep", "0",
            cwd=tmp_path,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        for path in FILES:
            local = out / path.rsplit("/", 1)[1]
            data = local.read_bytes()
            assert hashlib.md5(data).hexdigest() == world.emu.ena.file_md5(path)
            assert data == world.emu.ena.file_bytes(path)
            gzip.decompress(data)  # gzip's own CRC and length check
        with (out / "fastq-run-info.tsv").open() as handle:
            (row,) = csv.DictReader(handle, delimiter="\t")
        assert row["run_accession"] == RUN
        assert row["scientific_name"] == "Homo sapiens"
        assert row["library_layout"] == "PAIRED"
        await world.emu.wait_idle()
        (search,) = [e for e in world.emu.log if e.host == "www"]
        assert search.path == "/ena/portal/api/search"
        assert parse_qs(search.query)["query"] == [query]
        assert parse_qs(search.query)["fields"] == ["all"]
        assert [e.path for e in world.emu.log if e.host == "ftp"] == ["/" + p for p in FILES]


async def test_fastq_dl_study_query_in_quotes(tmp_path: Path) -> None:
    # A study: fastq-dl's "(study_accession=X OR secondary_study_accession=X)" in quotes.
    python = python_of("fastq_dl")
    async with emulated(tmp_path, local_links=True) as world:
        (tmp_path / "home" / ".wgetrc").write_text(f"ca_certificate = {world.tls.ca}\n")
        out = tmp_path / "out"
        done = await world.run(
            python, "fastq-dl", "--accession", "PRJEB40002", "--provider", "ena",
            "--only-provider", "--protocol", "https", "--outdir", str(out),
            "--only-download-metadata",
            cwd=tmp_path,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        with (out / "fastq-run-info.tsv").open() as handle:
            runs = sorted(row["run_accession"] for row in csv.DictReader(handle, delimiter="\t"))
        assert runs == ["ERR11000001", "ERR11000002"]
        await world.emu.wait_idle()
        (search,) = world.emu.log
        assert parse_qs(search.query)["query"] == [
            '"(study_accession=PRJEB40002 OR secondary_study_accession=PRJEB40002)"'
        ]
