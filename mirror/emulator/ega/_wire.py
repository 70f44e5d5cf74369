"""EGA REST v2 on the wire: the JSON envelope, its lenient form fields, Basic credentials."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote_plus

from aiohttp import web

from .._send import send_document
from ._records import EgaFile
from ._state import EgaTicket

__all__ = [
    "JSON_ARRAY",
    "JSON_OBJECT",
    "Reply",
    "file_object",
    "form_object",
    "lenient_object",
    "send_reply",
    "ticket_object",
]

JSON_ARRAY = "us.monoid.json.JSONArray"
# The docs' /requests listing says JSONObject although its result is an array.
JSON_OBJECT = "us.monoid.json.JSONObject"


@dataclass(frozen=True, kw_only=True, slots=True)
class Reply:
    """One REST v2 answer. Errors too are HTTP 200: ``code``/``userMessage`` say what failed."""

    result: Sequence[Any]
    code: str = "200"
    message: str = "OK"
    technical: str = ""
    total: int | None = None
    result_type: str = JSON_ARRAY
    service: str = "access"

    def body(self) -> bytes:
        doc = {
            "header": {
                "apiVersion": "v2",
                "code": self.code,
                "docLink": "http://www.ebi.ac.uk/ega",
                "errorCode": self.code,
                "errorStack": "",
                "service": self.service,
                "technicalMessage": self.technical,
                "userMessage": self.message,
            },
            "response": {
                "numTotalResults": len(self.result) if self.total is None else self.total,
                "result": list(self.result),
                "resultType": self.result_type,
            },
        }
        # The Java service (us.monoid.json) writes compact JSON with sorted keys.
        return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


async def send_reply(request: web.Request, reply: Reply) -> web.StreamResponse:
    return await send_document(request, reply.body(), host="ega")


def file_object(item: EgaFile) -> dict[str, str]:
    """An EgaFile as REST v2 lists it: every value a string, the MD5 a placeholder."""
    return {
        "fileDataset": item.dataset,
        "fileID": item.file_id,
        # Both pyega's docstring and the API docs show this placeholder.
        "fileIndex": "keke.txt",
        # As on the real service (pyega's docstring): the listing has no usable MD5.
        "fileMD5": "TODO: MD5",
        "fileName": item.file_name,
        "fileSize": str(item.size),
        "fileStatus": item.status,
    }


def ticket_object(ticket: EgaTicket) -> dict[str, str]:
    return {
        "encryptionKey": "",
        "fileID": ticket.file.file_id,
        "fileName": ticket.file.file_name,
        "fileSize": str(ticket.file.size),
        "fileType": "EBI",
        "label": ticket.label,
        "ticket": ticket.ticket,
        "transferTarget": "",
        "transferType": "",
        "user": ticket.user,
    }


def _split(text: str, separator: str) -> list[str]:
    """Split at ``separator`` outside single or double quotes."""
    parts: list[str] = []
    current: list[str] = []
    quote, escaped = "", False
    for char in text:
        if escaped:
            escaped = False
        elif char == "\\" and quote:
            escaped = True
        elif quote:
            quote = "" if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char == separator:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return parts


def _unquote(token: str) -> str:
    token = token.strip()
    if len(token) >= 2 and token[0] == token[-1] and token[0] in "\"'":
        inner = token[1:-1]
        if token[0] == '"':
            try:
                return str(json.loads(token))
            except ValueError:
                return inner
        return inner
    return token


def lenient_object(text: str) -> dict[str, str] | None:
    """A flat JSON object read as the service's org.json-style parser reads it.

    That parser takes unquoted values: pyega sends ``{"rekey":KEY,…,"descriptor":LABEL}``
    with neither quoted, and the real service accepted it. Values come back as strings.
    """
    text = text.strip()
    try:
        strict = json.loads(text)
    except ValueError:
        strict = None
    if isinstance(strict, dict):
        return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in strict.items()}
    if len(text) < 2 or text[0] != "{" or text[-1] != "}":
        return None
    found: dict[str, str] = {}
    for item in _split(text[1:-1], ","):
        if not item.strip():
            continue
        pair = _split(item, ":")
        if len(pair) < 2:
            return None
        found[_unquote(pair[0])] = _unquote(":".join(pair[1:]))
    return found


async def form_object(request: web.Request, name: str) -> dict[str, str] | None:
    """The JSON object in form field ``name`` (``loginrequest``, ``downloadrequest``).

    Clients send it three ways: multipart (curl -F, the docs), urlencoded (requests'
    ``data={...}``), or raw and unencoded (pyega's ``data='loginrequest={...}'``, with
    no Content-Type at all). Raw JSON is taken verbatim, so a '+' or '&' in a
    password survives.
    """
    if request.content_type == "multipart/form-data":
        form = await request.post()
        value = form.get(name)
        if isinstance(value, (bytes, bytearray)):
            # aiohttp hands a part with a non-text Content-Type over as bytes.
            value = value.decode("utf-8", "replace")
        return lenient_object(value) if isinstance(value, str) else None
    body = (await request.read()).decode("utf-8", "replace")
    prefix = f"{name}="
    if body.startswith(prefix):
        raw = body[len(prefix) :]
        if raw.lstrip().startswith("{"):
            return lenient_object(raw)
        return lenient_object(unquote_plus(raw.partition("&")[0]))
    for key, value in parse_qsl(body, keep_blank_values=True):
        if key == name:
            return lenient_object(value)
    return None
