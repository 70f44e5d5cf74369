"""Secondary (ERP/SRP/DRP, ERS/SRS/DRS) and submission (ERA) accessions.

ENA's own File Downloader sends only primary accessions (PRJ…, SAM…, runs,
experiments, analyses) as ``includeAccessions``; secondary ones are searched by the
fields that hold them, submissions through ``/filereport`` (documented for
``result=read_run``).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import parse_qs, parse_qsl

import pytest
import yaml
from aiohttp import web

import mirror
from mirror import SourceTuning
from mirror.emulator import Catalog, Emulator

from .conftest import FAST_RETRY, ena_manifest, read_index
from .inproc import mirror_main
from .replay import Answer, Replay
from .test_ena_recorded import Portal, planned_files

#: Accessions OR'd into one ``query=``.
QUERY_CHUNK = SourceTuning().ena_query_accessions
SECONDARY = ("ERP124002", "ERS1500001")


def _searches(emu: Emulator) -> list[dict[str, list[str]]]:
    return [
        parse_qs(e.form or "") for e in emu.log if e.path.endswith("/search") and e.method == "POST"
    ]


async def test_secondary_study_and_sample_accessions_are_searched_by_their_fields(
    emulator: Emulator, tmp_path: Path
) -> None:
    catalog = Catalog.demo()
    runs = [r for r in catalog.runs if {r.secondary_study, r.secondary_sample} & set(SECONDARY)]
    analyses = [
        a for a in catalog.analyses if {a.secondary_study, a.secondary_sample} & set(SECONDARY)
    ]
    expected = {f"ena/{r.accession}/{f.path.rsplit('/', 1)[-1]}" for r in runs for f in r.fastq}
    expected |= {
        f"ena/{r.accession}/{f.path.rsplit('/', 1)[-1]}" for r in runs for f in r.submitted
    }
    expected |= {
        f"ena/{a.accession}/{f.path.rsplit('/', 1)[-1]}" for a in analyses for f in a.submitted
    }
    assert len(runs) >= 3
    assert analyses

    doc = ena_manifest(emulator.endpoints, tmp_path, SECONDARY, files=["fastq", "submitted"])
    warnings: list[str] = []
    async with mirror.Mirror(doc, retry=FAST_RETRY) as m:
        async for event in m.events():
            if event.kind == "warning":
                warnings.append(getattr(event, "message", ""))
    assert (m.summary.verified, m.summary.failed, m.summary.exit_code) == (len(expected), 0, 0)
    assert {row["path"] for row in read_index(tmp_path)} == expected
    assert not [w for w in warnings if "no public runs or analyses" in w]

    searches = _searches(emulator)
    for form in searches:
        for accessions in form.get("includeAccessions", []):
            assert not set(accessions.split(",")) & set(SECONDARY), form
    queries = sorted((form["result"][0], form["query"][0]) for form in searches if "query" in form)
    assert queries == [
        ("analysis", 'secondary_sample_accession="ERS1500001"'),
        ("analysis", 'secondary_study_accession="ERP124002"'),
        ("read_run", 'secondary_sample_accession="ERS1500001"'),
        ("read_run", 'secondary_study_accession="ERP124002"'),
    ]


async def test_many_secondary_accessions_are_asked_in_chunks(tmp_path: Path) -> None:
    studies = [f"ERP{100000 + i}" for i in range(QUERY_CHUNK + 5)]
    async with Emulator(Catalog()) as emu:
        doc = ena_manifest(emu.endpoints, tmp_path, studies, files=["fastq"])
        summary = await mirror.run(doc, retry=FAST_RETRY)
        queries = [form["query"][0] for form in _searches(emu)]
    assert summary.planned == 0
    assert [q.count(" OR ") + 1 for q in queries] == [QUERY_CHUNK, 5]
    assert queries[1] == " OR ".join(
        f'secondary_study_accession="{acc}"' for acc in studies[QUERY_CHUNK:]
    )


def _plan(tmp_path: Path, base: str, accessions: list[str]) -> tuple[int, str]:
    manifest = tmp_path / "manifest.yaml"
    doc = {
        "version": 1,
        "dest": str(tmp_path / "data"),
        "endpoints": {"ena_portal": f"{base}/portal", "ena_files": f"{base}/files"},
        # Default families: fastq for runs, submitted and generated for analyses.
        "sources": [{"ena": {"accessions": accessions}}],
    }
    manifest.write_text(yaml.safe_dump(doc))
    done = mirror_main("plan", str(manifest), "--json")
    assert "Traceback" not in done.stderr
    return done.returncode, done.stdout + done.stderr


@pytest.mark.parametrize("analysis_status", [204, 400])
async def test_a_submission_plans_its_runs_through_filereport(
    tmp_path: Path, analysis_status: int
) -> None:
    # Two runs of one submission, as the Portal lists them (a recorded answer).
    portal = Portal("phcue_SRR16298173_4_paired.tsv", "read_run")
    routes = portal.routes()
    asked: list[tuple[str, dict[str, str]]] = []

    def filereport(request: web.Request, body: bytes) -> Answer | None:
        asked.append(("filereport", dict(request.query)))
        return portal.report(request, body)

    def search(request: web.Request, body: bytes) -> Answer | None:
        form = dict(parse_qsl(body.decode()))
        asked.append(("search", form))
        # Whether the Portal lists analyses by submission is not documented: either
        # answer (none, or a refusal) leaves the runs planned.
        text = b"" if analysis_status == 204 else b"Invalid query: submission_accession"
        return Answer(body=text, status=analysis_status, content_type="text/plain")

    routes["/portal/filereport"] = filereport
    routes["/portal/search"] = search
    async with Replay(routes) as replay:
        code, output = await asyncio.to_thread(_plan, tmp_path, replay.base, ["ERA7654321"])
    assert code == 0, output
    got = await planned_files(tmp_path / "data")
    assert [p.path for p in got] == [
        f"ena/SRR1629817{n}/SRR1629817{n}_{mate}.fastq.gz" for n in (3, 4) for mate in (1, 2)
    ]
    (report,) = [params for kind, params in asked if kind == "filereport"]
    assert (report["accession"], report["result"]) == ("ERA7654321", "read_run")
    (query,) = [form for kind, form in asked if kind == "search"]
    assert (query["result"], query["query"]) == ("analysis", 'submission_accession="ERA7654321"')
    if analysis_status == 400:
        assert "ERA7654321: the ENA Portal could not list analyses by submission" in output
