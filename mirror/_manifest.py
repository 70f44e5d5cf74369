"""Load and validate a manifest (YAML file or mapping); every error names file, line and key."""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Final, Literal, TypeGuard, cast
from urllib.parse import urlsplit

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from ._accessions import (
    archive_of,
    ena_kind,
    is_ega_dataset,
    is_ega_file,
    is_mgnify_analysis,
    is_mgnify_study,
)
from ._config import (
    DEFAULT_ENDPOINTS,
    DEFAULT_HOSTS,
    ENA_FILE_FAMILIES,
    HOST_SCOPES,
    CramRefsSpec,
    EgaSpec,
    EnaFamily,
    EnaSpec,
    EnterobaseSpec,
    HostLimit,
    HostScope,
    Manifest,
    MgnifySpec,
    SourceSpec,
    Timeouts,
)
from ._exceptions import ManifestError, joined

__all__ = [
    "DICT_ORIGIN",
    "MAX_WORKERS",
    "accessions_from_text",
    "load_manifest",
    "manifest_from_accessions",
]

#: What errors name as the "file" when the manifest was given as a mapping.
DICT_ORIGIN: Final = "<dict>"
MAX_WORKERS: Final = 1024

# Throughout, an optional key written with no value (``hosts:`` alone, YAML null) counts
# as not given: templates keep such keys with their examples commented out.

#: A key path: mapping keys and list indexes from the top of the manifest.
_Path = tuple[str | int, ...]

_TOP_KEYS: Final = ("version", "dest", "workers", "hosts", "timeouts", "endpoints", "sources")
_SOURCE_KEYS: Final[Mapping[str, tuple[str, ...]]] = {
    "ena": ("accessions", "files"),
    "mgnify": ("studies", "analyses", "pipeline_version", "groups", "formats", "labels"),
    "enterobase": (
        "database",
        "query",
        "reldate",
        "only_fields",
        "orderby",
        "sortorder",
        "assemblies",
        "resource",
    ),
    "ega": ("datasets", "files", "protocol"),
    "cram_refs": ("md5", "sha1", "crams", "cache"),
}
_FAMILIES: Final[Mapping[str, EnaFamily]] = {
    "fastq": "fastq",
    "submitted": "submitted",
    "sra": "sra",
    "generated": "generated",
}
_FAMILY_NAMES: Final = tuple(_FAMILIES)
_ENTEROBASE_RESOURCES: Final = ("strains", "assemblies", "straindata", "traces")
_DEFAULT_DEST: Final = "mirror-data"

_SIMPLE_KEY: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_ENTEROBASE_DB: Final = re.compile(r"[a-z][a-z0-9_]*")
_MD5: Final = re.compile(r"[0-9a-fA-F]{32}")
_SHA1: Final = re.compile(r"[0-9a-fA-F]{40}")
_HOST_KEY: Final = re.compile(
    r"(?P<host>[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?|\[[0-9A-Fa-f:.]+\])"
    r"(?::(?P<port>[0-9]{1,5}))?"
)

# Matched against a key with case and separators removed, anywhere in the manifest: a
# secret written into a YAML file ends up in version control and in backups.
_CREDENTIAL_PARTS: Final = (
    "password",
    "passwd",
    "passphrase",
    "token",
    "secret",
    "username",
    "apikey",
    "rekey",
    "credential",
)
_CREDENTIAL_NAMES: Final = frozenset({"user", "login", "pass", "pwd", "auth", "authorization"})
_CREDENTIALS_MESSAGE: Final = (
    "credentials do not belong in the manifest: set them in the environment "
    "(EGA_USERNAME, EGA_PASSWORD, EGA_REKEY, ENTEROBASE_TOKEN, WEBIN_USERNAME, "
    "WEBIN_PASSWORD) or in ~/.netrc"
)

_YAML_MAP: Final = "tag:yaml.org,2002:map"
_YAML_SEQ: Final = "tag:yaml.org,2002:seq"
_YAML_MERGE: Final = "tag:yaml.org,2002:merge"
#: A manifest names sources and their accessions: tens of thousands of values at most.
#: Aliases can make a few lines stand for billions ("billion laughs"): stop counting here.
MAX_VALUES: Final = 100_000
#: Far deeper than any manifest, and shallow enough that no reader recurses out of stack.
MAX_DEPTH: Final = 64


# --------------------------------------------------------------------------- public API


