"""The Emulator itself: endpoints, request log, portal rate limit, and the CLI subprocess."""

from __future__ import annotations

import asyncio
import itertools
import json
from pathlib import Path

import aiohttp
import pytest

import mirror.emulator
from mirror.emulator import Catalog, Emulator, EnaOptions, Fault, LogEntry
from mirror.emulator.__main__ import main as emulator_main

from .helpers import FASTQ_1, emulator_cli


def test_public_names() -> None:
    assert mirror.emulator.__all__ == sorted(mirror.emulator.__all__)
    assert {"Catalog", "Emulator", "EnaAnalysis", "EnaFile", "EnaRun", "Fault", "LogEntry"} <= set(
        mirror.emulator.__all__
    )


async def test_endpoints_are_separate_loopback_hosts(emu: Emulator) -> None:
    portal, files = emu.endpoints["ena_portal"], emu.endpoints["ena_files"]
    assert portal.startswith("http://127.0.0.1:")
    assert portal.endswith("/ena/portal/api")
    assert files.startswith("http://127.0.0.1:")
    assert portal.split("/")[2] != files.split("/")[2]
    assert set(emu.ports) == {"www", "ftp", "enterobase", "ega"}


async def test_log_entries(tmp_path: Path, session: aiohttp.ClientSession) -> None:
    log_path = tmp_path / "requests.jsonl"
    async with Emulator(
        Catalog.demo(), log_path=log_path, ena=EnaOptions(portal_rate_limit=None)
    ) as emu:
        emu.faults.add(Fault(kind="reset", after_bytes=123, times=1))
        try:
            async with session.get(emu.ena.file_url(FASTQ_1)) as response:
                await response.read()
        except aiohttp.ClientPayloadError:
            pass
        async with session.get(
            emu.ena.file_url(FASTQ_1), headers={"Range": "bytes=10-19"}
        ) as response:
            assert await response.read() == emu.ena.file_bytes(FASTQ_1)[10:20]
        form = {
            "result": "read_run",
            "includeAccessions": "ERR164407",
            "includeAccessionType": "run",
        }
        async with session.post(emu.endpoints["ena_portal"] + "/search", data=form) as response:
            text = await response.text()
        async with session.get(emu.endpoints["ena_files"] + "/vol1/nothing") as response:
            assert response.status == 404
        await emu.wait_idle()
        log = emu.log
    path = "/" + FASTQ_1
    assert [(e.host, e.method, e.path, e.range, e.status, e.bytes, e.fault) for e in log] == [
        ("ftp", "GET", path, None, 200, 123, "reset"),
        ("ftp", "GET", path, "bytes=10-19", 206, 10, None),
        ("www", "POST", "/ena/portal/api/search", None, 200, len(text), None),
        ("ftp", "GET", "/vol1/nothing", None, 404, len("Not Found"), None),
    ]
    assert log[2].form is not None
    assert "includeAccessions=ERR164407" in log[2].form
    assert all(a.t <= b.t for a, b in itertools.pairwise(log))
    lines = log_path.read_text().splitlines()
    from_file = sorted((LogEntry.from_dict(json.loads(line)) for line in lines), key=lambda e: e.t)
    assert from_file == log
    assert set(json.loads(lines[0])) >= {
        "t",
        "host",
        "method",
        "path",
        "query",
        "range",
        "status",
        "bytes",
        "fault",
    }


async def test_client_hanging_up_mid_file_is_logged_with_the_bytes_sent(
    session: aiohttp.ClientSession,
) -> None:
    # Big enough that the kernel's socket buffers cannot swallow the whole body.
    catalog = Catalog.generate(runs_per_study=1, files_per_run=1, file_size=256 << 20)
    (file,) = catalog.iter_files()
    async with Emulator(catalog) as emu:
        async with session.get(emu.ena.file_url(file.path)) as response:
            assert (
                await response.content.readexactly(1 << 20)
                == emu.ena.file_bytes(file.path)[: 1 << 20]
            )
            response.close()
        await emu.wait_idle()
        (entry,) = emu.log
    assert entry.status == 200
    assert (1 << 20) <= entry.bytes < file.size


