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

from mirror._cli import main
from mirror.emulator import Catalog, Emulator, WebinOptions

from .test_cli import wait_for
from .threaded import serving

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


def webin(log_path: Path, poll_pending: int = 2) -> Emulator:
    """The emulator's Webin, its request log also kept as JSON lines at ``log_path``."""
    options = WebinOptions(accounts={USER: PASSWORD}, poll_pending=poll_pending)
    return Emulator(Catalog(), webin=options, log_path=log_path)


class Submit:
    """``mirror submit`` against one emulator, in this process (its output in ``capsys``)."""

    def __init__(
        self, emu: Emulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        self.endpoint = emu.endpoints["webin"]
        self.capsys = capsys
        for name, value in CREDS.items():
            monkeypatch.setenv(name, value)

    def __call__(self, *args: str) -> tuple[int, str, str]:
        """Exit code, stdout, stderr."""
        code = main(["submit", "--endpoint", self.endpoint, "--poll-interval", "0.01", *args])
        out = self.capsys.readouterr()
        return code, out.out, out.err


def test_sync_queue_and_duplicate_alias(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    log_path = tmp_path / "requests.jsonl"
    with serving(webin(log_path)) as served:
        emu = served.value
        submit = Submit(emu, monkeypatch, capsys)
        doc = write_doc(tmp_path / "doc.json", "a")
        code, out, err = sync = submit(str(doc))
        assert code == 0, err + out
        receipt = json.loads((tmp_path / "doc.receipt.json").read_text())
        assert receipt["success"] is True
        assert receipt["samples"][0]["alias"] == "sample-a"
        accession = receipt["samples"][0]["accession"]
        assert accession in out

        code, out, err = queued = submit("--queue", str(write_doc(tmp_path / "doc2.json", "b")))
        assert code == 0, err + out
        assert json.loads((tmp_path / "doc2.receipt.json").read_text())["success"] is True
        assert not (tmp_path / "doc2.json.webin-submission.json").exists()
        polls = [e for e in emu.log if "/submit/poll/" in e.path]
        assert [e.status for e in polls] == [202, 202, 200]

        code, out, err = again = submit(str(doc))
        assert code == 1
        assert "already exists in the submission account with accession" in out
        assert f"(the alias already exists as {accession}" in out
    for _, out, err in (sync, queued, again):
        assert PASSWORD not in out + err
    assert PASSWORD not in log_path.read_text()


@pytest.mark.slow  # kills a child process while it polls, and resumes: real processes and signals
def test_killed_while_polling_resumes_the_same_submission(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Eight polls answered 202 before the receipt: polling every 0.02 s growing by half
    # each time, the receipt comes a second after the first poll, and the kill after
    # the second poll well before it.
    with serving(webin(tmp_path / "requests.jsonl", poll_pending=8)) as served:
        emu = served.value
        doc = write_doc(tmp_path / "doc.json", "q")
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mirror",
                "submit",
                "--queue",
                "--poll-interval",
                "0.02",
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
                    sum("/submit/poll/" in e.path for e in emu.log) >= 2 or proc.poll() is not None
                ),
                "polling",
            )
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.wait()
        state = json.loads((tmp_path / "doc.json.webin-submission.json").read_text())
        assert PASSWORD not in json.dumps(state)
        code, _, err = Submit(emu, monkeypatch, capsys)("--queue", str(doc))
        assert code == 0, err
        assert f"resuming queued submission {state['submissionId']}" in err
        queued = [e for e in emu.log if e.path.endswith("/submit/queue")]
    assert len(queued) == 1  # one submission, polled by both runs
    assert json.loads((tmp_path / "doc.receipt.json").read_text())["success"] is True


def test_validate_creates_nothing_and_xml_gets_an_xml_receipt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with serving(webin(tmp_path / "requests.jsonl")) as served:
        submit = Submit(served.value, monkeypatch, capsys)
        doc = write_doc(tmp_path / "doc.json", "v")
        code, out, _ = submit("--validate", str(doc))
        assert code == 0, out
        assert json.loads((tmp_path / "doc.receipt.json").read_text())["success"] is True
        code, out, _ = submit(str(doc))  # nothing was created, so the same aliases still work
        assert code == 0, out

        xml = tmp_path / "study.xml"
        xml.write_text(
            '<?xml version="1.0" encoding="UTF-8"?><WEBIN>'
            '<SUBMISSION alias="sub-x"><ACTIONS><ACTION><ADD/></ACTION></ACTIONS></SUBMISSION>'
            '<SAMPLE_SET><SAMPLE alias="sample-x"><TITLE>soil</TITLE><SAMPLE_NAME>'
            "<TAXON_ID>410658</TAXON_ID><SCIENTIFIC_NAME>soil metagenome</SCIENTIFIC_NAME>"
            "</SAMPLE_NAME></SAMPLE></SAMPLE_SET></WEBIN>"
        )
        code, out, _ = submit(str(xml))
        assert code == 0, out
    assert (tmp_path / "study.receipt.xml").read_text().lstrip().startswith("<?xml")


def test_missing_credentials_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = write_doc(tmp_path / "doc.json", "c")
    monkeypatch.setenv("WEBIN_USERNAME", "")
    monkeypatch.setenv("WEBIN_PASSWORD", "")
    monkeypatch.setenv("NETRC", str(tmp_path / "none"))
    assert main(["submit", "--endpoint", "http://127.0.0.1:9/x", str(doc)]) == 2
    assert "WEBIN_USERNAME and WEBIN_PASSWORD are not set" in capsys.readouterr().err
