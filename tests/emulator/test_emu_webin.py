"""Webin REST V2 /submit: JSON and XML receipts, auth, duplicates, VALIDATE, bad documents."""

from __future__ import annotations

import datetime
import json
import re
from pathlib import Path

import aiohttp

from mirror.emulator import Catalog, Emulator, WebinOptions

from .webin_helpers import (
    ACCOUNT,
    PASSWORD,
    ROLLED_BACK,
    TEST_INFO,
    accessions,
    auth,
    json_doc,
    submit_json,
    submit_xml,
    xml_doc,
)

RECEIPT_DATE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


async def test_sync_json_receipt(emu: Emulator, session: aiohttp.ClientSession) -> None:
    assert emu.endpoints["webin"].endswith("/ena/submit/webin-v2")
    hold = [{"type": "ADD"}, {"type": "HOLD", "holdUntilDate": "2025-01-12"}]
    emu.set_today(datetime.date(2024, 6, 1))  # the hold date is within two years
    doc = json_doc(
        actions=hold,
        alias="sub-1",
        projects=["comparative-analysis"],
        samples=["stomach_microbiota", "gut"],
        experiments=["illumina-hiSeq"],
        runs=["paired-data"],
        analyses=["assembly"],
    )
    receipt = await submit_json(session, emu, doc)
    assert receipt["success"] is True
    assert RECEIPT_DATE.fullmatch(receipt["receiptDate"])
    assert list(receipt) == [
        "success",
        "receiptDate",
        "analyses",
        "experiments",
        "runs",
        "samples",
        "projects",
        "submission",
        "messages",
        "actions",
    ]
    sample = receipt["samples"][0]
    assert sample["alias"] == "stomach_microbiota"
    assert re.fullmatch(r"ERS\d+", sample["accession"])
    assert sample["status"] == "PRIVATE"
    assert sample["holdUntilDate"] == "2025-01-12Z"
    assert sample["externalAccession"]["db"] == "biosample"
    assert re.fullmatch(r"SAMEA\d+", sample["externalAccession"]["id"])
    project = receipt["projects"][0]
    assert re.fullmatch(r"PRJEB\d+", project["accession"])
    assert project["externalAccession"]["db"] == "study"
    assert re.fullmatch(r"ERP\d+", project["externalAccession"]["id"])
    # Runs, experiments and analyses follow their study: no hold date of their own.
    for plural, prefix in (("experiments", "ERX"), ("runs", "ERR"), ("analyses", "ERZ")):
        (item,) = receipt[plural]
        assert set(item) == {"alias", "accession", "status"}
        assert re.fullmatch(prefix + r"\d+", item["accession"])
    assert receipt["submission"]["alias"] == "sub-1"
    assert re.fullmatch(r"ERA\d+", receipt["submission"]["accession"])
    assert receipt["messages"] == {
        "info": ["All objects in this submission are set to private status (HOLD).", TEST_INFO]
    }
    assert receipt["actions"] == ["ADD", "HOLD"]
    all_accessions = [item["accession"] for p in ("samples", "runs") for item in receipt[p]]
    assert len(set(all_accessions)) == len(all_accessions)
    created = {(o.kind, o.alias): o.accession for o in emu.webin.objects(ACCOUNT)}
    assert created[("sample", "gut")] == accessions(receipt, "samples")["gut"]
    assert len(created) == 6
    assert emu.webin.submissions() == [receipt["submission"]["accession"]]
    stats = emu.webin.stats()
    assert (stats.submits, stats.queued, stats.polls, stats.receipts) == (1, 0, 0, 1)