def load_manifest(
    source: str | os.PathLike[str] | Mapping[str, object], *, base_dir: Path | None = None
) -> Manifest:
    """Validate a manifest given as a YAML file path or as a mapping.

    Relative paths (``dest``, ``cram_refs.cache`` and ``crams`` globs) resolve against
    ``base_dir`` when given, else the manifest file's directory, else (for a mapping)
    the current directory. Any problem raises ``ManifestError`` naming the file, the
    1-based line (files only) and the key path.
    """
    if isinstance(source, Mapping):
        base = _absolute(Path(base_dir) if base_dir is not None else Path.cwd())
        where = _Where(file=DICT_ORIGIN, lines={}, raw={}, base=base)
        try:
            return _build(source, where, origin=None)
        except RecursionError:
            # A mapping has no YAML events to count depth by: its walk is the check.
            raise ManifestError(
                "nested too deeply; a manifest needs a few levels", file=DICT_ORIGIN
            ) from None

    file = os.fspath(source)
    try:
        data = Path(file).read_bytes()
    except OSError as exc:
        raise ManifestError(f"cannot read manifest: {exc.strerror or exc}", file=file) from exc
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ManifestError(
            f"cannot read manifest: not UTF-8 text ({exc.reason})",
            file=file,
            line=line,
        ) from exc

    reader = _NodeReader(file, top_keys=_top_key_error)
    value = reader.read(text)
    base = Path(base_dir) if base_dir is not None else Path(file).parent
    where = _Where(file=file, lines=reader.lines, raw=reader.raw, base=_absolute(base))
    return _build(value, where, origin=file)


def manifest_from_accessions(
    accessions: Sequence[str],
    *,
    dest: Path,
    workers: int = 16,
    origin: str = "<command line>",
    files: Sequence[str] | None = None,
) -> Manifest:
    """Build the manifest of ``mirror get``: each accession's archive told by its prefix.

    Sources come in a fixed order (ENA, MGnify, EGA), each with its accessions in the
    order given, duplicates dropped. Surrounding blanks are stripped and blank entries
    (empty lines of an ``-i`` file) skipped. An unknown accession raises ``ManifestError``.
    ``files`` chooses the ENA file families (``--files``), as ``files:`` does in a manifest.
    """
    if isinstance(workers, bool) or not 1 <= workers <= MAX_WORKERS:
        raise ManifestError(f"workers must be from 1 to {MAX_WORKERS}, got {workers}", file=origin)
    families = None if files is None else _families_given(files, origin)
    ena: dict[str, None] = {}
    studies: dict[str, None] = {}
    analyses: dict[str, None] = {}
    datasets: dict[str, None] = {}
    ega_files: dict[str, None] = {}
    for given in accessions:
        acc = given.strip()
        if not acc:
            continue
        archive = archive_of(acc)
        if archive == "ena":
            ena[acc] = None
        elif archive == "mgnify":
            (studies if is_mgnify_study(acc) else analyses)[acc] = None
        elif archive == "ega":
            (datasets if is_ega_dataset(acc) else ega_files)[acc] = None
        else:
            raise ManifestError(
                f"{_show(acc)} is not an ENA, MGnify or EGA accession{_case_hint(acc)}",
                file=origin,
            )
    sources: list[SourceSpec] = []
    if ena:
        sources.append(EnaSpec(accessions=tuple(ena), files=families, from_command_line=True))
    if studies or analyses:
        sources.append(MgnifySpec(studies=tuple(studies), analyses=tuple(analyses)))
    if datasets or ega_files:
        sources.append(EgaSpec(datasets=tuple(datasets), files=tuple(ega_files)))
    if not sources:
        raise ManifestError("no accessions given", file=origin)
    return Manifest(
        dest=_absolute(Path(dest)).resolve(),
        sources=tuple(sources),
        workers=workers,
        origin=origin,
    )


def accessions_from_text(text: str, *, file: str) -> list[str]:
    """The accessions of an ``-i`` list: one or more a line, tab-, comma- or blank-separated.

    A byte-order mark, blank lines and ``#`` comments are allowed. Every entry that is
    not an accession is reported, each with its line: one ``ManifestError`` whose notes
    hold the others, so a long list is fixed in one pass.
    """
    found: list[str] = []
    bad: list[ManifestError] = []
    for number, line in enumerate(text.removeprefix("\ufeff").splitlines(), start=1):
        for entry in _ENTRY_SEPARATORS.split(line.split("#", 1)[0]):
            if not entry:
                continue
            if archive_of(entry) is None:
                message = f"{_show(entry)} is not an ENA, MGnify or EGA accession"
                bad.append(ManifestError(message + _case_hint(entry), file=file, line=number))
            else:
                found.append(entry)
    if bad:
        raise joined(bad)
    return found


_ENTRY_SEPARATORS: Final = re.compile(r"[\s,;]+")


def _families_given(files: Sequence[str], origin: str) -> tuple[EnaFamily, ...]:
    chosen: dict[EnaFamily, None] = {}
    for given in files:
        name = given.strip().lower()
        if not name:
            continue
        if name not in ENA_FILE_FAMILIES:
            raise ManifestError(
                f"--files: {_show(given)} is not an ENA file family; expected any of "
                f"{', '.join(ENA_FILE_FAMILIES)}",
                file=origin,
            )
        chosen[cast(EnaFamily, name)] = None
    if not chosen:
        raise ManifestError(
            f"--files: no file family given; expected any of {', '.join(ENA_FILE_FAMILIES)}",
            file=origin,
        )
    return tuple(chosen)


# --------------------------------------------------------------------------- YAML nodes


