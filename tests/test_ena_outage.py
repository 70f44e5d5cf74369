"""ENA Portal outages and accessions that match nothing must not end as a quiet success."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

import mirror
from mirror import RetryPolicy
from mirror._exceptions import UnexpectedAnswer
from mirror.emulator import Catalog, Emulator, Fault
from mirror.sources.ena import ReportParser

from .conftest import FAST_RETRY, ena_manifest, read_index
from .inproc import FAST_BACKOFF, mirror_main, tune_runs
from .replay import Answer, Chooser, Replay

HTML = b"<!DOCTYPE html>\n<html><head><title>Maintenance</title></head><body>back soon</body>"


def write(path: Path, doc: Any) -> Path:
    path.write_text(yaml.safe_dump(doc, sort_keys=False) if path.suffix == ".yaml" else doc)
    return path


def searches(log: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in log if e["path"].endswith("/search")]


def test_a_maintenance_page_on_every_attempt_fails_the_source(
    emulator_thread: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = emulator_thread(Catalog.demo(), faults=[Fault(kind="maintenance", match="*/search")])
    dest = tmp_path / "data"
    manifest = write(tmp_path / "m.yaml", ena_manifest(emu.endpoints, dest, ["ERR4080001"]))
    # Every attempt is spent; the waits between them are not what is tested.
    tune_runs(monkeypatch, FAST_BACKOFF)

    run = mirror_main("run", str(manifest), "-q")

    assert run.returncode == 1, run.stderr
    assert "Traceback" not in run.stderr
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, run.stderr
    (error,) = errors
    assert "ena" in error
    assert f"{emu.endpoints['ena_portal']}/search" in error
    assert "HTML page" in error
    # Nothing read from the page was taken for a row: no warning about it, nothing planned.
    assert "run_accession" not in run.stderr
    assert "no public runs" not in run.stderr
    assert len(searches(emu.log())) == RetryPolicy().attempts
    assert read_index(dest) == []
    assert not (dest / "ena").exists()


def test_a_maintenance_page_once_then_the_answer_is_a_normal_run(
    emulator_thread: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    faults = [Fault(kind="maintenance", match="*/search", times=1)]
    emu = emulator_thread(Catalog.demo(), faults=faults)
    dest = tmp_path / "data"
    manifest = write(tmp_path / "m.yaml", ena_manifest(emu.endpoints, dest, ["ERR4080001"]))
    tune_runs(monkeypatch, FAST_BACKOFF)

    run = mirror_main("run", str(manifest), "-q")

    assert run.returncode == 0, run.stderr
    assert [e["fault"] for e in searches(emu.log())] == ["maintenance", None]
    rows = read_index(dest)
    assert {r["path"] for r in rows} == {
        "ena/ERR4080001/ERR4080001_1.fastq.gz",
        "ena/ERR4080001/ERR4080001_2.fastq.gz",
    }
    assert {r["status"] for r in rows} == {"verified"}


@pytest.mark.parametrize(
    ("body", "says"),
    [
        pytest.param(HTML, "an HTML page", id="html"),
        pytest.param(b"<html><body>502 Bad Gateway</body></html>", "an HTML page", id="proxy"),
        pytest.param(b'{"status": "down for maintenance"}', "a JSON object", id="json-object"),
        pytest.param(b'[{"message": "no"}]', "without run_accession", id="json-rows"),
        pytest.param(b"[1, 2, 3]", "not a report row", id="json-numbers"),
        pytest.param(
            b"\x89PNG\r\n\x1a\n\x00\x00garbage", "without the run_accession column", id="garbage"
        ),
        pytest.param(b"Service Unavailable\n", "without the run_accession column", id="text"),
        pytest.param(b"[{", "JSON", id="json-cut"),
    ],
)
def test_an_answer_that_is_not_a_report_is_a_transient_failure(body: bytes, says: str) -> None:
    def parse() -> None:
        parser = ReportParser(key="run_accession")
        # Fed in small pieces, as a slow server sends them.
        for i in range(0, len(body), 3):
            parser.feed(body[i : i + 3])
        parser.close()

    with pytest.raises(UnexpectedAnswer) as caught:
        parse()
    assert caught.value.retryable
    assert says in str(caught.value)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"run_accession\tfastq_ftp\n", id="header-only"),
        pytest.param(b"[]", id="empty-json"),
    ],
)
def test_a_report_with_no_rows_is_still_a_report(body: bytes) -> None:
    parser = ReportParser(key="run_accession")
    assert parser.feed(body) == []
    assert parser.close() == []


def test_an_accession_that_matches_nothing_fails_its_entry(
    emulator_thread: Any, tmp_path: Path
) -> None:
    emu = emulator_thread(Catalog.demo())
    dest = tmp_path / "data"
    typos = ["ERR4080009", "PRJEB99999"]
    manifest = write(tmp_path / "m.yaml", ena_manifest(emu.endpoints, dest, typos))

    run = mirror_main("run", str(manifest), "-q")

    assert run.returncode == 1, run.stderr
    assert "Traceback" not in run.stderr
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, run.stderr
    assert "matched nothing" in errors[0]
    assert "ERR4080009, PRJEB99999" in errors[0]
    assert read_index(dest) == []

    plan = mirror_main("plan", str(manifest))
    assert plan.returncode == 1
    assert "ERR4080009" in plan.stderr


def test_one_typo_beside_a_good_accession_is_named_but_the_rest_downloads(
    emulator_thread: Any, tmp_path: Path
) -> None:
    emu = emulator_thread(Catalog.demo())
    dest = tmp_path / "data"
    manifest = write(
        tmp_path / "m.yaml", ena_manifest(emu.endpoints, dest, ["ERR4080001", "ERR4080009"])
    )

    run = mirror_main("run", str(manifest))

    assert run.returncode == 0, run.stderr
    warned = [line for line in run.stderr.splitlines() if "ERR4080009" in line]
    assert len(warned) == 1
    assert "matched nothing" in warned[0]
    assert {r["status"] for r in read_index(dest)} == {"verified"}


def test_runs_with_none_of_the_files_asked_for_fail_the_entry(
    emulator_thread: Any, tmp_path: Path
) -> None:
    # ERR4080001 has FASTQs and an SRA file, no submitted files.
    emu = emulator_thread(Catalog.demo())
    dest = tmp_path / "data"
    doc = ena_manifest(emu.endpoints, dest, ["ERR4080001"], files=["submitted"])
    manifest = write(tmp_path / "m.yaml", doc)

    run = mirror_main("run", str(manifest), "-q")

    assert run.returncode == 1, run.stderr
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, run.stderr
    assert "no submitted files" in errors[0]
    assert "fastq" in errors[0]  # what the run does have


async def test_a_maintenance_page_on_filereport_fails_the_source(tmp_path: Path) -> None:
    # A submission's runs come from /filereport: the same check, the same retries.
    def filereport(request: web.Request, body: bytes) -> Answer:
        return Answer(body=HTML, content_type="text/html")

    def search(request: web.Request, body: bytes) -> Answer:
        return Answer(body=b"", status=204, content_type="text/plain")

    routes: dict[str, Answer | Chooser] = {
        "/portal/returnFields": lambda request, body: Answer.recorded(
            f"ena/returnFields_{request.query['result']}.json"
        ),
        "/portal/filereport": filereport,
        "/portal/search": search,
    }
    async with Replay(routes) as replay:
        doc = {
            "version": 1,
            "dest": str(tmp_path),
            "endpoints": {"ena_portal": f"{replay.base}/portal", "ena_files": replay.base},
            "sources": [{"ena": {"accessions": ["ERA7654321"]}}],
        }
        summary = await mirror.run(doc, retry=FAST_RETRY)
    (error,) = summary.errors
    assert error == (
        f"sources[0].ena: ENA Portal {replay.base}/portal/filereport kept failing "
        f"({FAST_RETRY.attempts} attempts): the Portal answered 200 with an HTML page, "
        "not a report (maintenance?)"
    )
    assert summary.exit_code == 1
    assert [path for _, path, _, _ in replay.log].count("/portal/filereport") == (
        FAST_RETRY.attempts
    )
    assert read_index(tmp_path) == []


async def test_a_maintenance_page_on_return_fields_names_the_portal(tmp_path: Path) -> None:
    faults = [Fault(kind="maintenance", match="*/returnFields")]
    async with Emulator(Catalog.demo(), faults=faults, seed=7) as emu:
        doc = ena_manifest(emu.endpoints, tmp_path, ["ERR4080001"])
        summary = await mirror.run(doc, retry=FAST_RETRY)
        asked = [e for e in emu.log if e.path.endswith("/returnFields")]
        portal = emu.endpoints["ena_portal"]
    (error,) = summary.errors
    assert error.startswith(f"sources[0].ena: {portal}/returnFields")
    assert "expected JSON, got text/html" in error
    assert summary.exit_code == 1
    # A page that is not JSON at all is not cured by asking again at once (see _http).
    assert len(asked) == 1
