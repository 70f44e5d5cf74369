"""Before a submission: is every file the document names in the upload area, as named?

A document names its files as ENA's run and analysis XML does, anywhere in it::

    <FILE filename="sub/x_R1.fastq.gz" filetype="fastq" checksum_method="MD5"
          checksum="9b89…e2"/>

and, in a JSON document, as any object with a ``fileName`` (or ``filename``) and a
``checksum`` (``checksumMethod``/``checksum_method`` optional, MD5 when absent)::

    "runs": [{"alias": "r1", "files": [{"fileName": "sub/x_R1.fastq.gz",
              "fileType": "fastq", "checksumMethod": "MD5", "checksum": "9b89…e2"}]}]

(ENA publishes no JSON example for files; these are the XML attributes in the
camel case the rest of Webin's JSON uses.) Each file must exist in the area, with the
size recorded when it was uploaded from here, and an MD5 equal to the document's: the
upload state's when this machine uploaded it, else the area's ``FILE.md5``.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .._exceptions import ManifestError
from ._ftps import FtpsClient
from ._state import Record

__all__ = ["FileRef", "Problem", "check_files", "document_files"]


@dataclass(frozen=True, kw_only=True, slots=True)
class FileRef:
    """A file a document names: its path in the area and its checksum."""

    filename: str
    checksum: str
    method: str = "MD5"


@dataclass(frozen=True, kw_only=True, slots=True)
class Problem:
    ref: FileRef
    reason: str

    def __str__(self) -> str:
        return f"{self.ref.filename}: {self.reason}"


def document_files(path: Path) -> list[FileRef]:
    """The files ``path`` names, in order: none for a document without files, and none
    for one that cannot be read (it goes to Webin as before, whose receipt says why)."""
    text = path.read_text(encoding="utf-8-sig")
    head = text.lstrip()[:1]
    refs = list(_json_files(path, text) if head in "{[" and head else _xml_files(path, text))
    for ref in refs:
        name = ref.filename
        if not name or name.startswith("/") or ".." in name.split("/"):
            raise ManifestError(
                f"file name {name!r} is not a path inside the upload area", file=str(path)
            )
    return list(dict.fromkeys(refs))


def _xml_files(path: Path, text: str) -> Iterator[FileRef]:
    try:
        root = ET.fromstring(text)
    except ET.ParseError:
        return  # Webin's receipt says what is wrong with it, as without files
    for element in root.iter("FILE"):
        name = element.get("filename")
        if name is None:
            continue
        yield FileRef(
            filename=name.strip(),
            checksum=(element.get("checksum") or "").strip().lower(),
            method=(element.get("checksum_method") or "MD5").strip().upper(),
        )


def _json_files(path: Path, text: str) -> Iterator[FileRef]:
    try:
        doc = json.loads(text)
    except ValueError:
        return  # as for XML
    stack: list[object] = [doc]
    found: list[FileRef] = []
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        elif isinstance(item, dict):
            name = item.get("fileName", item.get("filename"))
            if isinstance(name, str) and "checksum" in item:
                method = item.get("checksumMethod", item.get("checksum_method")) or "MD5"
                found.append(
                    FileRef(
                        filename=name.strip(),
                        checksum=str(item["checksum"]).strip().lower(),
                        method=str(method).strip().upper(),
                    )
                )
            else:
                stack.extend(reversed(list(item.values())))
    yield from found


async def check_files(
    ftp: FtpsClient, refs: list[FileRef], records: dict[str, Record | None]
) -> list[Problem]:
    """What is wrong with each file in the area (nothing: an empty list).

    ``records``: the upload state's record for each file name (``None`` when this
    machine did not upload it).
    """
    problems: list[Problem] = []
    for ref in refs:
        size = await ftp.size(ref.filename)
        if size is None:
            problems.append(Problem(ref=ref, reason="not in the upload area"))
            continue
        record = records.get(ref.filename)
        if record is not None and record.status == "done" and record.size == size:
            md5: str | None = record.md5
        else:
            if record is not None and record.status == "partial":
                problems.append(
                    Problem(
                        ref=ref,
                        reason=f"only partly uploaded ({size} of {record.size} bytes)",
                    )
                )
                continue
            sidecar = ref.filename + ".md5"
            body = await ftp.retrieve(sidecar, 256) if await ftp.size(sidecar) else b""
            md5 = body.decode("ascii", "replace").split()[0].lower() if body.strip() else None
        if ref.method != "MD5":
            continue  # only its presence can be checked from here
        if md5 is None:
            problems.append(
                Problem(
                    ref=ref,
                    reason="its MD5 is unknown: no FILE.md5 beside it, and it was not "
                    "uploaded from here",
                )
            )
        elif md5 != ref.checksum:
            problems.append(
                Problem(
                    ref=ref,
                    reason=f"MD5 in the area {md5}, the document says {ref.checksum or '-'}",
                )
            )
    return problems
