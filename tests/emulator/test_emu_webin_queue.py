"""Webin REST V2 /submit/queue and /submit/poll, faults, follow-up actions, and the CLI."""

from __future__ import annotations

import datetime
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import aiohttp
import pytest

from mirror.emulator import Catalog, Emulator, Fault, WebinOptions

from .helpers import emulator_options
from .webin_helpers import TEST_INFO, accessions, auth, json_doc, submit_json, xml_doc


async def test_queue_then_poll_202_until_the_receipt(session: aiohttp.ClientSession) -> None:
    async with Emulator(Catalog(), webin=WebinOptions(poll_pending=3)) as emu:
        answer = await submit_json(
            session, emu, json_doc(samples=["q1"], runs=["qr1"]), path="/submit/queue"
        )
        sid = answer["submissionId"]
        assert answer == {
            "submissionId": sid,
            "submissionAccountId": "Webin-12345",
            "_links": {"poll": {"href": f"{emu.endpoints['webin']}/submit/poll/{sid}"}},
        }
        # Processed when queued, whether or not anyone polls.
        assert {o.alias for o in emu.webin.objects()} == {"q1", "qr1"}
        assert emu.webin.submissions() == [sid]
        seen, receipt = [], {}
        for _ in range(5):
            async with session.get(answer["_links"]["poll"]["href"], headers=auth()) as response:
                body = await response.read()
                seen.append(response.status)
                if response.status == 202:
                    assert body == b""
                    assert "Content-Type" not in response.headers
                else:
                    receipt = json.loads(body)
        assert seen == [202, 202, 202, 200, 200]
        assert receipt["success"] is True
        assert receipt["submission"]["accession"] == sid
        assert accessions(receipt, "samples")["q1"].startswith("ERS")
        assert receipt["messages"]["info"] == [TEST_INFO]
        stats = emu.webin.stats()
        assert (stats.submits, stats.queued, stats.polls, stats.receipts) == (0, 1, 5, 2)


async def test_xml_queue_and_poll_formats(emu: Emulator, session: aiohttp.ClientSession) -> None:
    base = emu.endpoints["webin"]
    headers = {"Content-Type": "application/xml", "Accept": "application/xml", **auth()}
    async with session.post(
        base + "/submit/queue", data=xml_doc(SAMPLE="x1"), headers=headers
    ) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "application/xml"
        queued = ET.fromstring(await response.read())
    sid = queued.findtext("submissionId")
    assert sid is not None
    assert sid.startswith("ERA")
    assert queued.findtext("submissionAccountId") == "Webin-12345"
    assert queued.findtext("_links/poll/href") == f"{base}/submit/poll/{sid}"
    for _ in range(2):  # the fixture's default: two polls pending
        async with session.get(f"{base}/submit/poll/{sid}", headers=auth()) as response:
            assert response.status == 202
    # No preference in Accept: as queued (XML); asked for JSON: JSON.
    async with session.get(f"{base}/submit/poll/{sid}", headers=auth()) as response:
        root = ET.fromstring(await response.read())
    assert root.tag == "RECEIPT"
    assert root.get("success") == "true"
    sample = root.find("SAMPLE")
    assert sample is not None
    assert sample.find("EXT_ID") is not None
    json_accept = {"Accept": "application/json", **auth()}
    async with session.get(f"{base}/submit/poll/{sid}", headers=json_accept) as response:
        assert (await response.json())["submission"]["accession"] == sid


async def test_poll_refusals(session: aiohttp.ClientSession) -> None:
    accounts = {"Webin-1": "one", "Webin-2": "two"}
    async with Emulator(Catalog(), webin=WebinOptions(accounts=accounts)) as emu:
        one, two = auth("Webin-1", "one"), auth("Webin-2", "two")
        answer = await submit_json(
            session, emu, json_doc(samples=["p1"]), path="/submit/queue", headers=one
        )
        url = answer["_links"]["poll"]["href"]
        unknown = url.rsplit("/", 1)[0] + "/ERA1"
        # Another account's id is as unknown as one never issued; no auth is 401.
        for target, headers, status in ((unknown, one, 404), (url, two, 404), (url, {}, 401)):
            async with session.get(target, headers=headers) as response:
                assert response.status == status
                assert (await response.json())["status"] == status
        assert emu.webin.stats().polls == 0