class _NodeReader:
    """Turns YAML text into plain values, remembering the line of every key path.

    ``yaml.safe_load`` forgets where things were; composing the node tree and
    building the values ourselves keeps the marks, and lets us refuse duplicate keys
    (which PyYAML silently lets the last one win).
    """

    def __init__(
        self, file: str, *, top_keys: Callable[[str], str | None] = lambda key: None
    ) -> None:
        self.file = file
        #: Key path -> 1-based line: the key's line for a mapping entry, the item's
        #: line for a list item.
        self.lines: dict[_Path, int] = {(): 1}
        #: Key path -> the text of a plain scalar as written (before YAML 1.1 typing).
        self.raw: dict[_Path, str] = {}
        self._constructor = SafeConstructor()
        self._open: set[int] = set()
        self._top_keys = top_keys
        self._values = 0

    def read(self, text: str) -> object:
        try:
            self._check_depth(text)
            root = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as exc:
            raise self._yaml_error(exc, ()) from exc
        except yaml.YAMLError as exc:
            raise self._reader_error(exc, text) from exc
        if root is None:
            return None
        if isinstance(root, MappingNode):
            # A bad top-level key is reported before any value under it is read.
            for key_node, _ in root.value:
                if isinstance(key_node, ScalarNode) and key_node.tag != _YAML_MERGE:
                    message = self._top_keys(str(key_node.value))
                    if message is not None:
                        raise self._error((str(key_node.value),), _line(key_node), message)
        return self._value(root, ())

    def _check_depth(self, text: str) -> None:
        """Refuse nesting deeper than :data:`MAX_DEPTH` before composing (which recurses).

        The parser is a state machine, not recursive: its events are safe to walk.
        """
        depth = 0
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    line = event.start_mark.line + 1 if event.start_mark is not None else None
                    raise ManifestError(
                        f"nested more than {MAX_DEPTH} levels deep; a manifest needs a few",
                        file=self.file,
                        line=line,
                    )
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1

    def _value(self, node: Node, path: _Path) -> object:
        self._values += 1
        if self._values > MAX_VALUES:
            raise self._error(
                path,
                _line(node),
                f"the manifest stands for more than {MAX_VALUES:,} values "
                "(YAML aliases expanding without end?); refusing to read further",
            )
        if isinstance(node, ScalarNode):
            try:
                value: object = self._constructor.construct_object(node)
            except yaml.MarkedYAMLError as exc:
                if "could not determine a constructor" in (exc.problem or ""):
                    message = f"unsupported YAML tag {node.tag!r}"
                    raise self._error(path, _line(node), message) from exc
                raise self._yaml_error(exc, path) from exc
            if node.style is None and not isinstance(value, str):
                self.raw[path] = str(node.value)
            return value
        if id(node) in self._open:
            raise self._error(path, _line(node), "a YAML alias refers to itself")
        self._open.add(id(node))
        try:
            if isinstance(node, SequenceNode) and node.tag == _YAML_SEQ:
                return self._sequence(node, path)
            if isinstance(node, MappingNode) and node.tag == _YAML_MAP:
                return self._mapping(node, path)
            raise self._error(path, _line(node), f"unsupported YAML tag {node.tag!r}")
        finally:
            self._open.discard(id(node))

    def _sequence(self, node: SequenceNode, path: _Path) -> list[object]:
        items: list[object] = []
        for index, item in enumerate(node.value):
            child = (*path, index)
            self.lines[child] = _line(item)
            items.append(self._value(item, child))
        return items

    def _mapping(self, node: MappingNode, path: _Path) -> dict[str, object]:
        first_seen: dict[str, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == _YAML_MERGE:
                continue
            name = self._key(key_node, path)
            if name in first_seen:
                raise self._error(
                    (*path, name),
                    _line(key_node),
                    f"duplicate key (first given at line {first_seen[name]})",
                )
            first_seen[name] = _line(key_node)
        # ``<<: *anchor`` merges are YAML's way to share settings; let PyYAML expand
        # them (explicit keys win), then read the result like any other mapping.
        try:
            self._constructor.flatten_mapping(node)
        except yaml.MarkedYAMLError as exc:
            raise self._yaml_error(exc, path) from exc
        out: dict[str, object] = {}
        for key_node, value_node in node.value:
            name = self._key(key_node, path)
            child = (*path, name)
            self.lines[child] = _line(key_node)
            out[name] = self._value(value_node, child)
        return out

    def _key(self, node: Node, path: _Path) -> str:
        if not isinstance(node, ScalarNode):
            raise self._error(path, _line(node), "a mapping key must be a plain name")
        # Keys are names: take them as written, so ``1:`` or ``yes:`` are not retyped.
        return str(node.value)

    def _error(self, path: _Path, line: int, message: str) -> ManifestError:
        return ManifestError(message, file=self.file, line=line, key=_format_path(path))

    def _yaml_error(self, exc: yaml.MarkedYAMLError, path: _Path) -> ManifestError:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        parts = []
        if exc.context:
            context = exc.context
            ctx_mark = exc.context_mark
            if context.startswith("while ") and ctx_mark is not None and ctx_mark.line + 1 != line:
                context += f" at line {ctx_mark.line + 1}"
            parts.append(context)
        if exc.problem:
            parts.append(exc.problem)
        message = _one_line(", ".join(parts) or "unreadable YAML")
        if path:
            return self._error(path, line, f"invalid value: {message}")
        return ManifestError(f"invalid YAML: {message}", file=self.file, line=line)

    def _reader_error(self, exc: yaml.YAMLError, text: str) -> ManifestError:
        # ReaderError (e.g. a control character) carries a character offset, no mark.
        position = getattr(exc, "position", None)
        line = text.count("\n", 0, position) + 1 if isinstance(position, int) else 1
        reason = getattr(exc, "reason", None)
        character = getattr(exc, "character", None)
        if isinstance(reason, str) and isinstance(character, int | str):
            code = ord(character) if isinstance(character, str) else character
            message = f"{reason} (character {code:#04x})"
        else:
            message = str(exc)
        return ManifestError(f"invalid YAML: {_one_line(message)}", file=self.file, line=line)


def _absolute(path: Path) -> Path:
    """``path`` made absolute and ``..``-free, lexically: symlinks are kept as the user
    named them (``resolve()`` would rewrite them in every message and log line)."""
    return Path(os.path.normpath(path.expanduser().absolute()))


def _line(node: Node) -> int:
    mark = node.start_mark
    return mark.line + 1 if mark is not None else 1


def _one_line(text: str) -> str:
    return " ".join(text.split())


# --------------------------------------------------------------------------- messages


def _format_path(path: _Path) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _SIMPLE_KEY.fullmatch(part):
            out += f".{part}" if out else part
        else:
            out += f"[{part!r}]"
    return out


def _show(text: str, limit: int = 60) -> str:
    """``repr`` of a user's string, shortened: a message stays one readable line."""
    return repr(text) if len(text) <= limit else repr(text[: limit - 1]) + "…"


def _describe(value: object) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"a boolean ({'true' if value else 'false'})"
    if isinstance(value, int):
        return f"an integer ({value})"
    if isinstance(value, float):
        return f"a number ({value})"
    if isinstance(value, str):
        return f"a string ({_show(value)})" if value else "an empty string"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, Sequence | set | frozenset):
        return "a list"
    return f"a {type(value).__name__}"


