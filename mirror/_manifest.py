"""Load and validate a manifest (YAML file or mapping); every error names file, line and key.

The top level (``dest``, ``workers``, ``hosts``, ``timeouts``, ``endpoints``,
``samplesheets``) is read
here; each entry under ``sources:`` by the source kind whose key it has
(:mod:`mirror._registry`). YAML is read by :mod:`mirror._yaml`, values are checked by
:mod:`mirror._validate`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, cast
from urllib.parse import urlsplit

from . import _validate as v
from ._config import (
    DEFAULT_HOSTS,
    HOST_SCOPES,
    HostLimit,
    HostScope,
    Manifest,
    SourceSpec,
    Timeouts,
)
from ._exceptions import ManifestError, joined
from ._manifest_dest import DEFAULT_DEST
from ._registry import (
    OTHER_ENVIRONMENT,
    GetOptions,
    SourceKind,
    default_endpoints,
    environment_names,
    kinds,
    route_of,
)
from ._samplesheet_rules import SHEET_FORMATS
from ._validate import DICT_ORIGIN, KeyPath, Where
from ._yaml import MAX_DEPTH, MAX_VALUES, NodeReader

__all__ = [
    "DICT_ORIGIN",
    "MAX_DEPTH",
    "MAX_VALUES",
    "MAX_WORKERS",
    "accessions_from_text",
    "load_manifest",
    "manifest_from_accessions",
]

MAX_WORKERS: Final = 1024

# Throughout, an optional key written with no value (``hosts:`` alone, YAML null) counts
# as not given: templates keep such keys with their examples commented out.

_TOP_KEYS: Final = (
    "version",
    "dest",
    "workers",
    "hosts",
    "timeouts",
    "endpoints",
    "samplesheets",
    "sources",
)

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


def _credentials_message() -> str:
    names = (*environment_names(optional=False), *OTHER_ENVIRONMENT)
    return (
        "credentials do not belong in the manifest: set them in the environment "
        f"({', '.join(names)}) or in ~/.netrc"
    )


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
        base = v.absolute(Path(base_dir) if base_dir is not None else Path.cwd())
        where = Where(file=DICT_ORIGIN, lines={}, raw={}, base=base)
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

    reader = NodeReader(file, top_keys=_top_key_error)
    value = reader.read(text)
    base = Path(base_dir) if base_dir is not None else Path(file).parent
    where = Where(file=file, lines=reader.lines, raw=reader.raw, base=v.absolute(base))
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

    Sources come in the registry's order (ENA, MGnify, EGA), each with its accessions
    in the order given, duplicates dropped. Surrounding blanks are stripped and blank entries
    (empty lines of an ``-i`` file) skipped. An unknown accession raises ``ManifestError``.
    ``files`` (``--files``) goes to the sources that take it: ENA's file families.
    """
    if isinstance(workers, bool) or not 1 <= workers <= MAX_WORKERS:
        raise ManifestError(f"workers must be from 1 to {MAX_WORKERS}, got {workers}", file=origin)
    options = GetOptions(files=files, origin=origin)
    routes = [(kind.key, kind.accessions) for kind in kinds() if kind.accessions is not None]
    for _, accepts in routes:
        accepts.check(options)
    claimed: dict[str, dict[str, None]] = {key: {} for key, _ in routes}
    for given in accessions:
        acc = given.strip()
        if not acc:
            continue
        route = route_of(acc)
        if route is None:
            raise ManifestError(
                f"{v.show(acc)} is not {_archives()} accession{v.case_hint(acc)}", file=origin
            )
        claimed[route[0].key][acc] = None
    sources = [
        accepts.entry(tuple(claimed[key]), options) for key, accepts in routes if claimed[key]
    ]
    if not sources:
        raise ManifestError("no accessions given", file=origin)
    return Manifest(
        dest=v.absolute(Path(dest)).resolve(),
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
            if route_of(entry) is None:
                message = f"{v.show(entry)} is not {_archives()} accession"
                bad.append(ManifestError(message + v.case_hint(entry), file=file, line=number))
            else:
                found.append(entry)
    if bad:
        raise joined(bad)
    return found


_ENTRY_SEPARATORS: Final = re.compile(r"[\s,;]+")


def _archives() -> str:
    """``an ENA, MGnify or EGA``: the archives ``mirror get`` knows, for a message."""
    titles = [k.accessions.title for k in kinds() if k.accessions is not None]
    named = ", ".join(titles[:-1]) + " or " + titles[-1] if len(titles) > 1 else titles[0]
    return f"{v.article(named)} {named}"


def _build(value: object, w: Where, *, origin: str | None) -> Manifest:
    if value is None:
        raise w.error((), "the manifest is empty; expected a mapping with at least 'sources'")
    if not isinstance(value, Mapping):
        raise w.expected((), f"a mapping ({v.one_of(_TOP_KEYS)})", value)
    _reject_credentials(w, (), value)
    hints = {
        kind: f"unknown key (sources go in a list: 'sources:' then '- {kind}: ...')"
        for kind in _source_keys()
    }
    top = v.mapping(w, (), value, _TOP_KEYS, hints=hints)

    version = top.get("version")
    if version is not None:
        if isinstance(version, bool) or not isinstance(version, int):
            raise w.expected(("version",), "the integer 1", version)
        if version != 1:
            raise w.error(("version",), f"unsupported manifest version {version} (expected 1)")

    dest = top.get("dest")
    if dest is None:
        dest = DEFAULT_DEST
    # Symlinks resolved, as for --dest: the same directory must have one name whatever
    # the current directory, or state named after it (EGA request labels) changes.
    dest_path = w.resolve(
        v.path_text(w, ("dest",), dest, allow_pathlike=w.file == DICT_ORIGIN)
    ).resolve()
    workers = top.get("workers")
    n_workers = (
        16 if workers is None else v.integer(w, ("workers",), workers, low=1, high=MAX_WORKERS)
    )
    hosts = _hosts(w, ("hosts",), top.get("hosts"))
    endpoints = _endpoints(w, ("endpoints",), top.get("endpoints"))
    timeouts = _timeouts(w, ("timeouts",), top.get("timeouts"))
    samplesheets = _samplesheets(w, ("samplesheets",), top.get("samplesheets"))

    if "sources" not in top:
        raise w.error((), "missing required key 'sources'")
    raw_sources = top["sources"]
    if raw_sources is None or (v.is_list(raw_sources) and not raw_sources):
        raise w.error(("sources",), "no sources given")
    if not v.is_list(raw_sources):
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
        samplesheets=samplesheets,
    )


