"""Webin REST V2 on the wire: receipts in JSON and XML, the queue answer, content negotiation."""

from __future__ import annotations

import datetime
import json
import xml.etree.ElementTree as ET
from typing import Any

from ._doc import KINDS, Format
from ._records import Receipt, ReceiptObject

__all__ = [
    "CONTENT_TYPES",
    "document_format",
    "error_body",
    "negotiate",
    "queue_body",
    "receipt_body",
]

CONTENT_TYPES: dict[Format, str] = {"json": "application/json", "xml": "application/xml"}
_XML_HEAD = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<?xml-stylesheet type="text/xsl" href="receipt.xsl"?>\n'
)


def document_format(content_type: str) -> Format | None:
    """The format a request's Content-Type names (``application/xml``, ``…+json``)."""
    kind = content_type.split(";")[0].strip().lower()
    if kind in ("application/json", "text/json") or kind.endswith("+json"):
        return "json"
    if kind in ("application/xml", "text/xml") or kind.endswith("+xml"):
        return "xml"
    return None


def negotiate(accept: str | None, default: Format) -> Format:
    """The answer's format: what Accept prefers of JSON and XML, else ``default``.

    Wildcards express no preference, and a header naming both equally (or neither,
    as webin-cli's RestTemplate default ``text/plain, application/json, …, */*``
    does for XML) leaves the document's own format: "Accept and Content-Type must
    match the document format".
    """
    weights: dict[Format, float] = {"json": 0.0, "xml": 0.0}
    for item in (accept or "").split(","):
        kind, *params = (part.strip() for part in item.split(";"))
        fmt = document_format(kind)
        if fmt is None:
            continue
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        weights[fmt] = max(weights[fmt], quality)
    if weights["json"] == weights["xml"]:
        return default
    return "json" if weights["json"] > weights["xml"] else "xml"


def _date(moment: datetime.datetime) -> str:
    # "2024-10-30T13:48:47.796Z": UTC, milliseconds.
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"


def _hold(day: datetime.date) -> str:
    # "2024-10-31Z": a date with its zone, as the receipts write holdUntilDate.
    return f"{day.isoformat()}Z"


def _json_object(item: ReceiptObject) -> dict[str, Any]:
    # Absent, not empty, where unset: the service's Jackson writes NON_NULL.
    obj: dict[str, Any] = {"alias": item.alias}
    if item.accession:
        obj["accession"] = item.accession
    obj["status"] = item.status
    if item.hold_until is not None:
        obj["holdUntilDate"] = _hold(item.hold_until)
    if item.external_accession:
        obj["externalAccession"] = {"id": item.external_accession, "db": item.kind.external_db}
    return obj


def _json(receipt: Receipt) -> dict[str, Any]:
    doc: dict[str, Any] = {"success": receipt.success, "receiptDate": _date(receipt.date)}
    for kind in KINDS:
        items = [_json_object(o) for o in receipt.objects if o.kind == kind]
        if items:
            doc[kind.plural] = items
    if receipt.submission_alias:
        submission = {"alias": receipt.submission_alias}
        if receipt.submission_accession:
            submission["accession"] = receipt.submission_accession
        doc["submission"] = submission
    messages: dict[str, list[str]] = {}
    if receipt.errors:
        messages["error"] = list(receipt.errors)
    if receipt.infos:
        messages["info"] = list(receipt.infos)
    doc["messages"] = messages
    if receipt.actions:
        doc["actions"] = list(receipt.actions)
    return doc


def _xml(receipt: Receipt) -> ET.Element:
    # Attribute order as in real receipts (ElementTree keeps insertion order).
    root = ET.Element("RECEIPT")
    root.set("receiptDate", _date(receipt.date))
    root.set("submissionFile", "SUBMISSION")
    root.set("success", "true" if receipt.success else "false")
    for kind in KINDS:
        for item in (o for o in receipt.objects if o.kind == kind):
            element = ET.SubElement(root, kind.element)
            if item.accession:
                element.set("accession", item.accession)
            element.set("alias", item.alias)
            element.set("status", item.status)
            if item.hold_until is not None:
                element.set("holdUntilDate", _hold(item.hold_until))
            if item.external_accession:
                ext = ET.SubElement(element, "EXT_ID")
                ext.set("accession", item.external_accession)
                ext.set("type", kind.external_db)
    if receipt.submission_alias:
        submission = ET.SubElement(root, "SUBMISSION")
        if receipt.submission_accession:
            submission.set("accession", receipt.submission_accession)
        submission.set("alias", receipt.submission_alias)
    messages = ET.SubElement(root, "MESSAGES")
    for tag, texts in (("ERROR", receipt.errors), ("INFO", receipt.infos)):
        for text in texts:
            ET.SubElement(messages, tag).text = text
    for action in receipt.actions:
        ET.SubElement(root, "ACTIONS").text = action
    return root


def _xml_bytes(root: ET.Element, head: str = _XML_HEAD) -> bytes:
    ET.indent(root, space="     ")
    # "<EXT_ID …/>" as the service writes it, not ElementTree's "<EXT_ID … />"; safe,
    # as ElementTree escapes ">" in attribute values and text.
    text = ET.tostring(root, encoding="unicode").replace(" />", "/>")
    return (head + text + "\n").encode()


def receipt_body(receipt: Receipt, fmt: Format) -> bytes:
    if fmt == "json":
        return json.dumps(_json(receipt), indent=2).encode()
    return _xml_bytes(_xml(receipt))


def queue_body(submission_id: str, account: str, poll_url: str, fmt: Format) -> bytes:
    """What ``/submit/queue`` answers: the id and the link to poll for the receipt."""
    doc = {
        "submissionId": submission_id,
        "submissionAccountId": account,
        "_links": {"poll": {"href": poll_url}},
    }
    if fmt == "json":
        return json.dumps(doc, indent=2).encode()
    # Not documented for XML: the same fields, as Jackson's XML mapper writes a bean.
    return _xml_bytes(_tree("SubmissionResponse", doc), '<?xml version="1.0" encoding="UTF-8"?>\n')


def error_body(status: int, reason: str, path: str, fmt: Format) -> bytes:
    """Spring Boot's error document (401, 404, 400), as the service's framework writes it."""
    now = datetime.datetime.now(datetime.UTC)
    doc = {"timestamp": _date(now), "status": status, "error": reason, "path": path}
    if fmt == "json":
        return json.dumps(doc).encode()
    return _xml_bytes(_tree("Map", doc), '<?xml version="1.0" encoding="UTF-8"?>\n')


def _tree(tag: str, doc: dict[str, Any]) -> ET.Element:
    element = ET.Element(tag)
    for name, value in doc.items():
        if isinstance(value, dict):
            element.append(_tree(name, value))
        else:
            ET.SubElement(element, name).text = str(value)
    return element