def _one_of(choices: Sequence[str]) -> str:
    return ", ".join(choices)


def _suggest(word: str, choices: Sequence[str]) -> str | None:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return close[0] if close else None


def _unknown_key(key: str, allowed: Sequence[str]) -> str:
    suggestion = _suggest(key, allowed)
    if suggestion is not None:
        return f"unknown key (did you mean {suggestion!r}?)"
    return f"unknown key (expected one of {_one_of(allowed)})"


def _case_hint(acc: str) -> str:
    """A hint for the near-misses people actually type: lower case, stray blanks."""
    if acc != acc.strip() and archive_of(acc.strip()) is not None:
        return f" (remove the blanks: {acc.strip()!r})"
    if acc != acc.upper() and archive_of(acc.upper()) is not None:
        return f" (accessions are upper case: {acc.upper()!r})"
    return ""


class _Invalid(Exception):
    """A check's verdict on one value; turned into a ``ManifestError`` at its key."""


# --------------------------------------------------------------------------- validation


@dataclass(frozen=True, slots=True)
class _Where:
    """Where the manifest came from, to turn a key path into a located error."""

    file: str | None
    lines: Mapping[_Path, int]
    raw: Mapping[_Path, str]
    base: Path

    def error(self, path: _Path, message: str) -> ManifestError:
        return ManifestError(message, file=self.file, line=self.line(path), key=_format_path(path))

    def line(self, path: _Path) -> int | None:
        if not self.lines:
            return None
        # A key that is missing has no line of its own: report its parent's.
        while path not in self.lines:
            path = path[:-1]
        return self.lines[path]

    def expected(self, path: _Path, what: str, value: object) -> ManifestError:
        return self.error(path, f"expected {what}, got {_describe(value)}")

    def resolve(self, text: str) -> Path:
        return _absolute(self.base / Path(text).expanduser())


