"""mirror submit against the emulated Webin REST V2: receipts, queues, resumes, duplicates."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mirror.emulator import Catalog

from .conftest import mirror_cmd
from .test_cli import wait_for

USER, PASSWORD = "Webin-12345", "webin-S3CRET-pw"
CREDS = {"WEBIN_USERNAME": USER, "WEBIN_PASSWORD": PASSWORD}


def document(tag: str) -> dict[str, Any]:
    return {
        "submission": {"alias": f"sub-{tag}", "accession": "", "actions": [{"type": "ADD"}]},
        "projects": [
            {
                "alias": f"proj-{tag}",
                "name": "A project",
                "title": "Soil",
                "description": "Soil metagenomes",
            }
        ],
        "samples": [
            {
                "alias": f"sample-{tag}",
                "title": "soil 1",
                "organism": {"taxonId": "410658", "scientificName": "soil metagenome"},
                "attributes": [{"tag": "collection date", "value": "2024-05-01"}],
            }
        ],
    }


def write_doc(path: Path, tag: str) -> Path:
    path.write_text(json.dumps(document(tag)))
    return path


def submit(emu: Any, *args: str) -> subprocess.CompletedProcess[str]:
    return mirror_cmd(
        "submit", "--endpoint", emu.endpoints["webin"], "--poll-interval", "0.05", *args, env=CREDS
    )


@pytest.mark.slow  # runs the mirror command (and the emulator) in child processes, as a user would
def test_sync_queue_and_duplicate_alias(emulator_process: Any, tmp_path: Path) -> None:
    emu = emulator_process(Catalog(), "--webin-account", f"{USER}:{PASSWORD}")
    doc = write_doc(tmp_path / "doc.json", "a")
    sync = submit(emu, str(doc))
    assert sync.returncode == 0, sync.stderr + sync.stdout
    receipt = json.loads((tmp_path / "doc.receipt.json").read_text())
    assert receipt["success"] is True
    assert receipt["samples"][0]["alias"] == "sample-a"
    accession = receipt["samples"][0]["accession"]
    assert accession in sync.stdout

    queued = submit(emu, "--queue", str(write_doc(tmp_path / "doc2.json", "b")))
    assert queued.returncode == 0, queued.stderr + queued.stdout
    assert json.loads((tmp_path / "doc2.receipt.json").read_text())["success"] is True
    assert not (tmp_path / "doc2.json.webin-submission.json").exists()
    polls = [e for e in emu.log() if "/submit/poll/" in e["path"]]
    assert [e["status"] for e in polls] == [202, 202, 200]

    again = submit(emu, str(doc))
    assert again.returncode == 1
    assert "already exists in the submission account with accession" in again.stdout
    assert f"(the alias already exists as {accession}" in again.stdout
    for out in (sync, queued, again):
        assert PASSWORD not in out.stdout + out.stderr
    assert PASSWORD not in emu.log_path.read_text()


@pytest.mark.slow  # kills a child process mid-transfer and resumes: real processes and signals
def test_killed_while_polling_resumes_the_same_submission(
    emulator_process: Any, tmp_path: Path
) -> None:
    emu = emulator_process(
        Catalog(), "--webin-account", f"{USER}:{PASSWORD}", "--webin-poll-pending", "6"
    )
    doc = write_doc(tmp_path / "doc.json", "q")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mirror",
            "submit",
            "--queue",
            "--poll-interval",
            "0.05",
            "--endpoint",
            emu.endpoints["webin"],
            str(doc),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **CREDS},
    )
    try:
        wait_for(
            lambda: (
                sum("/submit/poll/" in e["path"] for e in emu.log()) >= 2 or proc.poll() is not None
            ),
            "polling",
        )
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    state = json.loads((tmp_path / "doc.json.webin-submission.json").read_text())
    assert PASSWORD not in json.dumps(state)
    again = submit(emu, "--queue", str(doc))
    assert again.returncode == 0, again.stderr + again.stdout
    assert f"resuming queued submission {state['submissionId']}" in again.stderr
    queued = [e for e in emu.log() if e["path"].endswith("/submit/queue")]
    assert len(queued) == 1  # one submission, polled by both runs
    assert json.loads((tmp_path / "doc.receipt.json").read_text())["success"] is True


@pytest.mark.slow  # runs the mirror command (and the emulator) in child processes, as a user would
def test_validate_creates_nothing_and_xml_gets_an_xml_receipt(
    emulator_process: Any, tmp_path: Path
) -> None:
    emu = emulator_process(Catalog(), "--webin-account", f"{USER}:{PASSWORD}")
    doc = write_doc(tmp_path / "doc.json", "v")
    dry = submit(emu, "--validate", str(doc))
    assert dry.returncode == 0, dry.stdout
    assert json.loads((tmp_path / "doc.receipt.json").read_text())["success"] is True
    real = submit(emu, str(doc))  # nothing was created, so the same aliases still work
    assert real.returncode == 0, real.stdout

    xml = tmp_path / "study.xml"
    xml.write_text(
        '<?xml version="1.0" encoding="UTF-8"?><WEBIN>'
        '<SUBMISSION alias="sub-x"><ACTIONS><ACTION><ADD/></ACTION></ACTIONS></SUBMISSION>'
        '<SAMPLE_SET><SAMPLE alias="sample-x"><TITLE>soil</TITLE><SAMPLE_NAME>'
        "<TAXON_ID>410658</TAXON_ID><SCIENTIFIC_NAME>soil metagenome</SCIENTIFIC_NAME>"
        "</SAMPLE_NAME></SAMPLE></SAMPLE_SET></WEBIN>"
    )
    out = submit(emu, str(xml))
    assert out.returncode == 0, out.stdout
    assert (tmp_path / "study.receipt.xml").read_text().lstrip().startswith("<?xml")


@pytest.mark.slow  # runs the mirror command in a child process, as a user would
def test_missing_credentials_exit_2(tmp_path: Path) -> None:
    doc = write_doc(tmp_path / "doc.json", "c")
    env = {"WEBIN_USERNAME": "", "WEBIN_PASSWORD": "", "NETRC": str(tmp_path / "none")}
    out = mirror_cmd("submit", "--endpoint", "http://127.0.0.1:9/x", str(doc), env=env)
    assert out.returncode == 2
    assert "WEBIN_USERNAME and WEBIN_PASSWORD are not set" in out.stderr