async def test_keep_log_off_still_writes_the_file(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    log_path = tmp_path / "only-file.jsonl"
    async with Emulator(Catalog.demo(), log_path=log_path, keep_log=False) as emu:
        async with session.head(emu.ena.file_url(FASTQ_1)) as response:
            assert response.status == 200
        await emu.wait_idle()
        assert emu.log == []
    (line,) = log_path.read_text().splitlines()
    assert json.loads(line)["method"] == "HEAD"


async def test_log_keeps_the_query_string(emu: Emulator, session: aiohttp.ClientSession) -> None:
    url = emu.endpoints["ena_portal"] + "/filereport?accession=ERR164407&result=read_run"
    async with session.get(url) as response:
        await response.read()
    await emu.wait_idle()
    assert emu.log[-1].query == "accession=ERR164407&result=read_run"
    emu.clear_log()
    assert emu.log == []


async def test_portal_rate_limit(session: aiohttp.ClientSession) -> None:
    async with Emulator(Catalog.demo(), ena=EnaOptions(portal_rate_limit=5)) as emu:
        url = emu.endpoints["ena_portal"] + "/returnFields?result=analysis"

        async def status() -> tuple[int, str | None]:
            async with session.get(url) as response:
                return response.status, response.headers.get("Retry-After")

        results = await asyncio.gather(*(status() for _ in range(8)))
        # The file host is not rate-limited.
        async with session.get(emu.ena.file_url(FASTQ_1), headers={"Range": "bytes=0-0"}) as r:
            assert r.status == 206
        await emu.wait_idle()
        log = emu.log
    assert sorted(results) == [(200, None)] * 5 + [(429, None)] * 3
    assert [e.fault for e in log if e.status == 429] == ["rate_limit"] * 3


async def test_portal_rate_limit_retry_after_option(session: aiohttp.ClientSession) -> None:
    async with Emulator(
        Catalog.demo(), ena=EnaOptions(portal_rate_limit=1, portal_retry_after=1)
    ) as emu:
        url = emu.endpoints["ena_portal"] + "/count?result=read_run"
        statuses = []
        for _ in range(2):
            async with session.get(url) as response:
                statuses.append((response.status, response.headers.get("Retry-After")))
    assert statuses == [(200, None), (429, "1")]


async def test_file_helpers_agree_with_the_catalog(emu: Emulator) -> None:
    file = emu.ena.file("ftp.sra.ebi.ac.uk/" + FASTQ_1)
    assert emu.ena.file("/" + FASTQ_1) == file == emu.catalog.file(FASTQ_1)
    assert len(emu.ena.file_bytes(FASTQ_1)) == file.size


@pytest.mark.slow  # runs the mirror command (and the emulator) in child processes, as a user would
async def test_cli_subprocess_serves_and_stops_on_sigterm(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    catalog_path = tmp_path / "catalog.json"
    catalog_path.write_text(json.dumps(Catalog.demo().to_dict()))
    faults_path = tmp_path / "faults.json"
    faults_path.write_text(json.dumps([Fault(kind="status", status=503, times=1).to_dict()]))
    log_path = tmp_path / "log.jsonl"
    async with emulator_cli(
        tmp_path,
        "--catalog", str(catalog_path), "--faults", str(faults_path), "--seed", "3",
        "--log", str(log_path), "--portal-rate-limit", "0",
    ) as ready:  # fmt: skip
        url = ready["endpoints"]["ena_files"] + "/" + FASTQ_1
        statuses, sizes = [], []
        for _ in range(2):
            async with session.get(url, headers={"Range": "bytes=0-99"}) as response:
                statuses.append(response.status)
                sizes.append(len(await response.read()))
        assert statuses == [503, 206]
        assert sizes[1] == 100
    entries = [json.loads(line) for line in log_path.read_text().splitlines()]
    assert [(e["status"], e["bytes"], e["fault"]) for e in entries] == [
        (503, len("Service Unavailable"), "status"),
        (206, 100, None),
    ]


def test_cli_rejects_a_bad_catalog(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Refused before anything is served: the command's main() in this process says it.
    bad = tmp_path / "bad.json"
    bad.write_text('{"runs": [{"accession": "nope"}]}')
    assert emulator_main(["--catalog", str(bad)]) == 2
    assert "mirror.emulator: cannot load input: " in capsys.readouterr().err
