"""Webin REST V2 submission documents: one JSON document or one ``<WEBIN>`` XML document.

Only what a receipt needs is read: each object's type, alias and accession, the
submission's alias and its actions. Everything else in a document is ignored, as the
service ignores what it does not know (Spring's Jackson does not fail on unknown keys).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "ACTIONS",
    "KINDS",
    "Action",
    "Document",
    "DocumentError",
    "Format",
    "ObjectKind",
    "Submitted",
    "parse_document",
    "sniff",
]

Format = Literal["json", "xml"]


@dataclass(frozen=True, kw_only=True, slots=True)
class ObjectKind:
    """One type of object: its names in documents, receipts and messages, its accessions."""

    name: str  # in messages: 'In sample, alias: "…"'
    plural: str  # the JSON document's and receipt's key
    element: str  # the XML element (its set is ``{element}_SET``)
    prefix: str  # the accession's prefix
    external: str = ""  # the secondary accession's prefix, if one is assigned
    external_db: str = ""  # its ``externalAccession.db`` / ``EXT_ID type``


# In the order a receipt lists them (the Receipt model's property order).
KINDS: tuple[ObjectKind, ...] = (
    ObjectKind(name="analysis", plural="analyses", element="ANALYSIS", prefix="ERZ"),
    ObjectKind(name="experiment", plural="experiments", element="EXPERIMENT", prefix="ERX"),
    ObjectKind(name="run", plural="runs", element="RUN", prefix="ERR"),
    ObjectKind(
        name="sample",
        plural="samples",
        element="SAMPLE",
        prefix="ERS",
        external="SAMEA",
        external_db="biosample",
    ),
    # A study is an ERP with its PRJEB as EXT_ID type "Project" (real receipts); a
    # project the other way round, its ERP as externalAccession db "study" (ENA docs).
    ObjectKind(
        name="study",
        plural="studies",
        element="STUDY",
        prefix="ERP",
        external="PRJEB",
        external_db="Project",
    ),
    ObjectKind(
        name="project",
        plural="projects",
        element="PROJECT",
        prefix="PRJEB",
        external="ERP",
        external_db="study",
    ),
)
_BY_ELEMENT = {kind.element: kind for kind in KINDS}
_BY_SET = {f"{kind.element}_SET": kind for kind in KINDS}

#: SRA.submission.xsd's actions. VALIDATE combines with ADD (the default) or MODIFY.
ACTIONS = frozenset(
    {
        "ADD",
        "MODIFY",
        "VALIDATE",
        "HOLD",
        "RELEASE",
        "CANCEL",
        "SUPPRESS",
        "KILL",
        "PROTECT",
        "ROLLBACK",
        "RECEIPT",
    }
)


@dataclass(frozen=True, kw_only=True, slots=True)
class Action:
    type: str
    hold_until: str | None = None
    target: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Submitted:
    kind: ObjectKind
    alias: str
    accession: str = ""


@dataclass(frozen=True, kw_only=True, slots=True)
class Document:
    format: Format
    submission_alias: str
    actions: tuple[Action, ...]
    objects: tuple[Submitted, ...]


class DocumentError(Exception):
    """The document cannot be read; the message goes into the receipt's errors."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def sniff(data: bytes) -> Format | None:
    """The format a document's first character says (for bodies sent without a type)."""
    head = data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    return "json" if head == b"{" else "xml" if head == b"<" else None


def parse_document(data: bytes, fmt: Format) -> Document:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DocumentError(f"The submission document is not UTF-8: {exc}.") from None
    return _parse_json(text) if fmt == "json" else _parse_xml(text)


