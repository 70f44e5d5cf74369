"""Checks of manifest values, each turning a bad value into a one-line located error.

A value is checked at its key path (mapping keys and list indexes from the top of
the manifest); :class:`Where` turns the path into the file, line and key a
``ManifestError`` names. Source modules build their entries' schemas from these.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TypeGuard

from ._exceptions import ManifestError

__all__ = [
    "DICT_ORIGIN",
    "Invalid",
    "KeyPath",
    "Where",
    "absolute",
    "article",
    "boolean",
    "case_hint",
    "choice",
    "describe",
    "format_path",
    "hex_check",
    "integer",
    "is_list",
    "mapping",
    "one_of",
    "optional_strings",
    "path_text",
    "pattern_check",
    "positive_number",
    "required",
    "show",
    "strings",
    "suggest",
    "text",
    "unknown_key",
]

#: What errors name as the "file" when the manifest was given as a mapping.
DICT_ORIGIN: Final = "<dict>"

#: A key path: mapping keys and list indexes from the top of the manifest.
KeyPath = tuple[str | int, ...]

_SIMPLE_KEY: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


def format_path(path: KeyPath) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _SIMPLE_KEY.fullmatch(part):
            out += f".{part}" if out else part
        else:
            out += f"[{part!r}]"
    return out


def show(text: str, limit: int = 60) -> str:
    """``repr`` of a user's string, shortened: a message stays one readable line."""
    return repr(text) if len(text) <= limit else repr(text[: limit - 1]) + "…"


def describe(value: object) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"a boolean ({'true' if value else 'false'})"
    if isinstance(value, int):
        return f"an integer ({value})"
    if isinstance(value, float):
        return f"a number ({value})"
    if isinstance(value, str):
        return f"a string ({show(value)})" if value else "an empty string"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, Sequence | set | frozenset):
        return "a list"
    return f"a {type(value).__name__}"


def one_of(choices: Sequence[str]) -> str:
    return ", ".join(choices)


def suggest(word: str, choices: Sequence[str]) -> str | None:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return close[0] if close else None


def unknown_key(key: str, allowed: Sequence[str]) -> str:
    suggestion = suggest(key, allowed)
    if suggestion is not None:
        return f"unknown key (did you mean {suggestion!r}?)"
    return f"unknown key (expected one of {one_of(allowed)})"


def case_hint(acc: str) -> str:
    """A hint for the near-misses people actually type: lower case, stray blanks."""
    # The registry lists every source's accession patterns; it imports the sources,
    # which import this module, so it is looked up when first needed.
    from ._registry import route_of

    if acc != acc.strip() and route_of(acc.strip()) is not None:
        return f" (remove the blanks: {acc.strip()!r})"
    if acc != acc.upper() and route_of(acc.upper()) is not None:
        return f" (accessions are upper case: {acc.upper()!r})"
    return ""


class Invalid(Exception):
    """A check's verdict on one value; turned into a ``ManifestError`` at its key."""


@dataclass(frozen=True, slots=True)
class Where:
    """Where the manifest came from, to turn a key path into a located error."""

    file: str | None
    lines: Mapping[KeyPath, int]
    raw: Mapping[KeyPath, str]
    base: Path

    def error(self, path: KeyPath, message: str) -> ManifestError:
        return ManifestError(message, file=self.file, line=self.line(path), key=format_path(path))

    def line(self, path: KeyPath) -> int | None:
        if not self.lines:
            return None
        # A key that is missing has no line of its own: report its parent's.
        while path not in self.lines:
            path = path[:-1]
        return self.lines[path]

    def expected(self, path: KeyPath, what: str, value: object) -> ManifestError:
        return self.error(path, f"expected {what}, got {describe(value)}")

    def resolve(self, text: str) -> Path:
        return absolute(self.base / Path(text).expanduser())


def is_list(value: object) -> TypeGuard[Sequence[object]]:
    return isinstance(value, Sequence) and not isinstance(value, str | bytes | bytearray)


def mapping(
    w: Where,
    path: KeyPath,
    value: object,
    allowed: Sequence[str],
    *,
    what: str = "a mapping",
    hints: Mapping[str, str] | None = None,
) -> dict[str, object]:
    if not isinstance(value, Mapping):
        raise w.expected(path, what, value)
    out: dict[str, object] = {}
    for key, item in value.items():
        if not isinstance(key, str):
            raise w.error(path, f"keys must be strings, got {describe(key)}")
        if key not in allowed:
            hint = (hints or {}).get(key)
            raise w.error((*path, key), hint or unknown_key(key, allowed))
        out[key] = item
    return out