async def test_faults_before_and_after_processing(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    url = emu.endpoints["webin"] + "/submit"
    headers = {"Content-Type": "application/json", **auth()}
    body = json.dumps(json_doc(alias="lost", samples=["f1"]))
    # A status fault answers for the service: nothing is submitted.
    emu.faults.add(Fault(kind="status", status=503, host="www", match="*/submit", times=1))
    async with session.post(url, data=body, headers=headers) as response:
        assert response.status == 503
    assert emu.webin.objects() == []
    # A reset after processing: submitted, but the client never sees the receipt.
    emu.faults.add(Fault(kind="reset", host="www", match="*/submit", after_bytes=20, times=1))
    with pytest.raises(aiohttp.ClientError):
        async with session.post(url, data=body, headers=headers) as response:
            await response.read()
    (made,) = emu.webin.objects()
    # Recovery: a retry fails on the alias, naming the accession; or ask for the receipt.
    retry = await submit_json(session, emu, json_doc(alias="lost2", samples=["f1"]))
    assert f'with accession: "{made.accession}"' in retry["messages"]["error"][0]
    doc = json_doc(actions=[{"type": "RECEIPT", "target": "lost"}])
    again = await submit_json(session, emu, doc)
    assert again["success"] is True
    assert again["actions"] == ["RECEIPT"]
    assert accessions(again, "samples") == {"f1": made.accession}
    assert again["submission"] == {"alias": "lost", "accession": made.submission}


async def test_modify_hold_and_release(emu: Emulator, session: aiohttp.ClientSession) -> None:
    added = await submit_json(session, emu, json_doc(projects=["proj"], samples=["m1"]))
    project = added["projects"][0]["accession"]
    modified = await submit_json(
        session, emu, json_doc(actions=[{"type": "MODIFY"}], samples=["m1"])
    )
    assert modified["success"] is True
    assert accessions(modified, "samples") == accessions(added, "samples")
    missing = await submit_json(
        session, emu, json_doc(actions=[{"type": "MODIFY"}], samples=["nope"])
    )
    assert missing["success"] is False
    assert "does not exist" in missing["messages"]["error"][0]
    emu.set_today(datetime.date(2024, 6, 1))
    hold = [{"type": "HOLD", "target": project, "holdUntilDate": "2025-03-01"}]
    held = await submit_json(session, emu, json_doc(actions=hold))
    assert held["projects"][0]["holdUntilDate"] == "2025-03-01Z"
    assert held["messages"]["info"][0].endswith("(HOLD).")
    too_late = [{"type": "HOLD", "target": project, "holdUntilDate": "2027-01-01"}]
    refused = await submit_json(session, emu, json_doc(actions=too_late))
    assert refused["success"] is False
    assert "two years" in refused["messages"]["error"][0]
    released = await submit_json(
        session, emu, json_doc(actions=[{"type": "RELEASE", "target": project}])
    )
    assert released["projects"] == [
        {
            "alias": "proj",
            "accession": project,
            "status": "PUBLIC",
            "externalAccession": added["projects"][0]["externalAccession"],
        }
    ]
    assert len(emu.webin.objects()) == 2
    # Real actions the emulator does not model fail loudly rather than pass silently.
    killed = await submit_json(
        session, emu, json_doc(actions=[{"type": "KILL", "target": project}])
    )
    assert killed["success"] is False
    assert "not supported" in killed["messages"]["error"][0]


async def test_cli_webin_accounts_poll_pending_and_endpoints(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    catalog_path = tmp_path / "catalog.json"
    catalog_path.write_text(json.dumps(Catalog.generate_cram(count=2, length=3000).to_dict()))
    async with emulator_options(
        "--catalog", str(catalog_path),
        "--webin-account", "Webin-7:seven", "--webin-poll-pending", "0",
    ) as ready:  # fmt: skip
        endpoints = ready["endpoints"]
        assert endpoints["cram_registry"].endswith("/ena/cram")
        assert endpoints["webin"].endswith("/ena/submit/webin-v2")
        ref = Catalog.from_dict(json.loads(catalog_path.read_text())).cram_references[1]
        async with session.get(f"{endpoints['cram_registry']}/sha1/{ref.sha1}") as response:
            assert await response.read() == ref.bases()
        headers = {"Content-Type": "application/json", **auth("Webin-7", "seven")}
        body = json.dumps(json_doc(samples=["cli"]))
        async with session.post(
            endpoints["webin"] + "/submit/queue", data=body, headers=headers
        ) as response:
            poll = (await response.json())["_links"]["poll"]["href"]
        async with session.get(poll, headers=headers) as response:
            assert response.status == 200  # no polls pending
            assert (await response.json())["success"] is True
