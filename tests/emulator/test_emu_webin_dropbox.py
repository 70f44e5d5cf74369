"""Webin's drop-box (/ena/submit/drop-box/submit/): one XML document per form part."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import aiohttp

from mirror.emulator import Emulator

from .webin_helpers import PASSWORD, ROLLED_BACK, TEST_INFO, auth

HOLD_INFO = "All objects in this submission are set to private status (HOLD)."


def _at(root: ET.Element, path: str) -> ET.Element:
    found = root.find(path)
    assert found is not None, path
    return found


def _url(emu: Emulator) -> str:
    return emu.endpoints["webin"].replace("/webin-v2", "/drop-box") + "/submit/"


def _form(actions: str, **parts: str) -> aiohttp.FormData:
    """The form ena-upload-cli sends: a SUBMISSION part and one ``*_SET`` part per type."""
    form = aiohttp.FormData()
    submission = f"<SUBMISSION_SET><SUBMISSION><ACTIONS>{actions}</ACTIONS></SUBMISSION>"
    form.add_field("SUBMISSION", submission + "</SUBMISSION_SET>", filename="submission.xml")
    for name, aliases in parts.items():
        items = "".join(f'<{name} alias="{a}"><TITLE>t</TITLE></{name}>' for a in aliases.split())
        form.add_field(name, f"<{name}_SET>{items}</{name}_SET>", filename=f"{name.lower()}.xml")
    return form


_ADD_HOLD = (
    '<ACTION><ADD source="study.xml" schema="study"/></ACTION>'
    '<ACTION><ADD source="sample.xml" schema="sample"/></ACTION><ACTION><HOLD/></ACTION>'
)


async def _post(
    session: aiohttp.ClientSession, emu: Emulator, form: aiohttp.FormData, **headers: str
) -> tuple[int, str, bytes]:
    sent = headers or auth()
    async with session.post(_url(emu), data=form, headers=sent) as response:
        return response.status, response.headers["Content-Type"], await response.read()


async def test_add_answers_an_xml_receipt_with_accessions(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    form = _form(_ADD_HOLD, STUDY="st-1", SAMPLE="s1 s2", EXPERIMENT="x1", RUN="r1")
    status, content_type, body = await _post(session, emu, form, Accept="*/*", **auth())
    # An XML receipt even for Accept */* (V2 would answer JSON), as ena-upload-cli reads.
    assert (status, content_type) == (200, "application/xml")
    root = ET.fromstring(body)
    assert root.tag == "RECEIPT"
    assert root.get("success") == "true"
    got = {(e.tag, e.get("alias")): e.get("accession") or "" for e in root if e.get("alias")}
    assert re.fullmatch(r"ERP\d+", got.pop(("STUDY", "st-1")))
    assert all(re.fullmatch(r"ERS\d+", got.pop(("SAMPLE", a))) for a in ("s1", "s2"))
    assert re.fullmatch(r"ERX\d+", got.pop(("EXPERIMENT", "x1")))
    assert re.fullmatch(r"ERR\d+", got.pop(("RUN", "r1")))
    assert re.fullmatch(r"ERA\d+", got.pop(("SUBMISSION", _at(root, "SUBMISSION").get("alias"))))
    assert got == {}
    # Held private: a hold date on each held object.
    assert _at(root, "SAMPLE").get("status") == "PRIVATE"
    assert _at(root, "STUDY").get("holdUntilDate")
    assert [e.text for e in root.iterfind("MESSAGES/INFO")] == [HOLD_INFO, TEST_INFO]
    assert [e.text for e in root.iterfind("ACTIONS")] == ["ADD", "ADD", "HOLD"]
    assert sorted(o.alias for o in emu.webin.objects()) == ["r1", "s1", "s2", "st-1", "x1"]
    assert emu.webin.stats().submits == 1


async def test_duplicate_alias_and_validate(emu: Emulator, session: aiohttp.ClientSession) -> None:
    status, _, body = await _post(session, emu, _form(_ADD_HOLD, SAMPLE="s1"))
    existing = _at(ET.fromstring(body), "SAMPLE").get("accession")
    status, _, body = await _post(session, emu, _form(_ADD_HOLD, SAMPLE="s1 s2"))
    assert status == 200
    root = ET.fromstring(body)
    assert root.get("success") == "false"
    assert [e.text for e in root.iterfind("MESSAGES/ERROR")] == [
        f'In sample, alias: "s1". The object being added already exists in the '
        f'submission account with accession: "{existing}".'
    ]
    assert [e.text for e in root.iterfind("MESSAGES/INFO")] == [ROLLED_BACK, TEST_INFO]
    assert all(e.get("accession") is None for e in root.iterfind("SAMPLE"))
    # VALIDATE checks and creates nothing.
    _, _, body = await _post(session, emu, _form("<ACTION><VALIDATE/></ACTION>", SAMPLE="s3"))
    root = ET.fromstring(body)
    assert root.get("success") == "true"
    assert _at(root, "SAMPLE").get("accession") is None
    assert sorted(o.alias for o in emu.webin.objects()) == ["s1"]


async def test_bad_part_and_refused_password(emu: Emulator, session: aiohttp.ClientSession) -> None:
    form = _form(_ADD_HOLD)
    form.add_field("SAMPLE", "<SAMPLE_SET><SAMPLE alias='s1'>", filename="sample.xml")
    status, _, body = await _post(session, emu, form)
    root = ET.fromstring(body)
    assert (status, root.get("success")) == (200, "false")
    assert (root.findtext("MESSAGES/ERROR") or "").startswith("Invalid SAMPLE XML: ")
    # Not a form at all: 400.
    async with session.post(_url(emu), data=b"<WEBIN/>", headers=auth()) as response:
        assert response.status == 400
    status, _, body = await _post(
        session, emu, _form(_ADD_HOLD, SAMPLE="s1"), **auth(password=PASSWORD + "x")
    )
    assert status == 401
    assert emu.webin.stats().unauthorized == 1
    assert emu.webin.objects() == []
    await emu.wait_idle()
    assert [entry.status for entry in emu.log] == [200, 400, 401]
    # Submissions are unpublished metadata: the log never holds them.
    assert all(entry.form is None for entry in emu.log)