def _string(value: object, what: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise DocumentError(f"Invalid submission JSON: {what} must be a string.")
    return value.strip()


def _parse_json(text: str) -> Document:
    try:
        doc: Any = json.loads(text)
    except ValueError as exc:
        raise DocumentError(f"Invalid submission JSON: {exc}.") from None
    if not isinstance(doc, dict):
        raise DocumentError("Invalid submission JSON: the document must be a JSON object.")
    submission = doc.get("submission") or {}
    if not isinstance(submission, dict):
        raise DocumentError("Invalid submission JSON: submission must be an object.")
    raw_actions = submission.get("actions") or []
    if not isinstance(raw_actions, list) or not all(isinstance(a, dict) for a in raw_actions):
        raise DocumentError("Invalid submission JSON: actions must be a list of objects.")
    actions = tuple(
        _action(
            _string(item.get("type"), "an action's type"),
            _string(item.get("holdUntilDate"), "holdUntilDate") or None,
            _string(item.get("target"), "an action's target") or None,
        )
        for item in raw_actions
    )
    objects: list[Submitted] = []
    for kind in KINDS:
        items = doc.get(kind.plural)
        if items is None:
            continue
        if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
            raise DocumentError(
                f"Invalid submission JSON: {kind.plural} must be a list of objects."
            )
        objects += _objects(kind, items)
    return Document(
        format="json",
        submission_alias=_string(submission.get("alias"), "the submission's alias"),
        actions=actions,
        objects=_in_receipt_order(objects),
    )


def _objects(kind: ObjectKind, items: Iterable[Mapping[str, Any]]) -> list[Submitted]:
    return [
        Submitted(
            kind=kind,
            alias=_string(item.get("alias"), f"a {kind.name}'s alias"),
            accession=_string(item.get("accession"), f"a {kind.name}'s accession"),
        )
        for item in items
    ]


def _in_receipt_order(objects: Iterable[Submitted]) -> tuple[Submitted, ...]:
    return tuple(sorted(objects, key=lambda item: KINDS.index(item.kind)))


def _action(kind: str, hold_until: str | None, target: str | None) -> Action:
    name = kind.upper()
    if name not in ACTIONS:
        raise DocumentError(f'Unknown submission action "{kind}".')
    return Action(type=name, hold_until=hold_until, target=target)


def _parse_xml(text: str) -> Document:
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise DocumentError(f"Invalid submission XML: {exc}.") from None
    if root.tag != "WEBIN":
        raise DocumentError(f"Invalid submission XML: expected <WEBIN>, found <{root.tag}>.")
    submissions: list[ET.Element] = []
    objects: list[Submitted] = []
    for child in root:
        tag = child.tag
        # webin-cli concatenates *_SET documents inside <WEBIN>; a bare element (no
        # set around it) is accepted too, as the docs' WEBIN examples vary.
        if tag == "SUBMISSION_SET":
            submissions += [item for item in child if item.tag == "SUBMISSION"]
        elif tag == "SUBMISSION":
            submissions.append(child)
        elif tag in _BY_SET:
            kind = _BY_SET[tag]
            objects += _xml_objects(kind, (item for item in child if item.tag == kind.element))
        elif tag in _BY_ELEMENT:
            objects += _xml_objects(_BY_ELEMENT[tag], (child,))
        else:
            raise DocumentError(f"Invalid submission XML: unexpected element <{tag}> in <WEBIN>.")
    if len(submissions) > 1:
        raise DocumentError("Invalid submission XML: more than one <SUBMISSION>.")
    submission = submissions[0] if submissions else ET.Element("SUBMISSION")
    actions = []
    for action in submission.iterfind("ACTIONS/ACTION"):
        for element in action:  # one element per ACTION: <ADD/>, <HOLD HoldUntilDate=…/>
            actions.append(
                _action(
                    element.tag,
                    (element.get("HoldUntilDate") or "").strip() or None,
                    (element.get("target") or "").strip() or None,
                )
            )
    return Document(
        format="xml",
        submission_alias=(submission.get("alias") or "").strip(),
        actions=tuple(actions),
        objects=_in_receipt_order(objects),
    )


def _xml_objects(kind: ObjectKind, elements: Iterable[ET.Element]) -> list[Submitted]:
    return [
        Submitted(
            kind=kind,
            alias=(element.get("alias") or "").strip(),
            accession=(element.get("accession") or "").strip(),
        )
        for element in elements
    ]