def integer(w: Where, path: KeyPath, value: object, *, low: int, high: int | None = None) -> int:
    span = f"from {low} to {high}" if high is not None else f"of at least {low}"
    if isinstance(value, bool) or not isinstance(value, int):
        raise w.expected(path, f"an integer {span}", value)
    if value < low or (high is not None and value > high):
        raise w.error(path, f"must be an integer {span}, got {value}")
    return value


def positive_number(w: Where, path: KeyPath, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise w.expected(path, "a number greater than 0", value)
    if not math.isfinite(value) or value <= 0:
        raise w.error(path, f"must be a number greater than 0, got {value}")
    return float(value)


def boolean(w: Where, path: KeyPath, value: object) -> bool:
    if not isinstance(value, bool):
        raise w.expected(path, "true or false", value)
    return value


def text(w: Where, path: KeyPath, value: object, what: str = "a string") -> str:
    if not isinstance(value, str):
        raise w.expected(path, what, value)
    if not value.strip():
        raise w.error(path, f"expected {what}, got an empty string")
    return value


def path_text(w: Where, path: KeyPath, value: object, *, allow_pathlike: bool) -> str:
    # A mapping built in Python may reasonably carry a pathlib.Path; YAML never does.
    if allow_pathlike and isinstance(value, os.PathLike):
        value = os.fspath(value)
    return text(w, path, value, "a path (a string)")


def choice(w: Where, path: KeyPath, value: object, choices: Sequence[str]) -> str:
    if not isinstance(value, str):
        raise w.expected(path, f"one of {one_of(choices)}", value)
    if value not in choices:
        suggestion = suggest(value, choices)
        hint = f" (did you mean {suggestion!r}?)" if suggestion else ""
        raise w.error(path, f"{show(value)} is not one of {one_of(choices)}{hint}")
    return value


def strings(
    w: Where,
    path: KeyPath,
    value: object,
    *,
    item: str,
    check: Callable[[str], str] | None = None,
) -> tuple[str, ...]:
    """A list of strings (a single string counts as a list of one), checked, de-duplicated.

    ``check`` returns the (possibly normalised) string or raises ``Invalid``.
    """
    if isinstance(value, str):
        entries: list[tuple[KeyPath, object]] = [(path, value)]
    elif is_list(value):
        entries = [((*path, i), entry) for i, entry in enumerate(value)]
    else:
        raise w.expected(path, f"a list of {item}s", value)
    out: dict[str, None] = {}
    for entry_path, entry in entries:
        if not isinstance(entry, str):
            raise w.expected(entry_path, f"{article(item)} {item} (a string)", entry)
        if not entry:
            raise w.error(entry_path, f"expected {article(item)} {item}, got an empty string")
        if check is not None:
            try:
                entry = check(entry)
            except Invalid as exc:
                raise w.error(entry_path, str(exc)) from None
        out.setdefault(entry, None)
    return tuple(out)


def article(noun: str) -> str:
    return "an" if noun[:1].lower() in "aeiou" else "a"


def pattern_check(test: Callable[[str], bool], what: str) -> Callable[[str], str]:
    def check(acc: str) -> str:
        if not test(acc):
            raise Invalid(f"{show(acc)} is not {what}{case_hint(acc)}")
        return acc

    return check


def hex_check(pattern: re.Pattern[str], what: str) -> Callable[[str], str]:
    def check(digest: str) -> str:
        if not pattern.fullmatch(digest):
            raise Invalid(f"{show(digest)} is not {what}")
        return digest.lower()

    return check


def required(w: Where, path: KeyPath, body: Mapping[str, object], key: str) -> object:
    if key not in body:
        raise w.error(path, f"missing required key {key!r}")
    return body[key]


def optional_strings(
    w: Where,
    path: KeyPath,
    body: Mapping[str, object],
    key: str,
    *,
    item: str,
    check: Callable[[str], str] | None = None,
) -> tuple[str, ...]:
    value = body.get(key)
    return () if value is None else strings(w, (*path, key), value, item=item, check=check)


def absolute(path: Path) -> Path:
    """``path`` made absolute and ``..``-free, lexically: symlinks are kept as the user
    named them (``resolve()`` would rewrite them in every message and log line)."""
    return Path(os.path.normpath(path.expanduser().absolute()))