def _samplesheets(w: Where, path: KeyPath, value: object) -> tuple[str, ...]:
    """``samplesheets: [rnaseq, mag]`` (or one name): formats of ``mirror samplesheet``."""
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    if not v.is_list(items):
        raise w.expected(path, f"a list of samplesheet formats ({v.one_of(SHEET_FORMATS)})", value)
    out: list[str] = []
    for i, item in enumerate(items):
        where = (*path, i) if v.is_list(value) else path
        if not isinstance(item, str) or item not in SHEET_FORMATS:
            raise w.expected(where, f"a samplesheet format ({v.one_of(SHEET_FORMATS)})", item)
        if item not in out:
            out.append(item)
    return tuple(out)


def _top_key_error(key: str) -> str | None:
    """The message ``_build`` would give for a top-level ``key``; ``None`` when allowed."""
    if _looks_like_credential(key):
        return _credentials_message()
    if key in _TOP_KEYS:
        return None
    if key in _source_keys():
        return f"unknown key (sources go in a list: 'sources:' then '- {key}: ...')"
    return v.unknown_key(key, _TOP_KEYS)


def _reject_credentials(w: Where, path: KeyPath, value: object) -> None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            child = (*path, str(key))
            # Keys right under ``hosts`` are host names, not settings: never secrets.
            if isinstance(key, str) and path != ("hosts",) and _looks_like_credential(key):
                raise w.error(child, _credentials_message())
            _reject_credentials(w, child, item)
    elif v.is_list(value):
        for index, item in enumerate(value):
            _reject_credentials(w, (*path, index), item)


def _looks_like_credential(key: str) -> bool:
    norm = re.sub(r"[\s_.-]", "", key.lower())
    return norm in _CREDENTIAL_NAMES or any(part in norm for part in _CREDENTIAL_PARTS)


