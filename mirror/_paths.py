"""Server-given names made safe, and the ``.part`` naming of work in progress."""

from __future__ import annotations

import hashlib
import os
import posixpath
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ._exceptions import UnsafePathError

__all__ = [
    "NAME_MAX",
    "PART_SUFFIX",
    "final_path",
    "join_under",
    "name_from_path",
    "name_from_url",
    "part_path",
    "safe_name",
]

PART_SUFFIX = ".part"
#: Longest file name, in bytes, of the file systems we write to (Linux, macOS).
NAME_MAX = 255
#: What is appended to a partial name: a segmented download's ``.slices``
#: sidecar, and that sidecar's own temporary file.
_PART_EXTRAS = len(".slices.tmp")
_FORBIDDEN = set("/\\\x00")


def safe_name(name: str) -> str:
    """``name`` as one path component, or :class:`UnsafePathError`.

    Archives hand us file names (MGnify aliases, EGA fileName, URL tails). A name is
    used only if it is already one plain component: we refuse rather than rewrite
    ``../x`` or ``/etc/x``, because a silently renamed file is a file the user
    cannot find.
    """
    if not name or name in (".", "..") or any(ch in _FORBIDDEN for ch in name):
        raise UnsafePathError(
            f"unsafe file name {name!r}: not a single plain path component", path=name
        )
    if any(ord(ch) < 32 for ch in name):
        raise UnsafePathError(f"unsafe file name {name!r}: control characters", path=name)
    if name.endswith(PART_SUFFIX):
        raise UnsafePathError(f"unsafe file name {name!r}: ends in {PART_SUFFIX}", path=name)
    return name


def name_from_url(url: str) -> str:
    """The last path segment of ``url``, percent-decoded and checked by :func:`safe_name`."""
    path = urlsplit(url if "://" in url else "//" + url).path
    return safe_name(unquote(posixpath.basename(path)))


def name_from_path(path: str) -> str:
    """The last segment of a plain path (``host/dir/name``), taken literally.

    ENA's ``*_ftp`` values are paths, not URLs: ``27604_8#1.cram`` is a whole file
    name (Sanger's lane#tag), ``%20`` is three characters. Nothing is decoded or cut
    at ``#`` or ``?``; the name is checked by :func:`safe_name`.
    """
    return safe_name(path.rsplit("/", 1)[-1])


def join_under(root: Path, relative: str) -> Path:
    """``root / relative``, refusing anything that would land outside ``root``."""
    parts = relative.split("/")
    for part in parts:
        safe_name(part)
    return root.joinpath(*parts)


def final_path(dest: Path, path: str, root: str | None = None) -> Path:
    """Where a task's file lands: under its own ``root`` if it has one, else ``dest``."""
    return join_under(Path(root) if root else dest, path)


def part_path(final: Path) -> Path:
    """Where ``final`` is written until it is complete and checked: beside it.

    ``NAME.part`` as a rule. A name too long for that (a server may give 255
    bytes) gets ``{its first bytes}~{hash of the name}.part.part``, within
    ``NAME_MAX`` with room for the ``.slices.tmp`` a segmented download appends.
    It cannot be another file's partial name: that would make the other file's
    name end in ``.part``, which :func:`safe_name` refuses, and the hash tells
    long names with the same first bytes apart.
    """
    name = final.name + PART_SUFFIX
    if len(os.fsencode(name)) + _PART_EXTRAS <= NAME_MAX:
        return final.with_name(name)
    raw = os.fsencode(final.name)
    tail = f"~{hashlib.sha256(raw).hexdigest()[:16]}{PART_SUFFIX}{PART_SUFFIX}"
    room = NAME_MAX - _PART_EXTRAS - len(tail)
    # Cut by bytes; a character the cut splits is left out whole.
    stem = raw[:room].decode("utf-8", errors="ignore")
    return final.with_name(stem + tail)
