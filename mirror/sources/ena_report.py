"""Reading ENA's Portal reports: rows as they arrive, each row's files, where they land.

* ``*_ftp`` values are paths, not URLs (``27604_8#1.cram`` is one name): encoded
  for the request, taken literally for the file name.
* ``{family}_ftp``, ``_md5`` and ``_bytes`` hold ``;``-separated lists aligned by
  position; URLs have no scheme.
* Column order of ``/search`` changed in 2024: rows are read by header name.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import quote

from .._exceptions import SourceError, UnexpectedAnswer, UnsafePathError
from .._models import FileTask
from .._paths import name_from_path, safe_name

__all__ = [
    "ENA_FILES_HOST",
    "MAX_ROW",
    "FamilyFile",
    "Places",
    "ReportParser",
    "file_url",
    "parse_family",
    "row_tasks",
    "split_list",
]

#: Host the Portal names in ``*_ftp`` fields; fetched from the ``ena_files`` endpoint.
ENA_FILES_HOST = "ftp.sra.ebi.ac.uk"
#: Largest size a file (and the state store's integer) can have.
_MAX_SIZE = 2**63 - 1
#: Longest report row (characters) held in memory: about 500,000 files of one run.
MAX_ROW = 64 * 1024 * 1024
_JSON = json.JSONDecoder()


@dataclass(frozen=True, slots=True)
class FamilyFile:
    url: str
    md5: str | None
    size: int | None


def file_url(value: str, files_base: str) -> str:
    """A ``*_ftp`` value (``ftp.sra.ebi.ac.uk/vol1/…``, no scheme) as an HTTP(S) URL.

    The value is a path, not a URL: every character of it is literal, so it is
    percent-encoded here (``27604_8#1.cram`` → ``27604_8%231.cram``), once.
    """
    value = value.strip()
    if "://" in value:
        value = value.split("://", 1)[1]
    host, _, path = value.partition("/")
    path = quote(path, safe="/")
    if host == ENA_FILES_HOST:
        return f"{files_base.rstrip('/')}/{path}"
    return f"https://{host}/{path}"


def parse_family(row: dict[str, str], family: str) -> list[FamilyFile]:
    """The files of one family in one report row, ``_ftp``/``_md5``/``_bytes`` aligned.

    Raises :class:`SourceError` when the three lists do not line up: pairing a file
    with its neighbour's MD5 is how peer tools mis-verify three-FASTQ runs.
    """
    urls = split_list(row.get(f"{family}_ftp", ""))
    if not urls:
        return []
    md5s = split_list(row.get(f"{family}_md5", ""))
    sizes = split_list(row.get(f"{family}_bytes", ""))
    if (md5s and len(md5s) != len(urls)) or (sizes and len(sizes) != len(urls)):
        raise SourceError(
            f"{family}_ftp lists {len(urls)} files but {family}_md5 lists {len(md5s)} and "
            f"{family}_bytes {len(sizes)}"
        )
    out = []
    for i, url in enumerate(urls):
        md5 = md5s[i].lower() if md5s and md5s[i] else None
        size = int(sizes[i]) if sizes and sizes[i].isdigit() else None
        if size is not None and size > _MAX_SIZE:
            raise SourceError(f"{family}_bytes value {sizes[i]!r} is not a file size")
        out.append(FamilyFile(url=url, md5=md5, size=size))
    return out


def split_list(value: str) -> list[str]:
    value = value.strip()
    return [v.strip() for v in value.split(";")] if value else []


class Places:
    """Where each file of one run (or analysis) lands under ``ena/{accession}/``.

    A name lands as given; a name already taken there by another file lands under
    ``{family}/``; if that is taken too, the file is planned to fail, its reason
    naming both files it clashes with. The store keys files by path, so two files
    at one path would otherwise silently become one.
    """

    def __init__(self, accession: str) -> None:
        self.accession = accession
        self._taken: dict[str, str] = {}

    def claim(
        self, name: str, family: str, position: int, url: str
    ) -> tuple[str, str | None] | None:
        """(path under the accession directory, error or None); None for a repeat of
        a file already placed (the same URL listed twice is one file)."""
        for relative in (name, f"{family}/{name}"):
            holder = self._taken.get(relative)
            if holder is None:
                self._taken[relative] = url
                return relative, None
            if holder == url:
                return None
        relative = f"{family}/{position}/{name}"
        self._taken[relative] = url
        first, second = self._taken[name], self._taken[f"{family}/{name}"]
        return relative, (
            f"ENA {self.accession}: {url} has the same file name as {first} and {second}; "
            "not downloaded"
        )


class ReportParser:
    """Rows of a Portal report fed in pieces as they arrive: TSV or JSON.

    TSV is a header line, then one row a line; JSON is a list of flat objects whose
    values are strings (``""`` when empty). The first character tells them apart
    (a TSV header never starts with ``[``). Lines are split here, not by the HTTP
    client, which refuses a line past 2 MiB: one run's row lists every file of the
    run (3,000 ONT files make 400 KB). Work stays linear in the body's length
    however long a row is; a row beyond ``limit`` characters is refused rather
    than buffered without end.

    With ``key`` (``run_accession``), a body that is not a report of that result
    raises :class:`UnexpectedAnswer` as soon as that shows: an HTML page (a
    maintenance or proxy page), a JSON object (an error document), rows without the
    key column. An empty body, or a header without rows, is a report of no rows.
    """

    def __init__(self, *, key: str | None = None, limit: int = MAX_ROW) -> None:
        self._text = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._key = key
        self._limit = limit
        self._pending: list[str] = []
        self._pending_size = 0
        self._json: bool | None = None
        self._header: list[str] | None = None
        self._opened = False
        self._ended = False
        self._checked = False

    def feed(self, data: bytes) -> list[dict[str, str]]:
        return self._take(self._text.decode(data), final=False)

    def close(self) -> list[dict[str, str]]:
        rows = self._take(self._text.decode(b"", final=True), final=True)
        if self._json and not self._ended:
            raise UnexpectedAnswer("a JSON report that ends early (no closing ']')")
        return rows

    def _take(self, text: str, *, final: bool) -> list[dict[str, str]]:
        if self._json is None:
            start = ("".join(self._pending) + text).lstrip()
            if not start and not final:
                self._pending = [start]
                return []
            self._pending, self._pending_size = [], 0
            text = start
            self._json = start.startswith("[")
        # A row can only end where a line ends (TSV) or an object closes (JSON):
        # until one arrives, keep the piece without looking at the rest again.
        if not final and ("}" if self._json else "\n") not in text:
            self._pending.append(text)
            self._pending_size += len(text)
            if self._pending_size > self._limit:
                raise SourceError(
                    f"ENA Portal: a report row longer than {self._limit:,} characters; refused"
                )
            return []
        buf = "".join(self._pending) + text
        self._pending, self._pending_size = [], 0
        rows, rest = self._json_rows(buf, final) if self._json else self._tsv_rows(buf, final)
        if rest:
            self._pending, self._pending_size = [rest], len(rest)
            if len(rest) > self._limit:
                raise SourceError(
                    f"ENA Portal: a report row longer than {self._limit:,} characters; refused"
                )
        return rows

    def _tsv_rows(self, buf: str, final: bool) -> tuple[list[dict[str, str]], str]:
        lines = buf.split("\n")
        rest = "" if final else lines.pop()
        rows = []
        for raw in lines:
            line = raw.rstrip("\r")
            if not line.strip():
                continue
            if self._header is None:
                self._header = line.split("\t")
                if self._key is not None and self._key not in self._header:
                    raise UnexpectedAnswer(_not_a_report(line, self._key))
                continue
            rows.append(dict(zip(self._header, line.split("\t"), strict=False)))
        return rows, rest

    def _json_rows(self, buf: str, final: bool) -> tuple[list[dict[str, str]], str]:
        rows: list[dict[str, str]] = []
        pos = 0
        while True:
            while pos < len(buf) and buf[pos] in " \t\r\n,":
                pos += 1
            if pos == len(buf) or self._ended:
                break
            if not self._opened:  # _take saw "[" first
                self._opened = True
                pos += 1
                continue
            if buf[pos] == "]":
                self._ended = True
                pos += 1
                continue
            try:
                item, pos = _JSON.raw_decode(buf, pos)
            except json.JSONDecodeError as exc:
                if final:
                    raise UnexpectedAnswer(f"a malformed JSON report ({exc})") from exc
                break  # an object cut by the end of this piece: wait for the rest
            if not isinstance(item, dict):
                raise UnexpectedAnswer(
                    f"JSON that is not a report row: {_excerpt(json.dumps(item))}"
                )
            if self._key is not None and not self._checked and self._key not in item:
                raise UnexpectedAnswer(
                    f"JSON rows without {self._key}: {_excerpt(json.dumps(item))}"
                )
            self._checked = True
            rows.append({str(k): "" if v is None else str(v) for k, v in item.items()})
        return rows, buf[pos:]


def _excerpt(text: str) -> str:
    """The start of a body, on one line, for a message."""
    return repr(text[:80] + ("…" if len(text) > 80 else ""))


def _not_a_report(first_line: str, key: str) -> str:
    """What a body whose first line is no report header looks like, for a message."""
    if first_line.startswith("{"):
        return f"a JSON object, not a report: {_excerpt(first_line)}"
    head = first_line.lstrip().lower()
    if head.startswith(("<!doctype html", "<html", "<head", "<body")):
        return "an HTML page, not a report (maintenance?)"
    return f"a body without the {key} column, beginning {_excerpt(first_line)}"


def row_tasks(
    row: dict[str, str],
    accession: str,
    order: Sequence[str],
    families: Sequence[str],
    *,
    files_base: str,
    warn: Callable[[str], None],
) -> list[FileTask]:
    """The tasks for the ``families`` wanted of one report row, in ``order``."""
    tasks: list[FileTask] = []
    places = Places(accession)
    # Every family listed in the row claims its names, in a fixed order, whether
    # asked for or not: where a file lands never depends on which families (or
    # in which order) the manifest names.
    for family in order:
        wanted = family in families
        try:
            files = (
                parse_family(row, family)
                if wanted
                else [
                    FamilyFile(url, None, None) for url in split_list(row.get(f"{family}_ftp", ""))
                ]
            )
        except SourceError as exc:
            warn(f"ENA: {accession}: {exc}; skipping its {family} files")
            continue
        for position, f in enumerate(files, 1):
            try:
                name = name_from_path(f.url)
                prefix = f"ena/{safe_name(accession)}"
            except UnsafePathError as exc:
                if wanted:
                    warn(f"ENA: {accession}: {exc}")
                continue
            place = places.claim(name, family, position, f.url)
            if place is None or not wanted:
                continue
            relative, error = place
            tasks.append(
                FileTask(
                    source="ena",
                    accession=accession,
                    url=file_url(f.url, files_base),
                    path=f"{prefix}/{relative}",
                    size=f.size,
                    checksum=f.md5,
                    verify="md5" if f.md5 else "size",
                    error=error,
                )
            )
    return tasks