async def test_sync_xml_receipt(emu: Emulator, session: aiohttp.ClientSession) -> None:
    doc = xml_doc(
        actions='<ACTION><ADD/></ACTION><ACTION><HOLD HoldUntilDate="2026-01-01"/></ACTION>',
        alias="sub-x",
        SAMPLE="s1 s2",
        STUDY="study-1",
        RUN="r1",
    )
    root = await submit_xml(session, emu, doc)
    assert root.tag == "RECEIPT"
    assert root.get("success") == "true"
    assert RECEIPT_DATE.fullmatch(root.get("receiptDate", ""))
    assert [child.tag for child in root] == [
        "RUN",
        "SAMPLE",
        "SAMPLE",
        "STUDY",
        "SUBMISSION",
        "MESSAGES",
        "ACTIONS",
        "ACTIONS",
    ]
    sample = root.find("SAMPLE")
    assert sample is not None
    assert sample.get("alias") == "s1"
    assert sample.get("status") == "PRIVATE"
    assert re.fullmatch(r"ERS\d+", sample.get("accession", ""))
    assert sample.get("holdUntilDate") == "2026-01-01Z"
    ext = sample.find("EXT_ID")
    assert ext is not None
    assert ext.get("type") == "biosample"
    assert re.fullmatch(r"SAMEA\d+", ext.get("accession", ""))
    study = root.find("STUDY")
    assert study is not None
    assert re.fullmatch(r"ERP\d+", study.get("accession", ""))
    study_ext = study.find("EXT_ID")
    assert study_ext is not None
    assert study_ext.get("type") == "Project"
    run = root.find("RUN")
    assert run is not None
    assert run.find("EXT_ID") is None
    assert run.get("holdUntilDate") is None
    submission = root.find("SUBMISSION")
    assert submission is not None
    assert submission.get("alias") == "sub-x"
    assert emu.webin.submissions() == [submission.get("accession")]
    assert [e.text for e in root.iterfind("MESSAGES/INFO")][-1] == TEST_INFO
    assert [e.text for e in root.iterfind("ACTIONS")] == ["ADD", "HOLD"]


