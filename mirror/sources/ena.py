"""ENA: accessions → Portal API file reports → one task per FASTQ/submitted/SRA/analysis file.

Facts this module relies on (ARCHIVES.md, research/ena-peers.md):

* ``POST /search`` with ``includeAccessions`` (≤ 1,000 a request) and
  ``includeAccessionType`` expands studies, samples, experiments and runs in one
  request per 1,000 accessions (ENA's own File Downloader does the same, with
  primary accessions only). Secondary ones (ERP…, ERS…) are searched by the
  field that holds them (``query=secondary_study_accession="ERP…" OR …``);
  a submission (ERA…) through ``/filereport`` for its runs.
* ``*_ftp`` values are paths, not URLs (``27604_8#1.cram`` is one name): encoded
  for the request, taken literally for the file name.
* ``{family}_ftp``, ``_md5`` and ``_bytes`` hold ``;``-separated lists aligned by
  position; URLs have no scheme. Runs may have three FASTQs (unpaired + _1 + _2),
  one file though PAIRED, or none at all: take the lists as given, never derive
  names from the accession.
* Column order of ``/search`` changed in 2024: we parse by header name.
* Unknown field names answer 400 ``Invalid fieldName(s) supplied``; we ask
  ``/returnFields`` first and only request fields the service knows.
"""

from __future__ import annotations

import codecs
import json
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote

from .._accessions import EnaKind, PortalType, ena_kind, portal_type
from .._config import EnaFamily, EnaSpec
from .._exceptions import (
    ClientError,
    EmptyEntry,
    HTTPStatusError,
    MirrorError,
    Retryable,
    SourceError,
    TransferError,
    UnexpectedAnswer,
    UnsafePathError,
)
from .._http import redact_url
from .._metadata import TableWriter
from .._models import FileTask
from .._paths import name_from_path, safe_name
from .._retry import Retrying
from . import SourceContext

__all__ = [
    "ENA_FILES_HOST",
    "QUERY_CHUNK",
    "EnaSource",
    "PortalRefused",
    "ReportParser",
    "file_url",
    "parse_family",
]

logger = logging.getLogger(__name__)

Result = Literal["read_run", "analysis"]
#: Host the Portal names in ``*_ftp`` fields; fetched from the ``ena_files`` endpoint.
ENA_FILES_HOST = "ftp.sra.ebi.ac.uk"
CHUNK = 1000
BATCH = 500
#: Largest size a file (and the state store's integer) can have.
_MAX_SIZE = 2**63 - 1
#: Longest report row (characters) held in memory: about 500,000 files of one run.
MAX_ROW = 64 * 1024 * 1024
_JSON = json.JSONDecoder()

_RUN_FAMILIES: tuple[EnaFamily, ...] = ("fastq", "submitted", "sra")
_ALL_FAMILIES: tuple[EnaFamily, ...] = ("fastq", "submitted", "sra", "generated")
_ANALYSIS_FAMILIES: tuple[EnaFamily, ...] = ("submitted", "generated")
#: The order in which a row's families claim file names (see _Places).
_ORDER: dict[Result, tuple[EnaFamily, ...]] = {
    "read_run": _RUN_FAMILIES,
    "analysis": _ANALYSIS_FAMILIES,
}
_KEYS: dict[Result, tuple[str, ...]] = {
    "read_run": (
        "run_accession",
        "experiment_accession",
        "sample_accession",
        "secondary_sample_accession",
        "study_accession",
        "secondary_study_accession",
    ),
    "analysis": (
        "analysis_accession",
        "sample_accession",
        "secondary_sample_accession",
        "study_accession",
        "secondary_study_accession",
    ),
}
_EXTRA: dict[Result, tuple[str, ...]] = {
    "read_run": (
        "library_layout",
        "library_strategy",
        "scientific_name",
        "instrument_platform",
        "submitted_format",
    ),
    "analysis": ("analysis_type", "scientific_name"),
}
#: Accessions ENA's File Downloader never sends as ``includeAccessions`` (it takes
#: primary ones only): searched by the report field that holds them instead.
_SECONDARY_FIELD: dict[EnaKind, str] = {
    "study": "secondary_study_accession",
    "sample": "secondary_sample_accession",
}
#: Accessions OR'd into one ``query=`` (a few KB of form body).
QUERY_CHUNK = 100
#: The includeAccessionType values each result can be searched by.
_SEARCHABLE: dict[Result, frozenset[str]] = {
    "read_run": frozenset({"study", "sample", "experiment", "run"}),
    "analysis": frozenset({"study", "sample", "analysis"}),
}


