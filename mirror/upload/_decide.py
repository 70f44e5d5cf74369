"""What to send of one file, decided from the local file, the remote size and the record
of the last upload: a pure function, table-tested (tests/test_upload_unit.py).

The rules (README "Uploading to Webin"):

- the record says ``done``, the local file is unchanged and the area holds as many
  bytes: nothing to send (its ``.md5`` is written if it is missing);
- the record says ``partial`` and the local file is unchanged: resume from the remote
  size when it is not larger than the local one (``REST n`` + ``STOR``);
- the area holds as many bytes but nothing records who sent them: hash the local file
  and compare with the area's ``.md5``: equal is done, anything else starts again;
- anything else (no remote file, a larger one, a changed local file): start again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ._state import Record

__all__ = ["Decision", "LocalFile", "decide"]

Action = Literal["skip", "resume", "restart", "compare"]


@dataclass(frozen=True, kw_only=True, slots=True)
class LocalFile:
    path: str
    size: int
    mtime_ns: int


@dataclass(frozen=True, kw_only=True, slots=True)
class Decision:
    action: Action
    #: Where sending starts (``resume``: the remote size; else 0).
    offset: int = 0
    #: Why, for ``-vv`` logs and tests.
    why: str = ""


def decide(local: LocalFile, remote: int | None, record: Record | None) -> Decision:
    same = (
        record is not None
        and record.local == local.path
        and record.size == local.size
        and record.mtime_ns == local.mtime_ns
    )
    if remote is None:
        return Decision(action="restart", why="not in the area")
    if remote > local.size:
        return Decision(action="restart", why="the area's file is larger than the local one")
    if record is not None and same:
        if record.status == "done" and record.md5 and remote == local.size:
            return Decision(action="skip", why="uploaded before")
        if record.status == "partial" or record.status == "done":
            # A "done" record with fewer bytes in the area: someone cut it; resume.
            return Decision(action="resume", offset=remote, why="a partial upload")
    if record is not None and not same:
        return Decision(action="restart", why="the local file changed since it was sent")
    if remote == local.size and remote > 0:
        return Decision(action="compare", why="same size, sent by something else")
    return Decision(action="restart", why="not sent from here")
