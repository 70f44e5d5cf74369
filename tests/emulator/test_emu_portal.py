"""The emulated ENA Portal API: filereport, search, returnFields, count."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path

import aiohttp
import pytest

from mirror.emulator import Catalog, Emulator, EnaOptions

FASTQ_FIELDS = "fastq_ftp,fastq_md5,fastq_bytes"
REAL = Path(__file__).resolve().parents[1] / "fixtures" / "real-responses" / "ena"


def _tsv(text: str) -> tuple[list[str], list[dict[str, str]]]:
    rows = list(csv.reader(io.StringIO(text), delimiter="\t"))
    header = rows[0]
    return header, [dict(zip(header, row, strict=True)) for row in rows[1:]]


async def _get(
    session: aiohttp.ClientSession, url: str, **params: str
) -> tuple[int, str, aiohttp.ClientResponse]:
    async with session.get(url, params=params) as response:
        return response.status, await response.text(), response


async def test_filereport_tsv_columns_in_requested_order(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    url = emu.endpoints["ena_portal"] + "/filereport"
    fields = "fastq_bytes,run_accession,fastq_md5,fastq_ftp,library_layout"
    status, text, response = await _get(
        session, url, accession="ERP124001", result="read_run", fields=fields
    )
    assert status == 200
    assert response.content_type == "text/plain"
    header, rows = _tsv(text)
    assert header == fields.split(",")
    assert [row["run_accession"] for row in rows] == [
        "ERR164407",
        "ERR4080001",
        "ERR4080002",
        "ERR4080003",
    ]
    three = rows[2]
    urls = three["fastq_ftp"].split(";")
    assert [u.rsplit("/", 1)[1] for u in urls] == [
        "ERR4080002.fastq.gz",
        "ERR4080002_1.fastq.gz",
        "ERR4080002_2.fastq.gz",
    ]
    assert all(u.startswith("ftp.sra.ebi.ac.uk/vol1/fastq/") for u in urls)
    # _ftp/_md5/_bytes are aligned by position, and the MD5s are of the served bytes.
    for u, md5, size in zip(
        urls, three["fastq_md5"].split(";"), three["fastq_bytes"].split(";"), strict=True
    ):
        data = emu.ena.file_bytes(u)
        assert len(data) == int(size)
        assert hashlib.md5(data).hexdigest() == md5 == emu.ena.file_md5(u)
    assert rows[3]["fastq_ftp"] == rows[3]["fastq_md5"] == rows[3]["fastq_bytes"] == ""


async def test_filereport_adds_the_accession_column_first(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    url = emu.endpoints["ena_portal"] + "/filereport"
    status, text, _ = await _get(
        session, url, accession="ERR4080003", result="read_run", fields="submitted_format"
    )
    assert status == 200
    assert text == "run_accession\tsubmitted_format\nERR4080003\tBAM;BAI\n"


async def test_filereport_json(emu: Emulator, session: aiohttp.ClientSession) -> None:
    url = emu.endpoints["ena_portal"] + "/filereport"
    status, text, response = await _get(
        session, url, accession="SAMEA110000010", result="read_run", fields=FASTQ_FIELDS,
        format="json",
    )  # fmt: skip
    assert status == 200
    assert response.content_type == "application/json"
    rows = json.loads(text)
    assert [set(row) for row in rows] == [{"run_accession", *FASTQ_FIELDS.split(",")}] * 2
    assert all(isinstance(value, str) for row in rows for value in row.values())
    assert rows[1]["fastq_bytes"] == "65536"


@pytest.mark.parametrize(
    ("accession", "result"),
    [
        pytest.param("ERR999999", "read_run", id="unknown-run"),
        pytest.param("PRJEB99999", "read_run", id="unknown-study"),
        pytest.param("ERR164407", "analysis", id="run-has-no-analysis"),
        pytest.param("PRJEB40002", "analysis", id="study-without-analyses"),
    ],
)
async def test_filereport_without_rows_is_204(
    emu: Emulator, session: aiohttp.ClientSession, accession: str, result: str
) -> None:
    url = emu.endpoints["ena_portal"] + "/filereport"
    status, text, _ = await _get(
        session, url, accession=accession, result=result, fields="submitted_ftp"
    )
    assert (status, text) == (204, "")


async def test_filereport_analysis(emu: Emulator, session: aiohttp.ClientSession) -> None:
    url = emu.endpoints["ena_portal"] + "/filereport"
    fields = "generated_ftp,generated_md5,submitted_ftp,submitted_bytes"
    for accession in ("ERZ1000001", "PRJEB40001", "ERS1500001"):
        status, text, _ = await _get(
            session, url, accession=accession, result="analysis", fields=fields
        )
        assert status == 200
        header, (row,) = _tsv(text)
        assert header == ["analysis_accession", *fields.split(",")]
        assert row["generated_md5"] == emu.ena.file_md5(row["generated_ftp"])


@pytest.mark.parametrize(
    ("kind", "accessions", "runs"),
    [
        pytest.param("run", "ERR164407,ERR11000002", ["ERR164407", "ERR11000002"], id="run"),
        pytest.param("experiment", "ERX4080002", ["ERR4080002"], id="experiment"),
        pytest.param("sample", "SAMEA110000010", ["ERR11000001", "ERR11000002"], id="sam"),
        pytest.param("sample", "ERS1500001", ["ERR164407", "ERR4080001"], id="ers"),
        pytest.param("study", "PRJEB40002", ["ERR11000001", "ERR11000002"], id="prj"),
        pytest.param("study", "ERP124002", ["ERR11000001", "ERR11000002"], id="erp"),
        pytest.param("study", "PRJEB40002,ERP124002", ["ERR11000001", "ERR11000002"], id="both"),
        pytest.param("run", "ERR000001,ERR164407", ["ERR164407"], id="unknown-skipped"),
    ],
)
async def test_search_include_accessions(
    emu: Emulator, session: aiohttp.ClientSession, kind: str, accessions: str, runs: list[str]
) -> None:
    form = {
        "result": "read_run",
        "includeAccessions": accessions,
        "includeAccessionType": kind,
        "fields": "run_accession,fastq_md5,study_accession",
        "format": "tsv",
        "limit": "0",
    }
    async with session.post(emu.endpoints["ena_portal"] + "/search", data=form) as response:
        assert response.status == 200
        header, rows = _tsv(await response.text())
    # Since Feb 2024 the accession is the LAST /search column, whatever was asked.
    assert header == ["fastq_md5", "study_accession", "run_accession"]
    assert [row["run_accession"] for row in rows] == runs


async def test_search_json_keys_and_post_with_query_params(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    # ENA's File Downloader: result etc. in the URL, accessions in the form body.
    url = emu.endpoints["ena_portal"] + "/search?result=analysis&format=json&limit=0"
    form = {"includeAccessions": "ERZ1000001", "includeAccessionType": "analysis"}
    async with session.post(url, data=form) as response:
        assert response.status == 200
        rows = await response.json()
    assert rows == [{"analysis_accession": "ERZ1000001"}]


async def test_search_more_than_1000_accessions_is_400(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    accessions = ",".join(f"ERR{n}" for n in range(1_000_000, 1_001_001))
    form = {"result": "read_run", "includeAccessions": accessions, "includeAccessionType": "run"}
    async with session.post(emu.endpoints["ena_portal"] + "/search", data=form) as response:
        assert response.status == 400
        assert "1000" in await response.text()
    form["includeAccessions"] = ",".join(accessions.split(",")[:1000])
    async with session.post(emu.endpoints["ena_portal"] + "/search", data=form) as response:
        assert response.status == 200


@pytest.mark.parametrize("endpoint", ["search", "filereport"])
async def test_invalid_field_is_400_with_enas_message(
    emu: Emulator, session: aiohttp.ClientSession, endpoint: str
) -> None:
    url = emu.endpoints["ena_portal"] + "/" + endpoint
    status, text, _ = await _get(
        session, url, result="read_run", accession="ERR164407", fields="fastq_ftp,parent_study"
    )
    assert (status, text) == (400, "Invalid fieldName(s) supplied: parent_study")


@pytest.mark.parametrize(
    "params",
    [
        pytest.param({"result": "sample"}, id="unsupported-result"),
        pytest.param({}, id="no-result"),
        pytest.param({"result": "read_run", "format": "xml"}, id="bad-format"),
        pytest.param({"result": "read_run", "limit": "-1"}, id="bad-limit"),
        pytest.param({"result": "read_run", "query": 'study_accession="X" AND'}, id="bad-query"),
        pytest.param({"result": "read_run", "query": "nope=1"}, id="unknown-query-field"),
        pytest.param(
            {"result": "read_run", "includeAccessions": "X", "includeAccessionType": "taxon"},
            id="bad-accession-type",
        ),
    ],
)
async def test_search_bad_requests(
    emu: Emulator, session: aiohttp.ClientSession, params: dict[str, str]
) -> None:
    status, _, _ = await _get(session, emu.endpoints["ena_portal"] + "/search", **params)
    assert status == 400


@pytest.mark.parametrize(
    ("query", "runs"),
    [
        pytest.param('study_accession="PRJEB40002"', ["ERR11000001", "ERR11000002"], id="prj"),
        pytest.param(
            '(study_accession="ERP124002" OR secondary_study_accession="ERP124002")',
            ["ERR11000001", "ERR11000002"],
            id="fastq-dl-form",
        ),
        pytest.param(
            'study_accession="PRJEB40002" AND library_layout="SINGLE"', ["ERR11000002"], id="and"
        ),
        pytest.param(
            'sample_accession=SAMEA1500001 OR run_accession="SRR9320616"',
            ["ERR164407", "ERR4080001", "SRR9320616"],
            id="or-unquoted",
        ),
        pytest.param('scientific_name="human gut metagenome"', None, id="scan"),
        pytest.param("tax_eq(408170) AND NOT library_layout=PAIRED", ["ERR11000002"], id="not"),
        pytest.param(
            '"(study_accession=ERP124002 OR secondary_study_accession=ERP124002)"',
            ["ERR11000001", "ERR11000002"],
            id="fastq-dl-whole-query-quoted",
        ),
    ],
)
async def test_search_query(
    emu: Emulator, session: aiohttp.ClientSession, query: str, runs: list[str] | None
) -> None:
    url = emu.endpoints["ena_portal"] + "/search"
    status, text, _ = await _get(session, url, result="read_run", query=query)
    assert status == 200
    header, rows = _tsv(text)
    assert header == ["run_accession"]
    expected = runs or ["ERR11000001", "ERR11000002", "ERR120000001"]
    assert [row["run_accession"] for row in rows] == expected


async def test_search_without_rows_and_paging(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    url = emu.endpoints["ena_portal"] + "/search"
    empty = {"result": "read_run", "query": 'study_accession="PRJEB99999"'}
    assert (await _get(session, url, **empty))[:2] == (200, "run_accession\n")
    assert (await _get(session, url, **empty, format="json"))[:2] == (200, "[]")
    _status, text, _ = await _get(session, url, result="read_run", offset="2", limit="3")
    assert [row["run_accession"] for row in _tsv(text)[1]] == [
        "ERR4080002",
        "ERR4080003",
        "ERR11000001",
    ]


async def test_fields_all(emu: Emulator, session: aiohttp.ClientSession) -> None:
    url = emu.endpoints["ena_portal"] + "/search"
    _, text, _ = await _get(session, url, result="read_run", fields="all", limit="1")
    header, (row,) = _tsv(text)
    assert header[-1] == "run_accession"
    assert "sra_md5" in header
    assert row["sra_bytes"] == str(2 * 1024 * 1024 + 17)


@pytest.mark.parametrize("result", ["read_run", "analysis"])
async def test_return_fields_are_enas_recorded_list(
    emu: Emulator, session: aiohttp.ClientSession, result: str
) -> None:
    recorded = json.loads((REAL / f"returnFields_{result}.json").read_text())
    url = emu.endpoints["ena_portal"] + "/returnFields"
    status, text, _ = await _get(session, url, result=result, format="json")
    assert status == 200
    answered = json.loads(text)
    assert [(f["columnId"], f["type"]) for f in answered] == [
        (f["columnId"], f["type"]) for f in recorded
    ]
    assert len(answered) == {"read_run": 195, "analysis": 137}[result]
    # Every one of them is accepted by /search, in one request, as by ENA.
    names = ",".join(f["columnId"] for f in recorded)
    status, text, _ = await _get(
        session, emu.endpoints["ena_portal"] + "/search", result=result, fields=names, limit="1"
    )
    assert status == 200
    assert len(_tsv(text)[0]) == len(recorded)
    _, text, _ = await _get(
        session, emu.endpoints["ena_portal"] + "/search", result=result, fields="all", limit="1"
    )
    assert sorted(_tsv(text)[0]) == sorted(f["columnId"] for f in recorded)


@pytest.mark.parametrize(
    "name",
    [
        "parent_study",
        "fastq_url",
        # The fields ENA dropped in May 2023; its answer then, as fastq-dl#15 shows it.
        "cram_index_ftp,cram_index_aspera,cram_index_galaxy",
    ],
)
async def test_a_field_outside_enas_list_is_refused(
    emu: Emulator, session: aiohttp.ClientSession, name: str
) -> None:
    url = emu.endpoints["ena_portal"] + "/search"
    status, text, _ = await _get(session, url, result="read_run", fields=f"sample_title,{name}")
    assert (status, text) == (400, f"Invalid fieldName(s) supplied: {name}")


async def test_return_fields(emu: Emulator, session: aiohttp.ClientSession) -> None:
    url = emu.endpoints["ena_portal"] + "/returnFields"
    status, text, _ = await _get(session, url, result="read_run")
    assert status == 200
    header, rows = _tsv(text)
    assert header == ["columnId", "description", "type"]
    names = {row["columnId"] for row in rows}
    assert names >= {
        "run_accession", "experiment_accession", "sample_accession",
        "secondary_sample_accession", "study_accession", "secondary_study_accession",
        "library_layout", "scientific_name", "instrument_platform", "fastq_ftp", "fastq_md5",
        "fastq_bytes", "submitted_ftp", "submitted_md5", "submitted_bytes", "submitted_format",
        "sra_ftp", "sra_md5", "sra_bytes",
    }  # fmt: skip
    status, text, _ = await _get(session, url, result="analysis", format="json")
    columns = {item["columnId"] for item in json.loads(text)}
    assert columns >= {
        "analysis_accession", "study_accession", "secondary_study_accession", "sample_accession",
        "analysis_type", "submitted_ftp", "submitted_md5", "submitted_bytes", "generated_ftp",
        "generated_md5", "generated_bytes",
    }  # fmt: skip


async def test_count(emu: Emulator, session: aiohttp.ClientSession) -> None:
    url = emu.endpoints["ena_portal"] + "/count"
    status, text, _ = await _get(
        session, url, result="read_run", query='secondary_study_accession="ERP124001"'
    )
    assert (status, text) == (200, "count\n4\n")


async def test_trailing_slash_is_404(emu: Emulator, session: aiohttp.ClientSession) -> None:
    status, _, _ = await _get(session, emu.endpoints["ena_portal"] + "/search/", result="read_run")
    assert status == 404


async def test_generated_study_streams_many_rows(session: aiohttp.ClientSession) -> None:
    # 2,000 runs: a report of some seven of the emulator's 64 KiB writes, streamed.
    catalog = Catalog.generate(runs_per_study=2_000, files_per_run=2)
    async with Emulator(catalog, ena=EnaOptions(portal_rate_limit=None)) as emu:
        url = emu.endpoints["ena_portal"] + "/filereport"
        async with session.get(
            url, params={"accession": "PRJEB70000", "result": "read_run", "fields": FASTQ_FIELDS}
        ) as response:
            assert response.headers.get("Transfer-Encoding") == "chunked"
            body = await response.text()
    assert len(body) > 5 * 64 * 1024
    lines = body.splitlines()
    assert len(lines) == 2_001
    last = dict(zip(lines[0].split("\t"), lines[-1].split("\t"), strict=True))
    assert last["run_accession"] == "ERR200001999"
    first_file = last["fastq_ftp"].split(";")[0]
    assert last["fastq_md5"].split(";")[0] == emu.ena.file_md5(first_file)