def _hosts(w: Where, path: KeyPath, value: object) -> Mapping[str, HostLimit]:
    if value is None:
        return MappingProxyType({})
    if not isinstance(value, Mapping):
        raise w.expected(path, "a mapping of host names to limits", value)
    out: dict[str, HostLimit] = {}
    for key, limits in value.items():
        if not isinstance(key, str):
            raise w.error(path, f"keys must be host names, got {v.describe(key)}")
        here = (*path, key)
        host = _host_key(w, here, key)
        if host in out:
            raise w.error(here, f"host {host!r} is given twice")
        body = v.mapping(
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
            rate=default.rate if rate is None else v.positive_number(w, (*here, "rate"), rate),
            connections=(
                default.connections
                if connections is None
                else v.integer(w, (*here, "connections"), connections, low=1)
            ),
            scope=(
                default.scope
                if scope is None
                else cast(HostScope, v.choice(w, (*here, "scope"), scope, HOST_SCOPES))
            ),
        )
    return MappingProxyType(out)


def _timeouts(w: Where, path: KeyPath, value: object) -> Timeouts:
    if value is None:
        return Timeouts()
    names = ("connect", "read", "host_down")
    body = v.mapping(w, path, value, names, what="a mapping of seconds (connect, read, host_down)")
    given = {
        name: v.positive_number(w, (*path, name), body[name])
        for name in names
        if body.get(name) is not None
    }
    return Timeouts(**given)


def _host_key(w: Where, path: KeyPath, key: str) -> str:
    if "/" in key:
        raise w.error(path, f"{v.show(key)} is a URL; give the host name alone (or host:port)")
    match = _HOST_KEY.fullmatch(key)
    port = match["port"] if match else None
    if match is None or (port is not None and not 0 < int(port) < 65536):
        raise w.error(path, f"{v.show(key)} is not a host name or host:port")
    # URL hosts are compared lower-cased (aiohttp/yarl normalise them so).
    return key.lower()


def _endpoints(w: Where, path: KeyPath, value: object) -> Mapping[str, str]:
    if value is None:
        return default_endpoints()
    defaults = default_endpoints()
    body = v.mapping(w, path, value, tuple(defaults), what="a mapping of service URLs")
    merged = dict(defaults)
    for key, url in body.items():
        # A service reached over SFTP (the EGA outbox) takes an sftp:// URL, the Webin
        # upload area an ftps:// one.
        scheme = urlsplit(defaults[key]).scheme
        schemes = (scheme,) if scheme in ("sftp", "ftps") else ("http", "https")
        merged[key] = _url(w, (*path, key), url, schemes)
    return MappingProxyType(merged)


def _url(
    w: Where, path: KeyPath, value: object, schemes: tuple[str, ...] = ("http", "https")
) -> str:
    what = f"an {schemes[0]} URL" if len(schemes) == 1 else "an http(s) URL"
    text = v.text(w, path, value, what)
    try:
        parts = urlsplit(text)
        _ = parts.port  # raises ValueError on a port that is not a number in range
    except ValueError:
        raise w.error(path, f"{v.show(text)} is not a valid URL") from None
    if parts.scheme not in schemes or not parts.hostname:
        kind = f"an {schemes[0]}" if len(schemes) == 1 else "an http or https"
        raise w.error(path, f"{v.show(text)} is not {kind} URL")
    if parts.query or parts.fragment:
        raise w.error(path, f"{v.show(text)}: a base URL takes no query or fragment")
    # Paths are joined as base + "/" + ...; a trailing slash would double it.
    return text.rstrip("/")


def _source_keys() -> dict[str, SourceKind[Any, Any]]:
    return {kind.key: kind for kind in kinds()}


def _source(w: Where, path: KeyPath, value: object) -> SourceSpec:
    by_key = _source_keys()
    keys = tuple(by_key)
    if not isinstance(value, Mapping):
        raise w.expected(path, f"a mapping with one of {v.one_of(keys)}", value)
    if not value:
        raise w.error(path, f"empty source; expected one of {v.one_of(keys)}")
    present = [key for key in value if isinstance(key, str) and key in by_key]
    # A source body indented one level too little makes its keys siblings of the kind.
    hints = {
        key: f"unknown key (indent it under '{kind}:')"
        for kind in present
        for key in by_key[kind].fields
    }
    v.mapping(w, path, value, keys, hints=hints)
    if len(present) > 1:
        raise w.error(
            path,
            f"one source per list item, found {' and '.join(present)} "
            "(start each with its own '- ')",
        )
    kind = by_key[present[0]]
    body = value[kind.key]
    here = (*path, kind.key)
    fields = {} if body is None else v.mapping(w, here, body, kind.fields)
    spec: SourceSpec = kind.parse(w, here, fields)
    return spec