def _build(value: object, w: _Where, *, origin: str | None) -> Manifest:
    if value is None:
        raise w.error((), "the manifest is empty; expected a mapping with at least 'sources'")
    if not isinstance(value, Mapping):
        raise w.expected((), f"a mapping ({_one_of(_TOP_KEYS)})", value)
    _reject_credentials(w, (), value)
    hints = {
        kind: f"unknown key (sources go in a list: 'sources:' then '- {kind}: ...')"
        for kind in _SOURCE_KEYS
    }
    top = _mapping(w, (), value, _TOP_KEYS, hints=hints)

    version = top.get("version")
    if version is not None:
        if isinstance(version, bool) or not isinstance(version, int):
            raise w.expected(("version",), "the integer 1", version)
        if version != 1:
            raise w.error(("version",), f"unsupported manifest version {version} (expected 1)")

    dest = top.get("dest")
    if dest is None:
        dest = _DEFAULT_DEST
    # Symlinks resolved, as for --dest: the same directory must have one name whatever
    # the current directory, or state named after it (EGA request labels) changes.
    dest_path = w.resolve(
        _path_text(w, ("dest",), dest, allow_pathlike=w.file == DICT_ORIGIN)
    ).resolve()
    workers = top.get("workers")
    n_workers = 16 if workers is None else _int(w, ("workers",), workers, low=1, high=MAX_WORKERS)
    hosts = _hosts(w, ("hosts",), top.get("hosts"))
    endpoints = _endpoints(w, ("endpoints",), top.get("endpoints"))
    timeouts = _timeouts(w, ("timeouts",), top.get("timeouts"))

    if "sources" not in top:
        raise w.error((), "missing required key 'sources'")
    raw_sources = top["sources"]
    if raw_sources is None or (_is_list(raw_sources) and not raw_sources):
        raise w.error(("sources",), "no sources given")
    if not _is_list(raw_sources):
        raise w.expected(("sources",), "a list of sources", raw_sources)
    sources = tuple(_source(w, ("sources", i), item) for i, item in enumerate(raw_sources))

    return Manifest(
        dest=dest_path,
        sources=sources,
        version=1,
        workers=n_workers,
        hosts=hosts,
        endpoints=endpoints,
        timeouts=timeouts,
        origin=origin,
    )


def _top_key_error(key: str) -> str | None:
    """The message ``_build`` would give for a top-level ``key``; ``None`` when allowed."""
    if _looks_like_credential(key):
        return _CREDENTIALS_MESSAGE
    if key in _TOP_KEYS:
        return None
    if key in _SOURCE_KEYS:
        return f"unknown key (sources go in a list: 'sources:' then '- {key}: ...')"
    return _unknown_key(key, _TOP_KEYS)


def _reject_credentials(w: _Where, path: _Path, value: object) -> None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            child = (*path, str(key))
            # Keys right under ``hosts`` are host names, not settings: never secrets.
            if isinstance(key, str) and path != ("hosts",) and _looks_like_credential(key):
                raise w.error(child, _CREDENTIALS_MESSAGE)
            _reject_credentials(w, child, item)
    elif _is_list(value):
        for index, item in enumerate(value):
            _reject_credentials(w, (*path, index), item)


def _looks_like_credential(key: str) -> bool:
    norm = re.sub(r"[\s_.-]", "", key.lower())
    return norm in _CREDENTIAL_NAMES or any(part in norm for part in _CREDENTIAL_PARTS)


# --------------------------------------------------------------------------- value checks


def _is_list(value: object) -> TypeGuard[Sequence[object]]:
    return isinstance(value, Sequence) and not isinstance(value, str | bytes | bytearray)


