"""ENA Webin REST V2 submissions: sync ``/submit``, or ``/submit/queue`` + ``/submit/poll``.

Facts this module relies on (seed 002, research/ega-webin.md (b)):

* One JSON or XML document per request, ``Content-Type`` and ``Accept`` matching it;
  HTTP Basic with the Webin account.
* ``/submit/queue`` answers ``{"submissionId", "_links": {"poll": {"href"}}}``;
  ``/submit/poll/{id}`` answers 202 with no body while queued and 200 with the
  receipt when done.
* The receipt's ``success`` decides, not the HTTP status. A duplicate alias fails the
  whole submission with "…already exists in the submission account with accession:".
* VALIDATE (with ADD or MODIFY) is a dry run: nothing is created.

A queued submission's id is written next to the document *before* polling starts, so
a run killed while polling polls the same submission when re-run; it never submits
the document twice.

A POST is sent again only when it cannot have reached the service: no connection was
made, or Webin answered 429 (turned away before anything was processed). After a 5xx,
a reset or a lost answer the submission may have been made, and a second one could
create every object twice (new aliases) or fail on the first's aliases; the document
then fails with a message saying so, for the user to check the account and re-run.
Polls are GETs and retried as usual.

Every document is read and parsed before the first is sent: a malformed one is a usage
error (exit 2) naming its file, line and column, and nothing is submitted.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .._credentials import Secret
from .._dest import Destination, LocalDestination
from .._exceptions import (
    CredentialsError,
    HTTPStatusError,
    ManifestError,
    MirrorError,
    NotConnected,
    RateLimited,
    Retryable,
    SourceError,
    collapsed,
)
from .._http import Http, redact_url
from .._retry import Retrying
from ..sources._links import rewrite

__all__ = ["Outcome", "Submission", "receipt_path", "state_path", "submit_all"]

logger = logging.getLogger(__name__)

Kind = Literal["json", "xml"]
_TYPES = ("projects", "studies", "samples", "experiments", "runs", "analyses")
_XML_TYPES = {
    "PROJECT": "project",
    "STUDY": "study",
    "SAMPLE": "sample",
    "EXPERIMENT": "experiment",
    "RUN": "run",
    "ANALYSIS": "analysis",
}
_EXISTING = re.compile(r'with accession:\s*"?([A-Z]{2,}[0-9]+)"?')


@dataclass(frozen=True, kw_only=True, slots=True)
class Submission:
    """How to submit: where, as whom, and whether to queue or only validate."""

    base: str
    username: str
    password: Secret = field(repr=False)
    queue: bool = False
    validate: bool = False
    poll_interval: float = 2.0
    poll_max: float = 30.0
    #: The public base the service's poll links may name (rewritten onto ``base``).
    public_base: str = "https://www.ebi.ac.uk/ena/submit/webin-v2"


@dataclass(frozen=True, kw_only=True, slots=True)
class Outcome:
    document: Path
    success: bool
    receipt: Path
    accessions: tuple[tuple[str, str, str], ...]  # (type, alias, accession)
    errors: tuple[str, ...]
    submission_id: str | None = None
    resumed: bool = False


def kind_of(path: Path, body: bytes) -> Kind:
    if path.suffix.lower() == ".json":
        return "json"
    if path.suffix.lower() == ".xml":
        return "xml"
    return "json" if body.lstrip()[:1] in (b"{", b"[") else "xml"


def receipt_path(document: Path, kind: Kind) -> Path:
    """``doc.json`` → ``doc.receipt.json``; ``doc.xml`` → ``doc.receipt.xml`` (SPEC.md)."""
    return document.with_name(f"{document.stem}.receipt.{kind}")


def state_path(document: Path) -> Path:
    return document.with_name(f"{document.name}.webin-submission.json")


def with_validate(body: bytes, kind: Kind) -> bytes:
    """``body`` with a VALIDATE action added (ADD assumed when it names no action)."""
    if kind == "json":
        doc = json.loads(body)
        submission = doc.setdefault("submission", {})
        actions = submission.get("actions") or [{"type": "ADD"}]
        if not any(str(a.get("type", "")).upper() == "VALIDATE" for a in actions):
            actions.append({"type": "VALIDATE"})
        submission["actions"] = actions
        return json.dumps(doc).encode()
    root = ET.fromstring(body)
    submission = root.find("SUBMISSION")
    if submission is None:
        submission = ET.Element("SUBMISSION")
        root.insert(0, submission)
    actions = submission.find("ACTIONS")
    if actions is None:
        actions = ET.SubElement(submission, "ACTIONS")
        ET.SubElement(ET.SubElement(actions, "ACTION"), "ADD")
    if actions.find("ACTION/VALIDATE") is None:
        ET.SubElement(ET.SubElement(actions, "ACTION"), "VALIDATE")
    out: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return out


def parse_receipt(text: str, kind: Kind) -> tuple[bool, list[tuple[str, str, str]], list[str]]:
    """``(success, [(type, alias, accession)], errors)`` of a JSON or XML receipt."""
    if kind == "json":
        doc = json.loads(text)
        found = [
            (
                t[:-1] if t != "analyses" else "analysis",
                str(o.get("alias", "")),
                str(o.get("accession", "")),
            )
            for t in _TYPES
            for o in doc.get(t) or []
            if isinstance(o, dict)
        ]
        errors = [str(e) for e in ((doc.get("messages") or {}).get("error") or [])]
        return bool(doc.get("success")), found, errors
    root = ET.fromstring(text)
    success = root.get("success", "").lower() == "true"
    found = [
        (_XML_TYPES[el.tag], el.get("alias", ""), el.get("accession", ""))
        for el in root
        if el.tag in _XML_TYPES
    ]
    errors = [el.text or "" for el in root.iter("ERROR")]
    return success, found, errors


async def submit_all(
    documents: list[Path],
    how: Submission,
    http: Http,
    *,
    say: Callable[[str], None],
    dest: Destination | None = None,
) -> list[Outcome]:
    """Submit every document concurrently (the host gate sets the pace).

    All are read and checked first: a malformed document raises ``ManifestError``
    before anything is sent. Receipts and the ids of queued submissions are written
    beside the documents through ``dest`` (the local file system by default).
    """
    files = dest or LocalDestination(Path.cwd())
    bodies = [await asyncio.to_thread(_read_document, doc) for doc in documents]
    with collapsed():
        async with asyncio.TaskGroup() as tg:
            tasks = [
                tg.create_task(_submit(doc, body, how, http, say, files))
                for doc, body in zip(documents, bodies, strict=True)
            ]
    return [t.result() for t in tasks]


def _read_document(document: Path) -> bytes:
    """The bytes of ``document``, checked to be the JSON or XML its name says."""
    try:
        body = document.read_bytes()
    except OSError as exc:
        raise ManifestError(f"cannot read: {exc.strerror or exc}", file=str(document)) from exc
    kind = kind_of(document, body)
    try:
        if kind == "json":
            if not isinstance(json.loads(body), dict):
                raise ManifestError("expected a JSON object (a Webin document)", file=str(document))
        else:
            ET.fromstring(body)
    except json.JSONDecodeError as exc:
        raise ManifestError(
            f"not valid JSON: {exc.msg} (column {exc.colno})",
            file=str(document),
            line=exc.lineno,
        ) from exc
    except UnicodeDecodeError as exc:
        raise ManifestError(f"not UTF-8 text: {exc.reason}", file=str(document)) from exc
    except ET.ParseError as exc:
        line, column = exc.position
        reason = str(exc).split(":", 1)[0]
        raise ManifestError(
            f"not well-formed XML: {reason} (column {column + 1})", file=str(document), line=line
        ) from exc
    return body


async def _submit(
    document: Path,
    body: bytes,
    how: Submission,
    http: Http,
    say: Callable[[str], None],
    files: Destination,
) -> Outcome:
    kind = kind_of(document, body)
    if how.validate:
        body = with_validate(body, kind)
    media = f"application/{kind}"
    headers = {"Content-Type": media, "Accept": media}
    auth = (how.username, how.password.value)
    submission_id: str | None = None
    resumed = False
    if how.queue:
        state = await asyncio.to_thread(_read_state, files, state_path(document))
        if state is not None:
            submission_id, poll = state["submissionId"], state["poll"]
            resumed = True
            say(f"{document.name}: resuming queued submission {submission_id}")
        else:
            answer = await _post(http, f"{how.base}/submit/queue", body, headers, auth, document)
            submission_id, poll = _queued(answer, kind, how.base)
            # Written before the first poll: a kill from here on resumes by polling.
            await asyncio.to_thread(
                _write_state,
                files,
                state_path(document),
                {"submissionId": submission_id, "poll": poll},
            )
            say(f"{document.name}: queued as {submission_id}")
        text = await _poll(http, rewrite(poll, how.base, how.public_base), headers, auth, how)
    else:
        text = await _post(http, f"{how.base}/submit", body, headers, auth, document)
    receipt = receipt_path(document, kind)
    await asyncio.to_thread(files.write_atomic, receipt, text.encode("utf-8"))
    if how.queue:
        await asyncio.to_thread(files.drop, state_path(document))
    try:
        success, found, errors = parse_receipt(text, kind)
    except (ValueError, ET.ParseError) as exc:
        raise SourceError(f"{document}: the receipt is not valid {kind.upper()}: {exc}") from exc
    return Outcome(
        document=document,
        success=success,
        receipt=receipt,
        accessions=tuple(found),
        errors=tuple(errors),
        submission_id=submission_id,
        resumed=resumed,
    )


async def _post(
    http: Http,
    url: str,
    body: bytes,
    headers: dict[str, str],
    auth: tuple[str, str],
    document: Path,
) -> str:
    """POST a submission; sent again only when it cannot have reached the service."""

    async def once() -> str:
        async with http.request(
            "POST",
            url,
            data=body,
            headers=headers,
            auth=auth,
            expect=(200, 201, 202, 400, 401, 403, 409, 422),
        ) as resp:
            text = await resp.text()
            if resp.status in (401, 403):
                raise CredentialsError(
                    f"Webin refused the account {auth[0]} (HTTP {resp.status}): check "
                    "WEBIN_USERNAME and WEBIN_PASSWORD"
                )
            if resp.status >= 400 and not text.strip():
                raise HTTPStatusError(
                    resp.status, f"{redact_url(url)}: HTTP {resp.status}", url=url
                )
            return text

    async def sent(_previous: MirrorError | None) -> str:
        try:
            return await once()
        except Retryable as exc:
            # Sent again only when the service turned it away: no connection was made,
            # or it answered 429 before reading the submission.
            if isinstance(exc, NotConnected) or (
                isinstance(exc, RateLimited) and exc.status == 429
            ):
                raise
            raise SourceError(
                f"{document}: Webin may have received this submission but its answer "
                f"was lost ({exc}); not sent again, as a second POST could submit "
                f"everything twice: check the submissions of {auth[0]} (Webin Portal) "
                "before re-running"
            ) from exc

    return await Retrying(redact_url(url), http.retry, sleep=http.clock.sleep).call(sent)


def _queued(answer: str, kind: Kind, base: str) -> tuple[str, str]:
    try:
        if kind == "xml" and answer.lstrip().startswith("<"):
            root = ET.fromstring(answer)
            sid = root.findtext(".//submissionId") or root.get("submissionId") or ""
            href = ""
            for el in root.iter():
                if el.get("href") and "poll" in (el.get("href") or ""):
                    href = el.get("href") or ""
        else:
            doc = json.loads(answer)
            sid = str(doc.get("submissionId", ""))
            links: Any = doc.get("_links") or doc.get("links") or {}
            if isinstance(links, list):  # an older shape: [{"rel": "poll-json", "href"}]
                href = next((str(x.get("href")) for x in links if "poll" in str(x.get("rel"))), "")
            else:
                href = str((links.get("poll") or {}).get("href", ""))
    except (ValueError, ET.ParseError, AttributeError) as exc:
        raise SourceError(f"Webin: unexpected answer to a queued submission: {exc}") from exc
    if not sid:
        raise SourceError(f"Webin: the queue answered without a submissionId: {answer[:200]}")
    return sid, href or f"{base}/submit/poll/{sid}"


async def _poll(
    http: Http, url: str, headers: dict[str, str], auth: tuple[str, str], how: Submission
) -> str:
    delay = how.poll_interval
    while True:

        async def once() -> tuple[int, str]:
            async with http.request(
                "GET",
                url,
                headers={"Accept": headers["Accept"]},
                auth=auth,
                expect=(200, 202, 401, 403),
            ) as resp:
                return resp.status, await resp.text()

        status, text = await http.retrying(redact_url(url), once)
        if status in (401, 403):
            raise CredentialsError(
                f"Webin refused the account {auth[0]} while polling",
                hint="check WEBIN_USERNAME and WEBIN_PASSWORD (or the ~/.netrc entry)",
            )
        if status == 200 and text.strip():
            return text
        logger.info("Webin: %s still queued; polling again in %.1fs", url, delay)
        await asyncio.sleep(delay)
        delay = min(how.poll_max, delay * 1.5)


def _read_state(files: Destination, path: Path) -> dict[str, str] | None:
    try:
        doc = json.loads(files.read_bytes(path))
        return {"submissionId": str(doc["submissionId"]), "poll": str(doc["poll"])}
    except (OSError, ValueError, KeyError):
        return None


def _write_state(files: Destination, path: Path, doc: dict[str, str]) -> None:
    files.write_atomic(path, (json.dumps(doc, indent=2) + "\n").encode("utf-8"))


def existing_accession(error: str) -> str | None:
    """The accession a duplicate-alias error names, if it names one."""
    m = _EXISTING.search(error)
    return m.group(1) if m else None
