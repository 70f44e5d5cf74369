"""ENA: accessions → Portal API file reports → one task per FASTQ/submitted/SRA/analysis file.

Facts this module relies on (ARCHIVES.md, research/ena-peers.md):

* ``POST /search`` with ``includeAccessions`` (≤ 1,000 a request) and
  ``includeAccessionType`` expands studies, samples, experiments and runs in one
  request per 1,000 accessions (ENA's own File Downloader does the same).
* ``{family}_ftp``, ``_md5`` and ``_bytes`` hold ``;``-separated lists aligned by
  position; URLs have no scheme. Runs may have three FASTQs (unpaired + _1 + _2),
  one file though PAIRED, or none at all: take the lists as given, never derive
  names from the accession.
* Column order of ``/search`` changed in 2024: we parse by header name.
* Unknown field names answer 400 ``Invalid fieldName(s) supplied``; we ask
  ``/returnFields`` first and only request fields the service knows.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Literal

from .._accessions import PortalType, ena_kind, portal_type
from .._config import EnaFamily, EnaSpec
from .._exceptions import HTTPStatusError, SourceError, TransferError, UnsafePathError
from .._http import redact_url
from .._metadata import TableWriter
from .._models import FileTask
from .._paths import name_from_url, safe_name
from .._retry import next_delay
from . import SourceContext

__all__ = ["ENA_FILES_HOST", "EnaSource", "file_url", "parse_family"]

logger = logging.getLogger(__name__)

Result = Literal["read_run", "analysis"]
#: Host the Portal names in ``*_ftp`` fields; fetched from the ``ena_files`` endpoint.
ENA_FILES_HOST = "ftp.sra.ebi.ac.uk"
CHUNK = 1000
BATCH = 500

_RUN_FAMILIES: tuple[EnaFamily, ...] = ("fastq", "submitted", "sra")
_ANALYSIS_FAMILIES: tuple[EnaFamily, ...] = ("submitted", "generated")
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
#: The includeAccessionType values each result can be searched by.
_SEARCHABLE: dict[Result, frozenset[str]] = {
    "read_run": frozenset({"study", "sample", "experiment", "run"}),
    "analysis": frozenset({"study", "sample", "analysis"}),
}


@dataclass(frozen=True, slots=True)
class FamilyFile:
    url: str
    md5: str | None
    size: int | None


def file_url(value: str, files_base: str) -> str:
    """A ``*_ftp`` value (``ftp.sra.ebi.ac.uk/vol1/…``, no scheme) as an HTTP(S) URL."""
    value = value.strip()
    if "://" in value:
        value = value.split("://", 1)[1]
    host, _, path = value.partition("/")
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


class EnaSource:
    """Expands an ``ena:`` manifest entry through the ENA Portal API."""

    name = "ena"

    def __init__(self, spec: EnaSpec, ctx: SourceContext) -> None:
        self.spec = spec
        self.ctx = ctx
        self.portal = ctx.endpoints["ena_portal"].rstrip("/")
        self.files_base = ctx.endpoints["ena_files"]

    def _families(self, result: Result) -> tuple[EnaFamily, ...]:
        if self.spec.files is None:
            return ("fastq",) if result == "read_run" else _ANALYSIS_FAMILIES
        allowed = _RUN_FAMILIES if result == "read_run" else _ANALYSIS_FAMILIES
        return tuple(f for f in self.spec.files if f in allowed)

    async def expand(self) -> AsyncIterator[list[FileTask]]:
        # An accession that matched no row in any report is worth a warning; a study
        # with runs but no analyses (or the reverse) is not.
        unmatched = set(self.spec.accessions)
        async for batch in self._expand(unmatched):
            yield batch
        for acc in sorted(unmatched, key=self.spec.accessions.index):
            self.ctx.warn(
                f"ENA: {acc}: no public runs or analyses found (not yet public, suppressed, "
                "or not an accession ENA knows)"
            )

    async def _expand(self, unmatched: set[str]) -> AsyncIterator[list[FileTask]]:
        for result in ("read_run", "analysis"):
            families = self._families(result)
            if not families:
                continue
            by_type: dict[PortalType, list[str]] = {}
            submissions: list[str] = []
            for acc in self.spec.accessions:
                kind = ena_kind(acc)
                if kind == "submission":
                    submissions.append(acc)  # /filereport only: no includeAccessionType
                    continue
                acc_type = portal_type(kind) if kind is not None else None
                if acc_type is not None and acc_type in _SEARCHABLE[result]:
                    by_type.setdefault(acc_type, []).append(acc)
            if not by_type and not submissions:
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
                for acc in submissions:
                    # Report rows do not name the submission they belong to.
                    rows = _marking(self._filereport(result, acc, fields), acc, unmatched)
                    async for batch in self._tasks(result, families, rows, unmatched, table):
                        yield batch
            finally:
                await table.close()

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
        async for row in self._tsv("POST", f"{self.portal}/search", data=form):
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
        async for row in self._tsv("GET", f"{self.portal}/filereport", params=params):
            yield row

    async def _tsv(
        self,
        method: str,
        url: str,
        *,
        data: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
    ) -> AsyncIterator[dict[str, str]]:
        """Rows of a TSV answer, streamed, keyed by header; resumed on a retry.

        A retry after a dropped connection re-sends the request and skips the rows
        already yielded, so memory stays flat however long the report is.
        """
        done = 0
        attempt = 0
        http = self.ctx.http
        while True:
            attempt += 1
            seen = 0
            try:
                async with http.request(
                    method, url, data=data, params=params, expect=(200, 204)
                ) as resp:
                    if resp.status == 204:
                        return  # ENA's "no content": nothing public for this accession
                    header: list[str] | None = None
                    async for line in resp.lines():
                        if not line.strip():
                            continue
                        if header is None:
                            header = line.split("\t")
                            continue
                        seen += 1
                        if seen <= done:
                            continue
                        values = line.split("\t")
                        done += 1
                        yield dict(zip(header, values, strict=False))
                return
            except HTTPStatusError as exc:
                if exc.status == 400:
                    raise SourceError(f"ENA Portal rejected the query: {exc}") from exc
                if not exc.retryable:
                    raise SourceError(f"ENA Portal: {exc}") from exc
                await self._backoff(url, attempt, exc)
            except TransferError as exc:
                await self._backoff(url, attempt, exc)

    async def _backoff(self, url: str, attempt: int, exc: TransferError) -> None:
        delay = next_delay(
            self.ctx.http.retry, attempt, retry_after=getattr(exc, "retry_after", None)
        )
        if delay is None:
            raise SourceError(f"ENA Portal {redact_url(url)} kept failing: {exc}") from exc
        logger.info("ENA Portal: %s; retrying in %.1fs", exc, delay)
        await asyncio.sleep(delay)

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
        for family in families:
            try:
                files = parse_family(row, family)
            except SourceError as exc:
                self.ctx.warn(f"ENA: {accession}: {exc}; skipping its {family} files")
                continue
            for f in files:
                try:
                    name = name_from_url(f.url)
                    path = f"ena/{safe_name(accession)}/{name}"
                except UnsafePathError as exc:
                    self.ctx.warn(f"ENA: {accession}: {exc}")
                    continue
                tasks.append(
                    FileTask(
                        source="ena",
                        accession=accession,
                        url=file_url(f.url, self.files_base),
                        path=path,
                        size=f.size,
                        checksum=f.md5,
                        verify="md5" if f.md5 else "size",
                    )
                )
        if not tasks:
            others = [
                fam
                for fam in ("fastq", "submitted", "sra", "generated")
                if fam not in families and row.get(f"{fam}_ftp")
            ]
            how = (
                f"add --files {','.join((*families, *others))}"
                if self.spec.from_command_line
                else "add them to 'files'"
            )
            hint = f" (it has {', '.join(others)} files: {how})" if others else ""
            fams = "/".join(families)
            self.ctx.warn(f"ENA: {accession}: no {fams} files{hint}")
        return tasks
