"""Request shapes sent to the ENA Portal, and how its error answers reach the user."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aioresponses.core as aioresponses_core
import pytest
from aiohttp import ClientResponse
from aioresponses import aioresponses

from mirror._config import DEFAULT_ENDPOINTS, EnaSpec, HostLimit
from mirror._exceptions import EmptyEntry, SourceError
from mirror._http import Http
from mirror._metadata import MetadataWriter
from mirror._models import FileTask
from mirror._retry import RetryPolicy
from mirror.sources import SourceContext
from mirror.sources.ena import EnaSource

PORTAL = DEFAULT_ENDPOINTS["ena_portal"]
FIELDS = [
    {"columnId": name}
    for name in (
        "run_accession",
        "experiment_accession",
        "sample_accession",
        "secondary_sample_accession",
        "study_accession",
        "secondary_study_accession",
        "library_layout",
        "fastq_ftp",
        "fastq_md5",
        "fastq_bytes",
        "submitted_ftp",
        "sra_ftp",
    )
]


class _Written:
    output_size = 0


class _CompatResponse(ClientResponse):
    """aiohttp 3.14 requires ``stream_writer``, which aioresponses 0.7.x does not pass
    (pnuckowski/aioresponses#289); a finished request's writer only reports its size."""

    def __init__(self, method: str, url: Any, **kwargs: Any) -> None:
        kwargs.setdefault("stream_writer", _Written())
        super().__init__(method, url, **kwargs)


@pytest.fixture(autouse=True)
def _aioresponses_on_aiohttp_314(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aioresponses_core, "ClientResponse", _CompatResponse)


@pytest.fixture
async def http() -> AsyncIterator[Http]:
    async with Http(lambda host: HostLimit(), retry=RetryPolicy(attempts=2, base=0.0)) as h:
        yield h


def source(http: Http, tmp_path: Path, accessions: list[str], warnings: list[str]) -> EnaSource:
    ctx = SourceContext(
        http=http,
        endpoints=DEFAULT_ENDPOINTS,
        metadata=MetadataWriter(tmp_path),
        warn=warnings.append,
    )
    return EnaSource(EnaSpec(accessions=tuple(accessions), files=("fastq",)), ctx)


async def collect(src: EnaSource) -> list[FileTask]:
    return [task async for batch in src.expand() for task in batch]


async def test_runs_are_looked_up_in_batches_of_1000(http: Http, tmp_path: Path) -> None:
    accessions = [f"ERR{1000000 + i}" for i in range(2500)]
    warnings: list[str] = []
    with aioresponses() as mock:
        mock.get(f"{PORTAL}/returnFields?format=json&result=read_run", payload=FIELDS)
        for _ in range(3):
            mock.post(f"{PORTAL}/search", body="run_accession\tfastq_ftp\n", status=200)
        with pytest.raises(EmptyEntry) as caught:
            await collect(source(http, tmp_path, accessions, warnings))
        posts = [
            call
            for (method, url), calls in mock.requests.items()
            for call in calls
            if method == "POST"
        ]
    assert len(posts) == 3
    sizes = []
    for call in posts:
        data = call.kwargs["data"]
        assert data["result"] == "read_run"
        assert data["includeAccessionType"] == "run"
        assert data["format"] == "tsv"
        assert data["limit"] == "0"
        assert "fastq_md5" in data["fields"].split(",")
        sizes.append(len(data["includeAccessions"].split(",")))
    assert sizes == [1000, 1000, 500]
    # None of them matched a row: one line names the first ones and counts the rest.
    assert "ERR1000000, ERR1000001, " in str(caught.value)
    assert "and 2,480 more matched nothing" in str(caught.value)
    assert warnings == []


async def test_invalid_field_answer_is_a_clear_error(http: Http, tmp_path: Path) -> None:
    with aioresponses() as mock:
        mock.get(f"{PORTAL}/returnFields?format=json&result=read_run", payload=FIELDS)
        mock.post(
            f"{PORTAL}/search", status=400, body="Invalid fieldName(s) supplied: library_layout"
        )
        with pytest.raises(SourceError) as err:
            await collect(source(http, tmp_path, ["ERR164407"], []))
    assert str(err.value) == (
        f"ENA Portal rejected the query: {PORTAL}/search: HTTP 400: "
        "Invalid fieldName(s) supplied: library_layout"
    )


async def test_fields_the_portal_no_longer_offers_are_named(http: Http, tmp_path: Path) -> None:
    with aioresponses() as mock:
        mock.get(
            f"{PORTAL}/returnFields?format=json&result=read_run",
            payload=[f for f in FIELDS if f["columnId"] != "fastq_md5"],
        )
        with pytest.raises(SourceError, match=r"does not offer the field\(s\) fastq_md5"):
            await collect(source(http, tmp_path, ["ERR164407"], []))


async def test_column_order_does_not_matter(http: Http, tmp_path: Path) -> None:
    # Feb 2024: the accession moved from the first column to the last.
    body = (
        "fastq_bytes\tfastq_md5\tfastq_ftp\trun_accession\n"
        "10;20\taa;bb\tftp.sra.ebi.ac.uk/vol1/a/ERR164407_1.fastq.gz;"
        "ftp.sra.ebi.ac.uk/vol1/a/ERR164407_2.fastq.gz\tERR164407\n"
    )
    with aioresponses() as mock:
        mock.get(f"{PORTAL}/returnFields?format=json&result=read_run", payload=FIELDS)
        mock.post(f"{PORTAL}/search", body=body)
        tasks = await collect(source(http, tmp_path, ["ERR164407"], []))
    assert [(t.path, t.size, t.checksum) for t in tasks] == [
        ("ena/ERR164407/ERR164407_1.fastq.gz", 10, "aa"),
        ("ena/ERR164407/ERR164407_2.fastq.gz", 20, "bb"),
    ]
    assert tasks[0].url == "https://ftp.sra.ebi.ac.uk/vol1/a/ERR164407_1.fastq.gz"


async def test_submission_no_content_matches_nothing(http: Http, tmp_path: Path) -> None:
    warnings: list[str] = []
    with aioresponses() as mock:
        mock.get(f"{PORTAL}/returnFields?format=json&result=read_run", payload=FIELDS)
        mock.get(re.compile(rf"{re.escape(PORTAL)}/filereport\?.*"), status=204, body="")
        with pytest.raises(EmptyEntry) as caught:
            await collect(source(http, tmp_path, ["ERA2421642"], warnings))
    assert str(caught.value) == (
        "nothing to download: ERA2421642 matched nothing: no public runs or analyses found "
        "(not yet public, suppressed, or not an accession ENA knows)"
    )