async def test_missing_or_wrong_credentials_are_401_and_never_logged(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    log_path = tmp_path / "log.jsonl"
    accounts = {ACCOUNT: PASSWORD, "Webin-99": "other-secret"}
    async with Emulator(Catalog(), webin=WebinOptions(accounts=accounts), log_path=log_path) as emu:
        url = emu.endpoints["webin"] + "/submit"
        body = json.dumps(json_doc(samples=["s1"]))
        for headers in ({}, auth(password="wrong"), auth(account="Webin-1"), auth(password="")):
            sent = {"Content-Type": "application/json", **headers}
            async with session.post(url, data=body, headers=sent) as response:
                assert response.status == 401
                assert response.headers["WWW-Authenticate"].startswith("Basic")
                assert response.headers["Content-Type"] == "application/json"
                error = await response.json()
            assert error["status"] == 401
            assert error["error"] == "Unauthorized"
        sent = {"Content-Type": "application/xml", "Accept": "application/xml"}
        async with session.post(url, data=xml_doc(SAMPLE="s1"), headers=sent) as response:
            assert response.status == 401
            assert response.headers["Content-Type"] == "application/xml"
            assert b"<status>401</status>" in await response.read()
        assert emu.webin.objects() == []
        assert emu.webin.stats().unauthorized == 5
        # The second account works, and the log holds neither password nor document.
        await submit_json(
            session, emu, json_doc(samples=["s1"]), headers=auth("Webin-99", "other-secret")
        )
        await emu.wait_idle()
        assert all(entry.form is None for entry in emu.log)
    text = log_path.read_text()
    assert len(text.splitlines()) == 6
    for secret in (PASSWORD, "other-secret", "s1 title", "Basic "):
        assert secret not in text


async def test_duplicate_alias_fails_the_whole_submission(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    first = await submit_json(session, emu, json_doc(samples=["s1"], experiments=["exp-1"]))
    existing = accessions(first, "experiments")["exp-1"]
    again = await submit_json(session, emu, json_doc(samples=["s2"], experiments=["exp-1"]))
    assert again["success"] is False
    assert again["messages"]["error"] == [
        f'In experiment, alias: "exp-1". The object being added already exists in the '
        f'submission account with accession: "{existing}".'
    ]
    assert again["messages"]["info"] == [ROLLED_BACK, TEST_INFO]
    # Rolled back: nothing got an accession, nothing was created.
    assert accessions(again, "samples") == {"s2": ""}
    assert "accession" not in again["submission"]
    assert sorted(o.alias for o in emu.webin.objects()) == ["exp-1", "s1"]
    assert len(emu.webin.submissions()) == 1
    # So s2 alone goes through; aliases are per type (a run may be called exp-1) and
    # per account (another account may reuse every alias).
    later = await submit_json(session, emu, json_doc(samples=["s2"], runs=["exp-1"]))
    assert later["success"] is True
    assert accessions(later, "samples")["s2"].startswith("ERS")
    async with Emulator(Catalog(), webin=WebinOptions(accounts={"Webin-2": "pw"})) as other:
        receipt = await submit_json(
            session, other, json_doc(experiments=["exp-1"]), headers=auth("Webin-2", "pw")
        )
        assert receipt["success"] is True
    # The same alias twice in one document is refused too.
    twice = await submit_json(session, emu, json_doc(samples=["s9", "s9"]))
    assert twice["success"] is False
    assert "more than one sample" in twice["messages"]["error"][0]


async def test_validate_creates_nothing(emu: Emulator, session: aiohttp.ClientSession) -> None:
    doc = json_doc(actions=[{"type": "VALIDATE"}], alias="dry", samples=["v1"], runs=["r1"])
    receipt = await submit_json(session, emu, doc)
    assert receipt["success"] is True
    assert receipt["samples"] == [{"alias": "v1", "status": "PRIVATE"}]
    assert receipt["runs"] == [{"alias": "r1", "status": "PRIVATE"}]
    assert receipt["submission"] == {"alias": "dry"}
    assert receipt["messages"] == {"info": [TEST_INFO]}
    assert receipt["actions"] == ["VALIDATE"]
    assert emu.webin.objects() == []
    assert emu.webin.submissions() == []
    # A later ADD of the same aliases (and submission alias) succeeds.
    added = await submit_json(session, emu, json_doc(alias="dry", samples=["v1"], runs=["r1"]))
    assert added["success"] is True
    assert accessions(added, "runs")["r1"].startswith("ERR")
    # Validating against what exists reports the duplicate, still creating nothing.
    doc = json_doc(actions=[{"type": "ADD"}, {"type": "VALIDATE"}], samples=["v1", "v2"])
    clash = await submit_json(session, emu, doc)
    assert clash["success"] is False
    assert "already exists" in clash["messages"]["error"][0]
    assert ROLLED_BACK not in clash["messages"]["info"]
    assert len(emu.webin.objects()) == 2


async def test_malformed_documents_get_a_failed_receipt(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    url = emu.endpoints["webin"] + "/submit"
    cases = [
        ("application/json", b'{"samples": [{"alias": "s1"}', "json"),
        ("application/json", b'["not", "an", "object"]', "json"),
        ("application/json", json.dumps(json_doc(actions=[{"type": "EXPLODE"}])).encode(), "json"),
        ("application/xml", b"<WEBIN><SAMPLE_SET><SAMPLE alias='s1'></SAMPLE_SET>", "xml"),
        ("application/xml", b"<SAMPLE_SET/>", "xml"),
        ("text/plain", b"hello", "json"),
    ]
    for content_type, body, fmt in cases:
        headers = {"Content-Type": content_type, **auth()}
        async with session.post(url, data=body, headers=headers) as response:
            assert response.status == 200, body
            answer = await response.read()
        if fmt == "json":
            receipt = json.loads(answer)
            assert receipt["success"] is False, body
            assert receipt["messages"]["error"], body
            assert receipt["messages"]["info"] == [TEST_INFO]
        else:
            assert b'success="false"' in answer
            assert b"<ERROR>Invalid submission XML" in answer
    # Well-formed, but nothing in it (a misspelt key is ignored, as Jackson ignores it).
    empty = await submit_json(session, emu, {"sample": [{"alias": "s1"}]})
    assert empty["messages"]["error"] == ["The submission contains no objects."]
    assert emu.webin.objects() == []


async def test_multipart_file_part_as_webin_cli_sends_it(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    url = emu.endpoints["webin"] + "/submit/"  # webin-cli's URL, trailing slash and all
    # RestTemplate's Accept for a String answer: JSON first, yet an XML file is answered
    # with an XML receipt, which webin-cli parses.
    headers = {"Accept": "text/plain, application/json, application/*+json, */*", **auth()}

    def form(data: bytes, filename: str | None, name: str = "file") -> aiohttp.MultipartWriter:
        writer = aiohttp.MultipartWriter("form-data")
        part = writer.append(data, {"Content-Type": "application/octet-stream"})
        if filename is None:
            part.set_content_disposition("form-data", name=name)
        else:
            part.set_content_disposition("form-data", name=name, filename=filename)
        return writer

    async with session.post(
        url, data=form(xml_doc(RUN="cli-run"), "webin-submission.xml"), headers=headers
    ) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "application/xml"
        assert b'success="true"' in await response.read()
    json_file = json.dumps(json_doc(samples=["cli-sample"])).encode()
    async with session.post(
        url, data=form(json_file, "webin-submission.json"), headers=headers
    ) as response:
        assert (await response.json())["success"] is True
    # No filename, or no part called "file": 400, and nothing submitted.
    for writer in (form(json_file, None), form(json_file, "x.json", name="document")):
        async with session.post(url, data=writer, headers=headers) as response:
            assert response.status == 400
            assert (await response.json())["status"] == 400
    assert sorted(o.alias for o in emu.webin.objects()) == ["cli-run", "cli-sample"]
