"""Helpers of the Webin REST V2 tests: Basic auth, documents, posting and parsing receipts."""

from __future__ import annotations

import base64
import json
import xml.etree.ElementTree as ET
from typing import Any

import aiohttp

from mirror.emulator import Emulator

ACCOUNT, PASSWORD = "Webin-12345", "webin-password"
TEST_INFO = "This submission is a TEST submission and will be discarded within 24 hours"
ROLLED_BACK = "Submission has been rolled back."


def auth(account: str = ACCOUNT, password: str = PASSWORD) -> dict[str, str]:
    pair = base64.b64encode(f"{account}:{password}".encode()).decode()
    return {"Authorization": f"Basic {pair}"}


def json_doc(
    *,
    actions: list[dict[str, str]] | None = None,
    alias: str = "",
    **objects: list[str],
) -> dict[str, Any]:
    """A JSON submission: ``samples=["s1"]`` → ``"samples": [{"alias": "s1", …}]``."""
    doc: dict[str, Any] = {"submission": {"alias": alias, "accession": ""}}
    if actions is not None:
        doc["submission"]["actions"] = actions
    for plural, aliases in objects.items():
        doc[plural] = [{"alias": a, "title": f"{a} title"} for a in aliases]
    return doc


def xml_doc(*, actions: str = "<ACTION><ADD/></ACTION>", alias: str = "", **objects: str) -> bytes:
    """A ``<WEBIN>`` submission: ``SAMPLE="s1 s2"`` → a SAMPLE_SET with two samples."""
    parts = [f'<SUBMISSION_SET><SUBMISSION alias="{alias}"><ACTIONS>{actions}</ACTIONS>']
    parts.append("</SUBMISSION></SUBMISSION_SET>")
    for element, aliases in objects.items():
        items = "".join(
            f'<{element} alias="{a}"><TITLE>{a}</TITLE></{element}>' for a in aliases.split()
        )
        parts.append(f"<{element}_SET>{items}</{element}_SET>")
    return ("<WEBIN>" + "".join(parts) + "</WEBIN>").encode()


async def submit_json(
    session: aiohttp.ClientSession,
    emu: Emulator,
    doc: dict[str, Any],
    *,
    path: str = "/submit",
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """POST a JSON document as the docs' curl does; the parsed answer (HTTP 200 asserted)."""
    sent = {"Content-Type": "application/json", "Accept": "application/json", **auth()}
    async with session.post(
        emu.endpoints["webin"] + path, data=json.dumps(doc), headers={**sent, **(headers or {})}
    ) as response:
        assert response.status == 200, await response.text()
        assert response.headers["Content-Type"] == "application/json"
        answer: dict[str, Any] = await response.json()
    return answer


async def submit_xml(
    session: aiohttp.ClientSession, emu: Emulator, doc: bytes, *, path: str = "/submit"
) -> ET.Element:
    headers = {"Content-Type": "application/xml", "Accept": "application/xml", **auth()}
    async with session.post(emu.endpoints["webin"] + path, data=doc, headers=headers) as response:
        assert response.status == 200, await response.text()
        assert response.headers["Content-Type"] == "application/xml"
        return ET.fromstring(await response.read())


def accessions(receipt: dict[str, Any], plural: str) -> dict[str, str]:
    """alias → accession of one type's objects in a JSON receipt."""
    return {item["alias"]: item.get("accession", "") for item in receipt.get(plural, [])}
