"""Failures reach the user as one line each, and never cost the other sources their files.

Each test runs the ``mirror`` command (its ``main``, in this process) against the
emulator on loopback, and checks the exit code, the one line naming the failing source (or file)
with the service's own message, that no traceback is printed, and that every file of
the sources that did not fail is verified on disk.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from mirror import RetryPolicy, Tuning
from mirror.emulator import Catalog, EgaOptions, Fault, WebinOptions

from .conftest import read_index
from .inproc import Background, mirror_main, tune_runs
from .replay import Answer, Replay

INVALID_CHOICE = "Select a valid choice. 6.0 is not one of the available choices."
ENA_RUN = "ERR120000001"


def manifest(path: Path, endpoints: dict[str, str], *sources: dict[str, Any]) -> Path:
    doc = {
        "version": 1,
        "dest": "data",
        "workers": 4,
        "endpoints": endpoints,
        "sources": list(sources),
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def ena(*accessions: str) -> dict[str, Any]:
    return {"ena": {"accessions": list(accessions), "files": ["fastq"]}}


def mgnify(**options: Any) -> dict[str, Any]:
    return {"mgnify": {"studies": ["MGYS00005001"], **options}}


def lines_with(text: str, output: str) -> list[str]:
    return [line for line in output.splitlines() if text in line]


def assert_verified(dest: Path, source: str, accessions: set[str]) -> list[dict[str, str]]:
    """Every file of ``source`` in ``index.tsv`` is verified, on disk, with its MD5."""
    rows = [r for r in read_index(dest) if r["source"] == source]
    assert {r["accession"] for r in rows} >= accessions
    for row in rows:
        assert row["status"] == "verified", row
        data = (dest / row["path"]).read_bytes()
        assert len(data) == int(row["bytes"])
        assert hashlib.md5(data).hexdigest() == row["md5"]
    return rows


def test_mgnify_400_is_one_line_and_the_ena_files_are_all_verified(
    emulator_thread: Any, tmp_path: Path
) -> None:
    emu = emulator_thread(Catalog.demo())
    m = manifest(tmp_path / "m.yaml", emu.endpoints, mgnify(pipeline_version="6.0"), ena(ENA_RUN))
    for flags in ((), ("-q",)):
        run = mirror_main("run", str(m), *flags)
        assert run.returncode == 1, run.stderr
        assert "Traceback" not in run.stderr
        failure = lines_with(INVALID_CHOICE, run.stderr)
        assert len(failure) == 1, run.stderr
        assert "sources[0].mgnify" in failure[0]
        assert "MGYS00005001" in failure[0]
        rows = assert_verified(tmp_path / "data", "ena", {ENA_RUN})
        assert len(rows) == 2
    # Planning stops alike: the same line, the ENA files still counted.
    for flags in ((), ("-q",)):
        plan = mirror_main("plan", str(m), *flags)
        assert plan.returncode == 1
        assert "Traceback" not in plan.stderr
        assert len(lines_with(INVALID_CHOICE, plan.stderr)) == 1, plan.stderr
        assert plan.stdout.startswith("2 files")
    as_json = json.loads(mirror_main("plan", str(m), "--json").stdout.splitlines()[-1])
    assert as_json["files"] == 2
    assert [INVALID_CHOICE in e for e in as_json["errors"]] == [True]


def test_pipeline_version_5_is_asked_as_5_0(emulator_thread: Any, tmp_path: Path) -> None:
    emu = emulator_thread(Catalog.demo())
    m = manifest(tmp_path / "m.yaml", emu.endpoints, mgnify(pipeline_version="5"))
    plan = mirror_main("plan", str(m))
    assert plan.returncode == 0, plan.stderr
    assert not plan.stdout.startswith("0 files")
    asked = [e["query"] for e in emu.log() if e["path"].endswith("/analyses")]
    assert asked
    assert all("pipeline_version=5.0" in q for q in asked)


def test_mgnify_500_after_retries_is_one_line(
    emulator_thread: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    faults = [Fault(kind="status", status=500, match="*/studies/*/analyses")]
    emu = emulator_thread(Catalog.demo(), faults=faults)
    m = manifest(tmp_path / "m.yaml", emu.endpoints, ena(ENA_RUN), mgnify())
    # The command line, with the retry waits shortened (production waits minutes).
    tune_runs(monkeypatch, Tuning(retry=RetryPolicy(attempts=3, base=0.01, cap=0.02)))
    run = mirror_main("run", str(m))
    assert run.returncode == 1, run.stderr
    assert "Traceback" not in run.stderr
    failure = lines_with("HTTP 500", run.stderr)
    assert len(failure) == 1, run.stderr
    assert "sources[1].mgnify" in failure[0]
    analyses = [e for e in emu.log() if e["path"].endswith("/analyses")]
    assert len(analyses) == 3
    assert_verified(tmp_path / "data", "ena", {ENA_RUN})


def test_two_ena_entries_write_one_merged_runs_table(emulator_thread: Any, tmp_path: Path) -> None:
    emu = emulator_thread(Catalog.demo())
    m = manifest(tmp_path / "m.yaml", emu.endpoints, ena(ENA_RUN), ena("PRJEB40001"))
    run = mirror_main("run", str(m), "-q")
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr
    study = [r for r in Catalog.demo().runs if r.study == "PRJEB40001"]
    assert_verified(tmp_path / "data", "ena", {ENA_RUN, *(r.accession for r in study if r.fastq)})
    table = (tmp_path / "data/metadata/ena/runs.tsv").read_text().splitlines()
    assert table[0].startswith("run_accession\t")
    listed = [line.split("\t", 1)[0] for line in table[1:]]
    expected = {ENA_RUN, *(r.accession for r in study)}
    assert sorted(listed) == sorted(expected), "each run once, from both entries"
    names = sorted(p.name for p in (tmp_path / "data/metadata/ena").iterdir())
    assert names == ["runinfo_ftp.tsv", "runs.tsv"]
    # fetchngs's run-info table is merged the same way: each run once.
    runinfo = (tmp_path / "data/metadata/ena/runinfo_ftp.tsv").read_text().splitlines()
    assert sorted(line.split("\t")[1] for line in runinfo[1:]) == sorted(expected)


# --- Webin ------------------------------------------------------------------------------

USER, PASSWORD = "Webin-12345", "webin-S3CRET-pw"
WEBIN = WebinOptions(accounts={USER: PASSWORD})


def webin_doc(path: Path) -> Path:
    doc = {
        "submission": {"alias": "sub-f", "actions": [{"type": "ADD"}]},
        "projects": [{"alias": "proj-f", "name": "P", "title": "Soil", "description": "Soil"}],
    }
    path.write_text(json.dumps(doc))
    return path


def submit(emu: Any, password: str, *args: str) -> subprocess.CompletedProcess[str]:
    return mirror_main(
        "submit",
        "--endpoint",
        emu.endpoints["webin"],
        "--poll-interval",
        "0.05",
        *args,
        env={"WEBIN_USERNAME": USER, "WEBIN_PASSWORD": password},
    )


def webin_posts(emu: Any) -> list[dict[str, Any]]:
    return [e for e in emu.log() if e["method"] == "POST" and "/submit" in e["path"]]


def test_refused_webin_password_exits_2_with_one_line(emulator_thread: Any, tmp_path: Path) -> None:
    emu = emulator_thread(Catalog(), webin=WEBIN)
    docs = [webin_doc(tmp_path / "a.json"), webin_doc(tmp_path / "b.json")]
    for mode in ((), ("--queue",)):
        out = submit(emu, "wrong-password", *mode, *map(str, docs))
        assert out.returncode == 2, out.stderr
        assert "Traceback" not in out.stderr
        refused = lines_with("refused", out.stderr)
        assert len(refused) == 1, out.stderr
        assert USER in refused[0]
        assert "wrong-password" not in out.stderr


def test_malformed_document_exits_2_naming_file_line_and_column(
    emulator_thread: Any, tmp_path: Path
) -> None:
    emu = emulator_thread(Catalog(), webin=WEBIN)
    good = webin_doc(tmp_path / "good.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{\n  "submission": {\n    "alias": "x",,\n  }\n}\n')
    xml = tmp_path / "bad.xml"
    xml.write_text("<WEBIN>\n<SAMPLE_SET></SAMPLE>\n</WEBIN>\n")
    for doc, where in ((bad, f"{bad}:3: not valid JSON"), (xml, f"{xml}:2: not well-formed XML")):
        out = submit(emu, PASSWORD, "--validate", str(good), str(doc))
        assert out.returncode == 2, out.stderr
        assert "Traceback" not in out.stderr
        error = lines_with(where, out.stderr)
        assert len(error) == 1, out.stderr
        assert "(column " in error[0]
    # Checked before anything is sent: not even the good document went out.
    assert webin_posts(emu) == []


def test_a_submission_whose_answer_is_lost_is_never_sent_twice(
    emulator_thread: Any, tmp_path: Path
) -> None:
    faults = [
        Fault(kind="reset", match="*/submit", times=1),
        Fault(kind="status", status=500, match="*/submit/queue", times=1),
    ]
    emu = emulator_thread(Catalog(), webin=WEBIN, faults=faults)
    for mode in ((), ("--queue",)):
        doc = webin_doc(tmp_path / f"doc{len(mode)}.json")
        before = len(webin_posts(emu))
        out = submit(emu, PASSWORD, *mode, str(doc))
        assert out.returncode == 1, out.stderr
        assert "Traceback" not in out.stderr
        line = lines_with("not sent again", out.stderr)
        assert len(line) == 1, out.stderr
        assert str(doc) in line[0]
        assert len(webin_posts(emu)) == before + 1


def test_ega_refusing_the_password_costs_only_the_ega_source(
    emulator_thread: Any, tmp_path: Path
) -> None:
    ega_users = EgaOptions(users={"someone@example.org": "right-password"})
    emu = emulator_thread(Catalog.demo(), ega=ega_users)
    ega = {"ega": {"datasets": ["EGAD00010000805"], "protocol": "data-api"}}
    m = manifest(tmp_path / "m.yaml", emu.endpoints, ega, ena(ENA_RUN))
    env = {"EGA_USERNAME": "someone@example.org", "EGA_PASSWORD": "wrong-password"}
    run = mirror_main("run", str(m), "-q", env=env)
    # Files were downloaded, so this is not "a credentials error, nothing downloaded" (2).
    assert run.returncode == 1, run.stderr
    assert "Traceback" not in run.stderr
    refused = lines_with("sources[0].ega", run.stderr)
    assert len(refused) == 1, run.stderr
    assert "wrong-password" not in run.stderr
    assert_verified(tmp_path / "data", "ena", {ENA_RUN})
    # With nothing else to download, the same refusal is a credentials error.
    alone = manifest(tmp_path / "alone.yaml", emu.endpoints, ega)
    only = mirror_main("run", str(alone), "-q", env=env)
    assert only.returncode == 2, only.stderr
    assert len(lines_with("sources[0].ega", only.stderr)) == 1


def test_the_recorded_mgnify_400_is_one_line_with_its_message(
    background: Background, tmp_path: Path
) -> None:
    # The answer MGnify really gives for pipeline_version=5 (recorded), replayed.
    path = "/metagenomics/api/v1/studies/MGYS00000001/analyses"
    recorded = Answer.recorded("mgnify/study_MGYS00000001_analyses_pv5_invalid.json", status=400)
    replay = background.enter(lambda: Replay({path: recorded}))
    m = tmp_path / "m.yaml"
    doc = {
        "version": 1,
        "dest": "data",
        "endpoints": {"mgnify": f"{replay.base}/metagenomics/api/v1"},
        "sources": [{"mgnify": {"studies": ["MGYS00000001"], "pipeline_version": "6.0"}}],
    }
    m.write_text(yaml.safe_dump(doc))
    done = mirror_main("plan", str(m))
    stderr = done.stderr
    assert done.returncode == 1, stderr
    assert "Traceback" not in stderr
    line = lines_with("Select a valid choice. 5 is not one of the available choices.", stderr)
    assert len(line) == 1, stderr
    assert "sources[0].mgnify" in line[0]
    assert "HTTP 400" in line[0]
    assert [p for _, p, _, _ in replay.log] == [path]
    assert done.stdout.startswith("0 files")