def _mapping(
    w: _Where,
    path: _Path,
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
            raise w.error(path, f"keys must be strings, got {_describe(key)}")
        if key not in allowed:
            hint = (hints or {}).get(key)
            raise w.error((*path, key), hint or _unknown_key(key, allowed))
        out[key] = item
    return out


def _int(w: _Where, path: _Path, value: object, *, low: int, high: int | None = None) -> int:
    span = f"from {low} to {high}" if high is not None else f"of at least {low}"
    if isinstance(value, bool) or not isinstance(value, int):
        raise w.expected(path, f"an integer {span}", value)
    if value < low or (high is not None and value > high):
        raise w.error(path, f"must be an integer {span}, got {value}")
    return value


def _positive_number(w: _Where, path: _Path, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise w.expected(path, "a number greater than 0", value)
    if not math.isfinite(value) or value <= 0:
        raise w.error(path, f"must be a number greater than 0, got {value}")
    return float(value)


def _bool(w: _Where, path: _Path, value: object) -> bool:
    if not isinstance(value, bool):
        raise w.expected(path, "true or false", value)
    return value


def _text(w: _Where, path: _Path, value: object, what: str = "a string") -> str:
    if not isinstance(value, str):
        raise w.expected(path, what, value)
    if not value.strip():
        raise w.error(path, f"expected {what}, got an empty string")
    return value


def _path_text(w: _Where, path: _Path, value: object, *, allow_pathlike: bool) -> str:
    # A mapping built in Python may reasonably carry a pathlib.Path; YAML never does.
    if allow_pathlike and isinstance(value, os.PathLike):
        value = os.fspath(value)
    return _text(w, path, value, "a path (a string)")


def _choice(w: _Where, path: _Path, value: object, choices: Sequence[str]) -> str:
    if not isinstance(value, str):
        raise w.expected(path, f"one of {_one_of(choices)}", value)
    if value not in choices:
        suggestion = _suggest(value, choices)
        hint = f" (did you mean {suggestion!r}?)" if suggestion else ""
        raise w.error(path, f"{_show(value)} is not one of {_one_of(choices)}{hint}")
    return value


def _strings(
    w: _Where,
    path: _Path,
    value: object,
    *,
    item: str,
    check: Callable[[str], str] | None = None,
) -> tuple[str, ...]:
    """A list of strings (a single string counts as a list of one), checked, de-duplicated.

    ``check`` returns the (possibly normalised) string or raises ``_Invalid``.
    """
    if isinstance(value, str):
        entries: list[tuple[_Path, object]] = [(path, value)]
    elif _is_list(value):
        entries = [((*path, i), entry) for i, entry in enumerate(value)]
    else:
        raise w.expected(path, f"a list of {item}s", value)
    out: dict[str, None] = {}
    for entry_path, entry in entries:
        if not isinstance(entry, str):
            raise w.expected(entry_path, f"{_article(item)} {item} (a string)", entry)
        if not entry:
            raise w.error(entry_path, f"expected {_article(item)} {item}, got an empty string")
        if check is not None:
            try:
                entry = check(entry)
            except _Invalid as exc:
                raise w.error(entry_path, str(exc)) from None
        out.setdefault(entry, None)
    return tuple(out)


def _article(noun: str) -> str:
    return "an" if noun[:1].lower() in "aeiou" else "a"


# --------------------------------------------------------------------------- top level


def _hosts(w: _Where, path: _Path, value: object) -> Mapping[str, HostLimit]:
    if value is None:
        return MappingProxyType({})
    if not isinstance(value, Mapping):
        raise w.expected(path, "a mapping of host names to limits", value)
    out: dict[str, HostLimit] = {}
    for key, limits in value.items():
        if not isinstance(key, str):
            raise w.error(path, f"keys must be host names, got {_describe(key)}")
        here = (*path, key)
        host = _host_key(w, here, key)
        if host in out:
            raise w.error(here, f"host {host!r} is given twice")
        body = _mapping(
            w,
            here,
            limits,
            ("rate", "connections", "scope"),
            what="a mapping with rate, connections and/or scope",
        )
        rate, connections, scope = body.get("rate"), body.get("connections"), body.get("scope")
        if rate is None and connections is None and scope is None:
            raise w.error(here, "expected rate, connections and/or scope")
        # Setting one limit must not drop a published default for the other one.
        bare = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
        default = DEFAULT_HOSTS.get(host) or DEFAULT_HOSTS.get(bare) or HostLimit()
        out[host] = HostLimit(
            rate=default.rate if rate is None else _positive_number(w, (*here, "rate"), rate),
            connections=(
                default.connections
                if connections is None
                else _int(w, (*here, "connections"), connections, low=1)
            ),
            scope=(
                default.scope
                if scope is None
                else cast(HostScope, _choice(w, (*here, "scope"), scope, HOST_SCOPES))
            ),
        )
    return MappingProxyType(out)


def _timeouts(w: _Where, path: _Path, value: object) -> Timeouts:
    if value is None:
        return Timeouts()
    names = ("connect", "read", "host_down")
    body = _mapping(w, path, value, names, what="a mapping of seconds (connect, read, host_down)")
    given = {
        name: _positive_number(w, (*path, name), body[name])
        for name in names
        if body.get(name) is not None
    }
    return Timeouts(**given)


def _host_key(w: _Where, path: _Path, key: str) -> str:
    if "/" in key:
        raise w.error(path, f"{_show(key)} is a URL; give the host name alone (or host:port)")
    match = _HOST_KEY.fullmatch(key)
    port = match["port"] if match else None
    if match is None or (port is not None and not 0 < int(port) < 65536):
        raise w.error(path, f"{_show(key)} is not a host name or host:port")
    # URL hosts are compared lower-cased (aiohttp/yarl normalise them so).
    return key.lower()


def _endpoints(w: _Where, path: _Path, value: object) -> Mapping[str, str]:
    if value is None:
        return DEFAULT_ENDPOINTS
    body = _mapping(w, path, value, tuple(DEFAULT_ENDPOINTS), what="a mapping of service URLs")
    merged = dict(DEFAULT_ENDPOINTS)
    for key, url in body.items():
        merged[key] = _url(w, (*path, key), url)
    return MappingProxyType(merged)


def _url(w: _Where, path: _Path, value: object) -> str:
    text = _text(w, path, value, "an http(s) URL")
    try:
        parts = urlsplit(text)
        _ = parts.port  # raises ValueError on a port that is not a number in range
    except ValueError:
        raise w.error(path, f"{_show(text)} is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise w.error(path, f"{_show(text)} is not an http or https URL")
    if parts.query or parts.fragment:
        raise w.error(path, f"{_show(text)}: a base URL takes no query or fragment")
    # Paths are joined as base + "/" + ...; a trailing slash would double it.
    return text.rstrip("/")


# --------------------------------------------------------------------------- sources


def _source(w: _Where, path: _Path, value: object) -> SourceSpec:
    kinds = tuple(_SOURCE_KEYS)
    if not isinstance(value, Mapping):
        raise w.expected(path, f"a mapping with one of {_one_of(kinds)}", value)
    if not value:
        raise w.error(path, f"empty source; expected one of {_one_of(kinds)}")
    present = [key for key in value if isinstance(key, str) and key in _SOURCE_KEYS]
    # A source body indented one level too little makes its keys siblings of the kind.
    hints = {
        key: f"unknown key (indent it under '{kind}:')"
        for kind in present
        for key in _SOURCE_KEYS[kind]
    }
    _mapping(w, path, value, kinds, hints=hints)
    if len(present) > 1:
        raise w.error(
            path,
            f"one source per list item, found {' and '.join(present)} "
            "(start each with its own '- ')",
        )
    kind = present[0]
    body = value[kind]
    here = (*path, kind)
    fields = {} if body is None else _mapping(w, here, body, _SOURCE_KEYS[kind])
    builders: dict[str, Callable[[_Where, _Path, dict[str, object]], SourceSpec]] = {
        "ena": _ena,
        "mgnify": _mgnify,
        "enterobase": _enterobase,
        "ega": _ega,
        "cram_refs": _cram_refs,
    }
    return builders[kind](w, here, fields)


def _ena_accession(acc: str) -> str:
    if ena_kind(acc) is None:
        other = archive_of(acc)
        if other == "mgnify":
            hint = " (it is a MGnify accession: list it under 'mgnify:')"
        elif other == "ega":
            hint = " (it is an EGA accession: list it under 'ega:')"
        else:
            hint = _case_hint(acc)
        raise _Invalid(f"{_show(acc)} is not an ENA accession{hint}")
    return acc


def _pattern_check(test: Callable[[str], bool], what: str) -> Callable[[str], str]:
    def check(acc: str) -> str:
        if not test(acc):
            raise _Invalid(f"{_show(acc)} is not {what}{_case_hint(acc)}")
        return acc

    return check


def _hex_check(pattern: re.Pattern[str], what: str) -> Callable[[str], str]:
    def check(digest: str) -> str:
        if not pattern.fullmatch(digest):
            raise _Invalid(f"{_show(digest)} is not {what}")
        return digest.lower()

    return check


def _family(name: str) -> str:
    if name not in _FAMILIES:
        suggestion = _suggest(name, _FAMILY_NAMES)
        if suggestion is not None:
            hint = f"did you mean {suggestion!r}?"
        else:
            hint = f"expected one of {_one_of(_FAMILY_NAMES)}"
        raise _Invalid(f"unknown file family {_show(name)} ({hint})")
    return name


def _required(w: _Where, path: _Path, body: Mapping[str, object], key: str) -> object:
    if key not in body:
        raise w.error(path, f"missing required key {key!r}")
    return body[key]


def _ena(w: _Where, path: _Path, body: dict[str, object]) -> EnaSpec:
    raw = _required(w, path, body, "accessions")
    here = (*path, "accessions")
    accessions = (
        () if raw is None else _strings(w, here, raw, item="accession", check=_ena_accession)
    )
    if not accessions:
        raise w.error(here, "no accessions given")
    files: tuple[EnaFamily, ...] | None = None
    raw_files = body.get("files")
    if raw_files is not None:
        names = _strings(w, (*path, "files"), raw_files, item="file family", check=_family)
        if not names:
            raise w.error(
                (*path, "files"),
                f"no file families given (choose from {_one_of(_FAMILY_NAMES)}, "
                "or leave out 'files' for the defaults)",
            )
        files = tuple(_FAMILIES[name] for name in names)
    return EnaSpec(accessions=accessions, files=files)


def _optional_strings(
    w: _Where,
    path: _Path,
    body: Mapping[str, object],
    key: str,
    *,
    item: str,
    check: Callable[[str], str] | None = None,
) -> tuple[str, ...]:
    value = body.get(key)
    return () if value is None else _strings(w, (*path, key), value, item=item, check=check)


def _mgnify(w: _Where, path: _Path, body: dict[str, object]) -> MgnifySpec:
    studies = _optional_strings(
        w,
        path,
        body,
        "studies",
        item="MGnify study accession",
        # MGnify looks a study up by its ENA study or BioProject accession too.
        check=_pattern_check(
            lambda acc: is_mgnify_study(acc) or ena_kind(acc) in ("study", "project"),
            "a MGnify study accession (MGYS and 8 digits) or an ENA study (ERP…, PRJ…)",
        ),
    )
    analyses = _optional_strings(
        w,
        path,
        body,
        "analyses",
        item="MGnify analysis accession",
        check=_pattern_check(is_mgnify_analysis, "a MGnify analysis accession (MGYA and 8 digits)"),
    )
    if not studies and not analyses:
        raise w.error(path, "no studies or analyses given")
    version = body.get("pipeline_version")
    return MgnifySpec(
        studies=studies,
        analyses=analyses,
        pipeline_version=None if version is None else _pipeline_version(w, path, version),
        groups=_optional_strings(w, path, body, "groups", item="group"),
        formats=_optional_strings(w, path, body, "formats", item="format"),
        labels=_optional_strings(w, path, body, "labels", item="label"),
    )


def _pipeline_version(w: _Where, path: _Path, value: object) -> str:
    here = (*path, "pipeline_version")
    if isinstance(value, str):
        text = _text(w, here, value, "a version such as '5.0'")
        # MGnify's filter takes only its own spelling ("5.0"): "5" is answered with 400.
        return f"{text}.0" if text.isdigit() else text
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise w.expected(here, "a version such as '5.0'", value)
    # ``5.10`` unquoted is the float 5.1: prefer the text as written when we have it.
    written = w.raw.get(here)
    if written is not None and "." in written:
        return written
    # MGnify names every pipeline "N.M"; a bare ``5`` means 5.0.
    return f"{value}.0" if isinstance(value, int) else str(value)


def _enterobase(w: _Where, path: _Path, body: dict[str, object]) -> EnterobaseSpec:
    database = _text(
        w, (*path, "database"), _required(w, path, body, "database"), "a database name"
    )
    if not _ENTEROBASE_DB.fullmatch(database):
        raise w.error(
            (*path, "database"),
            f"{_show(database)} is not an EnteroBase database name (such as 'senterica')",
        )
    reldate = body.get("reldate")
    orderby = body.get("orderby")
    sortorder = body.get("sortorder")
    assemblies = body.get("assemblies")
    resource = body.get("resource")
    order: Literal["asc", "desc"] | None = None
    if sortorder is not None:
        chosen = _choice(w, (*path, "sortorder"), sortorder, ("asc", "desc"))
        order = "asc" if chosen == "asc" else "desc"
    return EnterobaseSpec(
        database=database,
        query=_query(w, (*path, "query"), body.get("query")),
        reldate=None if reldate is None else _int(w, (*path, "reldate"), reldate, low=1),
        only_fields=_optional_strings(w, path, body, "only_fields", item="field name"),
        orderby=None if orderby is None else _text(w, (*path, "orderby"), orderby),
        sortorder=order,
        assemblies=False if assemblies is None else _bool(w, (*path, "assemblies"), assemblies),
        resource=(
            "assemblies"
            if resource is None
            else _choice(w, (*path, "resource"), resource, _ENTEROBASE_RESOURCES)
        ),
    )


def _query(w: _Where, path: _Path, value: object) -> Mapping[str, str]:
    if value is None:
        return MappingProxyType({})
    if not isinstance(value, Mapping):
        raise w.expected(path, "a mapping of query parameters", value)
    out: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not key:
            raise w.error(path, f"parameter names must be strings, got {_describe(key)}")
        here = (*path, key)
        if isinstance(item, str):
            out[key] = item
            continue
        if item is None or not isinstance(item, bool | int | float):
            raise w.expected(here, "a string, number or boolean", item)
        written = w.raw.get(here)
        if isinstance(item, bool):
            # YAML 1.1 reads ``NO`` (Norway) or ``off`` as false; a query value is
            # text, so keep such words as written and only spell true/false canonically.
            if written is not None and written.lower() not in ("true", "false"):
                out[key] = written
            else:
                out[key] = "true" if item else "false"
        else:
            # ``0123`` would read as octal 83; the server wants what the user wrote.
            out[key] = written if written is not None else str(item)
    return MappingProxyType(out)


def _ega(w: _Where, path: _Path, body: dict[str, object]) -> EgaSpec:
    datasets = _optional_strings(
        w,
        path,
        body,
        "datasets",
        item="EGA dataset accession",
        check=_pattern_check(is_ega_dataset, "an EGA dataset accession (EGAD and 11 digits)"),
    )
    files = _optional_strings(
        w,
        path,
        body,
        "files",
        item="EGA file accession",
        check=_pattern_check(is_ega_file, "an EGA file accession (EGAF and 11 digits)"),
    )
    if not datasets and not files:
        raise w.error(path, "no datasets or files given")
    raw = body.get("protocol")
    protocol: Literal["tickets", "data-api"] = "tickets"
    if raw is not None:
        chosen = _choice(w, (*path, "protocol"), raw, ("tickets", "data-api"))
        protocol = "data-api" if chosen == "data-api" else "tickets"
    return EgaSpec(datasets=datasets, files=files, protocol=protocol)


def _cram_refs(w: _Where, path: _Path, body: dict[str, object]) -> CramRefsSpec:
    md5 = _optional_strings(
        w, path, body, "md5", item="MD5", check=_hex_check(_MD5, "an MD5 (32 hex digits)")
    )
    sha1 = _optional_strings(
        w, path, body, "sha1", item="SHA-1", check=_hex_check(_SHA1, "a SHA-1 (40 hex digits)")
    )
    # Relative globs are anchored to the manifest's directory, so the same manifest
    # finds the same CRAMs whatever the current directory of the run.
    crams = tuple(
        str(w.resolve(pattern))
        for pattern in _optional_strings(w, path, body, "crams", item="glob")
    )
    if not md5 and not sha1 and not crams:
        raise w.error(path, "no md5, sha1 or crams given")
    cache = body.get("cache")
    if cache is None:
        return CramRefsSpec(md5=md5, sha1=sha1, crams=crams)
    text = _path_text(w, (*path, "cache"), cache, allow_pathlike=w.file == DICT_ORIGIN)
    return CramRefsSpec(md5=md5, sha1=sha1, crams=crams, cache=w.resolve(text))
