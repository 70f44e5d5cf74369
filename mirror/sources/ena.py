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

import logging
from collections.abc import AsyncIterator, Callable, Sequence

from .._accessions import EnaKind, PortalType, ena_kind, portal_type
from .._exceptions import (
    ClientError,
    EmptyEntry,
    HTTPStatusError,
    MirrorError,
    Retryable,
    SourceError,
    TransferError,
    UnexpectedAnswer,
)
from .._metadata import TableWriter
from .._models import FileTask
from .._registry import SourceKind, no_credentials
from .._retry import Retrying
from .._urls import redact_url
from . import Source, SourceContext
from .ena_fields import (
    ALL_FAMILIES,
    ANALYSIS_FAMILIES,
    EXTRA,
    KEYS,
    ORDER,
    RUN_FAMILIES,
    Result,
)
from .ena_report import (
    ENA_FILES_HOST,
    FamilyFile,
    ReportParser,
    file_url,
    parse_family,
    row_tasks,
)
from .ena_runinfo import RUNINFO_COLUMNS, RunInfoTable
from .ena_spec import ACCESSIONS, ENDPOINTS, FIELDS, EnaFamily, EnaSpec, parse

__all__ = [
    "ENA_FILES_HOST",
    "KIND",
    "EnaSource",
    "FamilyFile",
    "PortalRefused",
    "ReportParser",
    "file_url",
    "parse_family",
]

logger = logging.getLogger(__name__)

#: Accessions ENA's File Downloader never sends as ``includeAccessions`` (it takes
#: primary ones only): searched by the report field that holds them instead.
_SECONDARY_FIELD: dict[EnaKind, str] = {
    "study": "secondary_study_accession",
    "sample": "secondary_sample_accession",
}
#: The includeAccessionType values each result can be searched by.
_SEARCHABLE: dict[Result, frozenset[str]] = {
    "read_run": frozenset({"study", "sample", "experiment", "run"}),
    "analysis": frozenset({"study", "sample", "analysis"}),
}


class PortalRefused(SourceError):
    """The Portal answered 400: the query itself is wrong (a field, a value)."""


async def _marking(
    rows: AsyncIterator[dict[str, str]], accession: str, unmatched: set[str]
) -> AsyncIterator[dict[str, str]]:
    async for row in rows:
        unmatched.discard(accession)
        yield row


def _listing(names: Sequence[str], shown: int = 20) -> str:
    """``a, b, c`` (the first ``shown``, then how many more): one line however many."""
    more = f" and {len(names) - shown:,} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


class EnaSource:
    """Expands an ``ena:`` manifest entry through the ENA Portal API."""

    name = "ena"
    #: Plain GETs: ENA's files need nothing around their downloads.
    hooks = None

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
        self._runinfo: RunInfoTable | None = None

    def _how_to_add(self, others: Sequence[str]) -> str:
        """The hint for families a run has but were not asked for, in the user's terms."""
        if self.spec.from_command_line:
            asked = [f for f in ALL_FAMILIES if f in self._asked or f in (self.spec.files or ())]
            return f"add --files {','.join((*asked, *others))}"
        return "add them to 'files'"

    def _families(self, result: Result) -> tuple[EnaFamily, ...]:
        if self.spec.files is None:
            return ("fastq",) if result == "read_run" else ANALYSIS_FAMILIES
        allowed = RUN_FAMILIES if result == "read_run" else ANALYSIS_FAMILIES
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
            asked = "/".join(f for f in ALL_FAMILIES if f in self._asked)
            found = [f for f in ALL_FAMILIES if f in self._others]
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
            if result == "read_run":
                self._runinfo = RunInfoTable(
                    self.ctx.metadata.table("ena/runinfo_ftp.tsv", RUNINFO_COLUMNS)
                )
            try:
                for acc_type, accessions in by_type.items():
                    step = self.ctx.sizes.ena_accessions
                    for i in range(0, len(accessions), step):
                        chunk = accessions[i : i + step]
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
                    step = self.ctx.sizes.ena_query_accessions
                    for i in range(0, len(accessions), step):
                        chunk = accessions[i : i + step]
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
                if result == "read_run" and self._runinfo is not None:
                    await self._runinfo.table.close()

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
        wanted = list(KEYS[result]) + list(EXTRA[result])
        for fam in families:
            wanted += [f"{fam}_ftp", f"{fam}_md5", f"{fam}_bytes"]
        # The other families' URLs only serve the hint when a run has none of ours.
        optional = set(EXTRA[result])
        for fam in RUN_FAMILIES if result == "read_run" else ANALYSIS_FAMILIES:
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
                        parser = ReportParser(key=KEYS[result][0])
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
        key = KEYS[result][0]
        batch: list[FileTask] = []
        meta: list[dict[str, str]] = []
        async for row in rows:
            for field in KEYS[result]:
                unmatched.discard(row.get(field, ""))
            accession = row.get(key, "")
            if ena_kind(accession) is None:
                self.ctx.warn(f"ENA: skipping a report row with no valid {key}: {accession!r}")
                continue
            meta.append(row)
            self._found += 1
            batch += self._row_tasks(result, families, accession, row)
            if len(batch) >= self.ctx.sizes.ena_batch:
                await self._keep(result, table, meta)
                meta = []
                yield batch
                batch = []
        if meta:
            await self._keep(result, table, meta)
        if batch:
            yield batch

    async def _keep(self, result: Result, table: TableWriter, rows: list[dict[str, str]]) -> None:
        await table.write(rows)
        if result == "read_run" and self._runinfo is not None:
            await self._runinfo.table.write(self._runinfo.numbering.rows(rows))

    def _row_tasks(
        self, result: Result, families: Sequence[EnaFamily], accession: str, row: dict[str, str]
    ) -> list[FileTask]:
        tasks = row_tasks(
            row, accession, ORDER[result], families, files_base=self.files_base, warn=self.ctx.warn
        )
        if not tasks:
            others = [fam for fam in ALL_FAMILIES if fam not in families and row.get(f"{fam}_ftp")]
            self._others.update(others)
            self._asked.update(families)
            hint = (
                f" (it has {', '.join(others)} files: {self._how_to_add(others)})" if others else ""
            )
            fams = "/".join(families)
            self.ctx.warn(f"ENA: {accession}: no {fams} files{hint}")
        return tasks


def _build(spec: EnaSpec, ctx: SourceContext, credentials: None) -> Source:
    return EnaSource(spec, ctx)


KIND: SourceKind[EnaSpec, None] = SourceKind(
    key="ena",
    spec=EnaSpec,
    fields=FIELDS,
    parse=parse,
    credentials=no_credentials,
    build=_build,
    endpoints=ENDPOINTS,
    accessions=ACCESSIONS,
)


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