class PortalRefused(SourceError):
    """The Portal answered 400: the query itself is wrong (a field, a value)."""


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
    urls = _split(row.get(f"{family}_ftp", ""))
    if not urls:
        return []
    md5s = _split(row.get(f"{family}_md5", ""))
    sizes = _split(row.get(f"{family}_bytes", ""))
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


async def _marking(
    rows: AsyncIterator[dict[str, str]], accession: str, unmatched: set[str]
) -> AsyncIterator[dict[str, str]]:
    async for row in rows:
        unmatched.discard(accession)
        yield row


def _split(value: str) -> list[str]:
    value = value.strip()
    return [v.strip() for v in value.split(";")] if value else []


class _Places:
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


def _listing(names: Sequence[str], shown: int = 20) -> str:
    """``a, b, c`` (the first ``shown``, then how many more): one line however many."""
    more = f" and {len(names) - shown:,} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


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


class EnaSource:
    """Expands an ``ena:`` manifest entry through the ENA Portal API."""

    name = "ena"

    def __init__(self, spec: EnaSpec, ctx: SourceContext) -> None:
        self.spec = spec
        self.ctx = ctx
        self.portal = ctx.endpoints["ena_portal"].rstrip("/")
        self.files_base = ctx.endpoints["ena_files"]
        #: Report rows taken (runs and analyses), and the families of those that
        #: had none of the files asked for: what an empty entry's error names.
        self._found = 0
        self._asked: set[str] = set()
        self._others: set[str] = set()

    def _how_to_add(self, others: Sequence[str]) -> str:
        """The hint for families a run has but were not asked for, in the user's terms."""
        if self.spec.from_command_line:
            asked = [f for f in _ALL_FAMILIES if f in self._asked or f in (self.spec.files or ())]
            return f"add --files {','.join((*asked, *others))}"
        return "add them to 'files'"

    def _families(self, result: Result) -> tuple[EnaFamily, ...]:
        if self.spec.files is None:
            return ("fastq",) if result == "read_run" else _ANALYSIS_FAMILIES
        allowed = _RUN_FAMILIES if result == "read_run" else _ANALYSIS_FAMILIES
        return tuple(f for f in self.spec.files if f in allowed)

    async def expand(self) -> AsyncIterator[list[FileTask]]:
        """The entry's files; :class:`EmptyEntry` when it has none at all.

        An accession that matched no row in any report is named (a study with runs
        but no analyses, or the reverse, is not): in a warning when the rest of the
        entry has files, in the error when nothing does, so a typo never ends as a
        run that verified all of its zero files.
        """
        unmatched = set(self.spec.accessions)
        planned = 0
        async for batch in self._expand(unmatched):
            planned += len(batch)
            yield batch
        missing = sorted(unmatched, key=self.spec.accessions.index)
        nothing = (
            f"{_listing(missing)} matched nothing: no public runs or analyses found "
            "(not yet public, suppressed, or not an accession ENA knows)"
        )
        if planned:
            if missing:
                self.ctx.warn(f"ENA: {nothing}")
            return
        reasons = [nothing] if missing else []
        if self._found:
            asked = "/".join(f for f in _ALL_FAMILIES if f in self._asked)
            found = [f for f in _ALL_FAMILIES if f in self._others]
            hint = (
                f" (they have {', '.join(found)} files: {self._how_to_add(found)})" if found else ""
            )
            reasons.append(
                f"the runs and analyses found ({self._found}) have no {asked} files{hint}"
            )
        raise EmptyEntry(f"nothing to download: {'; '.join(reasons)}")

    async def _expand(self, unmatched: set[str]) -> AsyncIterator[list[FileTask]]:
        for result in ("read_run", "analysis"):
            families = self._families(result)
            if not families:
                continue
            by_type: dict[PortalType, list[str]] = {}
            by_field: dict[str, list[str]] = {}
            submissions: list[str] = []
            for acc in self.spec.accessions:
                kind = ena_kind(acc)
                if kind == "submission":
                    if result == "read_run":
                        submissions.append(acc)  # /filereport, documented for read_run
                    else:
                        by_field.setdefault("submission_accession", []).append(acc)
                    continue
                acc_type = portal_type(kind) if kind is not None else None
                if kind is None or acc_type is None or acc_type not in _SEARCHABLE[result]:
                    continue
                if kind in _SECONDARY_FIELD:
                    by_field.setdefault(_SECONDARY_FIELD[kind], []).append(acc)
                else:
                    by_type.setdefault(acc_type, []).append(acc)
            if not by_type and not by_field and not submissions:
                continue
            fields = await self._fields(result, families)
            table = self.ctx.metadata.table(
                f"ena/{'runs' if result == 'read_run' else 'analyses'}.tsv", fields
            )
            try:
                for acc_type, accessions in by_type.items():
                    for i in range(0, len(accessions), CHUNK):
                        chunk = accessions[i : i + CHUNK]
                        rows = self._search(result, acc_type, chunk, fields)
                        async for batch in self._tasks(result, families, rows, unmatched, table):
                            yield batch
                for field, accessions in by_field.items():
                    if field == "submission_accession":
                        for acc in accessions:
                            async for batch in self._submission_analyses(
                                acc, families, fields, unmatched, table
                            ):
                                yield batch
                        continue
                    for i in range(0, len(accessions), QUERY_CHUNK):
                        chunk = accessions[i : i + QUERY_CHUNK]
                        rows = self._query(result, field, chunk, fields)
                        async for batch in self._tasks(result, families, rows, unmatched, table):
                            yield batch
                for acc in submissions:
                    # Report rows do not name the submission they belong to.
                    rows = _marking(self._filereport(result, acc, fields), acc, unmatched)
                    async for batch in self._tasks(result, families, rows, unmatched, table):
                        yield batch
            finally:
                await table.close()

    async def _submission_analyses(
        self,
        accession: str,
        families: Sequence[EnaFamily],
        fields: Sequence[str],
        unmatched: set[str],
        table: TableWriter,
    ) -> AsyncIterator[list[FileTask]]:
        """The analyses of one submission, searched by ``submission_accession``.

        ENA documents ``/filereport`` with a submission for runs only; whether the
        Portal lists analyses by submission is not documented. A refusal (400) is
        a warning: the submission's runs are planned all the same.
        """
        rows = _marking(
            self._query("analysis", "submission_accession", [accession], fields),
            accession,
            unmatched,
        )
        try:
            async for batch in self._tasks("analysis", families, rows, unmatched, table):
                yield batch
        except PortalRefused as exc:
            self.ctx.warn(
                f"ENA: {accession}: the ENA Portal could not list analyses by submission "
                f"({exc}); only its runs are planned"
            )

    async def _fields(self, result: Result, families: Sequence[str]) -> list[str]:
        """The fields to ask for: ours, less any the service says it does not know."""
        wanted = list(_KEYS[result]) + list(_EXTRA[result])
        for fam in families:
            wanted += [f"{fam}_ftp", f"{fam}_md5", f"{fam}_bytes"]
        # The other families' URLs only serve the hint when a run has none of ours.
        optional = set(_EXTRA[result])
        for fam in _RUN_FAMILIES if result == "read_run" else _ANALYSIS_FAMILIES:
            if fam not in families:
                wanted.append(f"{fam}_ftp")
                optional.add(f"{fam}_ftp")
        known = await self._known_fields(result)
        if known is None:
            return wanted
        missing = [f for f in wanted if f not in known]
        essential = [f for f in missing if f not in optional]
        if essential:
            raise SourceError(
                f"ENA Portal ({self.portal}) does not offer the field(s) "
                f"{', '.join(essential)} for result={result}; the API may have changed"
            )
        for name in missing:
            logger.info("ENA Portal has no field %s for %s; not requesting it", name, result)
        return [f for f in wanted if f in known]

    async def _known_fields(self, result: Result) -> set[str] | None:
        url = f"{self.portal}/returnFields"
        try:
            doc = await self.ctx.http.get_json(url, params={"result": result, "format": "json"})
        except HTTPStatusError as exc:
            logger.info("returnFields unavailable (%s); requesting fields unchecked", exc)
            return None
        except TransferError as exc:  # retried already; a maintenance page, say
            raise SourceError(f"ENA Portal: {exc}") from exc
        if not isinstance(doc, list):
            return None
        return {str(item.get("columnId")) for item in doc if isinstance(item, dict)}

    async def _search(
        self, result: Result, acc_type: str, accessions: Sequence[str], fields: Sequence[str]
    ) -> AsyncIterator[dict[str, str]]:
        form = {
            "result": result,
            "includeAccessionType": acc_type,
            "includeAccessions": ",".join(accessions),
            "fields": ",".join(fields),
            "format": "tsv",
            "limit": "0",
        }
        async for row in self._report(result, "POST", f"{self.portal}/search", data=form):
            yield row

    async def _query(
        self, result: Result, field: str, accessions: Sequence[str], fields: Sequence[str]
    ) -> AsyncIterator[dict[str, str]]:
        """Rows whose ``field`` is one of ``accessions`` (quoted, as ENA wants values)."""
        form = {
            "result": result,
            "query": " OR ".join(f'{field}="{acc}"' for acc in accessions),
            "fields": ",".join(fields),
            "format": "tsv",
            "limit": "0",
        }
        async for row in self._report(result, "POST", f"{self.portal}/search", data=form):
            yield row

    async def _filereport(
        self, result: Result, accession: str, fields: Sequence[str]
    ) -> AsyncIterator[dict[str, str]]:
        params = {
            "accession": accession,
            "result": result,
            "fields": ",".join(fields),
            "format": "tsv",
            "limit": "0",
        }
        async for row in self._report(result, "GET", f"{self.portal}/filereport", params=params):
            yield row

    async def _report(
        self,
        result: Result,
        method: str,
        url: str,
        *,
        data: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
    ) -> AsyncIterator[dict[str, str]]:
        """Rows of a report, streamed, keyed by column; resumed on a retry.

        A retry after a dropped connection re-sends the request and skips the rows
        already yielded, so memory stays flat however long the report is. A 200
        that is not a report (a maintenance page) is retried the same way: taking
        it for a report of no rows would plan nothing and call that success.
        """
        done = 0
        http = self.ctx.http
        loop = Retrying(
            f"ENA Portal {redact_url(url)}",
            http.retry,
            sleep=http.clock.sleep,
            uncounted=http.waits_for_host,
            gave_up=_kept_failing(url),
        )
        async for attempt in loop:
            with attempt:
                seen = 0
                try:
                    async with http.request(
                        method, url, data=data, params=params, expect=(200, 204)
                    ) as resp:
                        if resp.status == 204:
                            return  # ENA's "no content": nothing public for this accession
                        parser = ReportParser(key=_KEYS[result][0])
                        async for chunk in resp.chunks():
                            for row in parser.feed(chunk):
                                seen += 1
                                if seen > done:
                                    done += 1
                                    yield row
                        for row in parser.close():
                            seen += 1
                            if seen > done:
                                done += 1
                                yield row
                    return
                except ClientError as exc:
                    if isinstance(exc, HTTPStatusError) and exc.status == 400:
                        raise PortalRefused(f"ENA Portal rejected the query: {exc}") from exc
                    raise SourceError(f"ENA Portal: {exc}") from exc
                except TransferError as exc:
                    if isinstance(exc, Retryable):
                        raise
                    # A certificate, a redirect loop, a host given up on: not passing.
                    raise SourceError(f"ENA Portal: {exc}") from exc

    async def _tasks(
        self,
        result: Result,
        families: Sequence[EnaFamily],
        rows: AsyncIterator[dict[str, str]],
        unmatched: set[str],
        table: TableWriter,
    ) -> AsyncIterator[list[FileTask]]:
        key = _KEYS[result][0]
        batch: list[FileTask] = []
        meta: list[dict[str, str]] = []
        async for row in rows:
            for field in _KEYS[result]:
                unmatched.discard(row.get(field, ""))
            accession = row.get(key, "")
            if ena_kind(accession) is None:
                self.ctx.warn(f"ENA: skipping a report row with no valid {key}: {accession!r}")
                continue
            meta.append(row)
            self._found += 1
            batch += self._row_tasks(result, families, accession, row)
            if len(batch) >= BATCH:
                await table.write(meta)
                meta = []
                yield batch
                batch = []
        if meta:
            await table.write(meta)
        if batch:
            yield batch

    def _row_tasks(
        self, result: Result, families: Sequence[EnaFamily], accession: str, row: dict[str, str]
    ) -> list[FileTask]:
        tasks: list[FileTask] = []
        places = _Places(accession)
        # Every family listed in the row claims its names, in a fixed order, whether
        # asked for or not: where a file lands never depends on which families (or
        # in which order) the manifest names.
        for family in _ORDER[result]:
            wanted = family in families
            try:
                files = (
                    parse_family(row, family)
                    if wanted
                    else [
                        FamilyFile(url, None, None) for url in _split(row.get(f"{family}_ftp", ""))
                    ]
                )
            except SourceError as exc:
                self.ctx.warn(f"ENA: {accession}: {exc}; skipping its {family} files")
                continue
            for position, f in enumerate(files, 1):
                try:
                    name = name_from_path(f.url)
                    prefix = f"ena/{safe_name(accession)}"
                except UnsafePathError as exc:
                    if wanted:
                        self.ctx.warn(f"ENA: {accession}: {exc}")
                    continue
                place = places.claim(name, family, position, f.url)
                if place is None or not wanted:
                    continue
                relative, error = place
                tasks.append(
                    FileTask(
                        source="ena",
                        accession=accession,
                        url=file_url(f.url, self.files_base),
                        path=f"{prefix}/{relative}",
                        size=f.size,
                        checksum=f.md5,
                        verify="md5" if f.md5 else "size",
                        error=error,
                    )
                )
        if not tasks:
            others = [fam for fam in _ALL_FAMILIES if fam not in families and row.get(f"{fam}_ftp")]
            self._others.update(others)
            self._asked.update(families)
            hint = (
                f" (it has {', '.join(others)} files: {self._how_to_add(others)})" if others else ""
            )
            fams = "/".join(families)
            self.ctx.warn(f"ENA: {accession}: no {fams} files{hint}")
        return tasks


def _kept_failing(url: str) -> Callable[[MirrorError, int], SourceError]:
    """The error a report gives when its every attempt failed."""

    def gave_up(exc: MirrorError, attempts: int) -> SourceError:
        what = f"the Portal answered 200 with {exc}" if isinstance(exc, UnexpectedAnswer) else exc
        return SourceError(
            f"ENA Portal {redact_url(url)} kept failing ({attempts} attempts): {what}",
            url=url,
            hint="the ENA Portal may be down; re-run later to resume",
        )

    return gave_up
