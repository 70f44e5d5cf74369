"""HTTP ranges for resuming: the request's headers and what to make of the answer (RFC 9110 §14)."""

from __future__ import annotations

import enum
import re

__all__ = ["RangeAction", "content_length", "decide", "parse_content_range", "resume_headers"]

_CONTENT_RANGE = re.compile(r"bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)")


class RangeAction(enum.Enum):
    APPEND = "append"  # 206 from our offset: keep what we have
    RESTART = "restart"  # 200: the server sends everything; start from zero
    COMPLETE = "complete"  # 416 and we already hold the whole file
    CHANGED = "changed"  # the server's file is not the one we started


def resume_headers(offset: int, validator: str | None) -> dict[str, str]:
    """Request headers for a download that already holds ``offset`` bytes."""
    if offset <= 0:
        return {}
    headers = {"Range": f"bytes={offset}-"}
    if validator:
        headers["If-Range"] = validator
    return headers


def parse_content_range(value: str | None) -> tuple[int | None, int | None, int | None]:
    """``(first, last, total)`` of a ``Content-Range`` header; ``None`` where absent."""
    if not value:
        return None, None, None
    m = _CONTENT_RANGE.fullmatch(value.strip())
    if not m:
        return None, None, None
    first = int(m[1]) if m[1] is not None else None
    last = int(m[2]) if m[2] is not None else None
    total = int(m[3]) if m[3] != "*" else None
    return first, last, total


def decide(status: int, offset: int, content_range: str | None, size: int | None) -> RangeAction:
    """What to do with a response to a (possibly ranged) GET, given ``offset`` bytes held."""
    first, _last, total = parse_content_range(content_range)
    if status == 206:
        if first != offset or (size is not None and total is not None and total != size):
            return RangeAction.CHANGED
        return RangeAction.APPEND
    if status == 416:
        # "bytes */N": we asked past the end. Whole already, or the file shrank.
        if total is not None and total == offset and (size is None or size == offset):
            return RangeAction.COMPLETE
        return RangeAction.CHANGED
    return RangeAction.RESTART


def content_length(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
