"""EnteroBase: a query paged by limit/offset, records kept, assemblies fetched.

Facts this module relies on (ARCHIVES.md, research/mgnify-enterobase-cram.md):

* HTTP Basic with the API token as the user name and an empty password, on API
  calls and on ``download_fasta_link`` alike. Tokens expire every six months. The
  downloads get it from this source's hooks at request time: a file may be fetched
  by another process than the one that planned it, from a task rebuilt from the
  state store, which never holds request headers.
* Results sit under a resource key (``Assemblies``, ``Strains``; ``straindata`` is
  a dict keyed by strain barcode); ``links.paging.next`` leads on and is absent or
  ``{}`` at the end. ``records`` is unreliable; ``total_records`` is for progress.
* ``only_fields`` is documented as a repeated parameter (the prose says
  ``onlyfields``; official scripts send a comma list): we repeat it.
* Policy: 3 requests/s hard limit (503 past it), and "1–2 s between requests". The
  default host limit (1 request/s, 1 connection) lives in the host table, not here.
* No checksums: assemblies are checked by size and completeness; their MD5 is
  recorded in the index.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import sqlite3
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .. import _validate as v
from .._credentials import Secret
from .._dest import Destination
from .._exceptions import (
    CredentialsError,
    HTTPStatusError,
    MirrorError,
    SourceError,
    TransferError,
)
from .._models import FileTask
from .._paths import join_under, safe_name
from .._registry import CredentialLookup, SourceKind
from .._urls import basic_auth
from . import Received, Source, SourceContext
from ._links import rewrite
from ._paging import iter_paging_next

__all__ = ["KIND", "MERGE_SUFFIX", "EnterobaseSource", "EnterobaseSpec", "records_of"]

logger = logging.getLogger(__name__)

#: The public API; overridable under ``endpoints: enterobase``.
DEFAULT_BASE: Final = "https://enterobase.warwick.ac.uk/api/v2.0"
#: Beside ``{resource}.jsonl`` while a listing runs: the records merged so far.
MERGE_SUFFIX = ".merge.sqlite"
_KEYS = {"assemblies": "Assemblies", "strains": "Strains", "traces": "Traces"}
_REFUSED = (
    "EnteroBase refused the API token in ENTEROBASE_TOKEN (HTTP {status}). Tokens expire "
    "every six months: renew it at EnteroBase (or ask its team for API access to the "
    "'{db}' database), then set ENTEROBASE_TOKEN again"
)


@dataclass(frozen=True, kw_only=True, slots=True)
class EnterobaseSpec:
    database: str
    query: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    reldate: int | None = None
    only_fields: tuple[str, ...] = ()
    orderby: str | None = None
    sortorder: Literal["asc", "desc"] | None = None
    assemblies: bool = False
    #: strains | assemblies | straindata | ... (the API method queried)
    resource: str = "assemblies"


def records_of(doc: dict[str, Any], resource: str) -> list[dict[str, Any]]:
    """The records of one page, whatever shape the resource uses.

    Most methods answer a list under a capitalised key; ``straindata`` answers a
    dict keyed by strain barcode, whose key we keep as ``strain_barcode``.
    """
    key = _KEYS.get(resource)
    value: Any = doc.get(key) if key else None
    if value is None:
        candidates = [v for k, v in doc.items() if k != "links" and isinstance(v, list | dict)]
        value = candidates[0] if len(candidates) == 1 else None
    if isinstance(value, dict):
        return [
            {"strain_barcode": barcode, **item} if isinstance(item, dict) else {"value": item}
            for barcode, item in value.items()
        ]
    if isinstance(value, list):
        return [item for item in value if isinstance(item, dict)]
    if value is None:
        return []
    raise SourceError(f"EnteroBase: unexpected {resource} answer: {type(value).__name__}")


class EnterobaseSource:
    """Expands an ``enterobase:`` manifest entry: records, and assemblies when asked.

    It is its own :class:`~mirror.sources.FileHooks`: the token goes on every download.
    """

    name = "enterobase"
    parallel_ranges = True
    max_range: int | None = None

    def __init__(self, spec: EnterobaseSpec, ctx: SourceContext, token: Secret) -> None:
        self.spec = spec
        self.ctx = ctx
        self.base = ctx.endpoints["enterobase"].rstrip("/")
        self._default = DEFAULT_BASE
        self._token = token
        self._auth = (token.value, "")
        self.hooks = self

    def _follow(self, url: str) -> str:
        return rewrite(url, self.base, self._default)

    def _next(self, url: str) -> str:
        """The ``paging.next`` link, with exactly the ``only_fields`` we asked for.

        EnteroBase's next links keep one value of a repeated parameter (its own
        examples show it), or name fields we never asked for, so later pages would
        quietly lose fields, the download link among them; the link's offset and
        filters are kept as given.
        """
        parts = urlsplit(self._follow(url))
        query = parse_qsl(parts.query, keep_blank_values=True)
        ours = [("only_fields", f) for f in self._fields()]
        query = [(k, v) for k, v in query if k != "only_fields"] + ours
        return urlunsplit(parts._replace(query=urlencode(query)))

    def _fields(self) -> list[str]:
        fields = list(self.spec.only_fields)
        if fields and self.spec.assemblies:
            for needed in ("assembly_barcode", "download_fasta_link"):
                if needed not in fields:
                    fields.append(needed)
        return fields

    def _params(self) -> list[tuple[str, str]]:
        spec = self.spec
        params = [("limit", str(self.ctx.sizes.enterobase_page)), ("offset", "0")]
        if spec.orderby:
            params.append(("orderby", spec.orderby))
        if spec.sortorder:
            params.append(("sortorder", spec.sortorder))
        if spec.reldate is not None:
            params.append(("reldate", str(spec.reldate)))
        params += [("only_fields", f) for f in self._fields()]
        params += sorted(spec.query.items())
        return params

    async def expand(self) -> AsyncIterator[list[FileTask]]:
        """Plan and keep page by page: nothing but the current page is held in memory."""
        db = safe_name(self.spec.database)
        resource = self.spec.resource
        url = f"{self.base}/{db}/{resource}"
        records = 0
        kept = await _Kept.open(
            self.ctx.dest, join_under(self.ctx.metadata.root, f"enterobase/{db}/{resource}.jsonl")
        )
        try:
            async for doc in iter_paging_next(
                self.ctx.http, url, params=self._params(), auth=self._auth, follow=self._next
            ):
                page = records_of(doc, resource)
                if not page:
                    break
                records += len(page)
                total = (doc.get("links") or {}).get("total_records")
                logger.info("EnteroBase %s/%s: %d of %s records", db, resource, records, total)
                await kept.add(page)
                tasks = [t for r in page if (t := self._task(db, r)) is not None]
                if tasks:
                    yield tasks
        except HTTPStatusError as exc:
            await kept.discard()
            if exc.status in (401, 403):
                raise CredentialsError(_REFUSED.format(status=exc.status, db=db)) from None
            raise SourceError(f"EnteroBase {db}/{resource}: {exc}") from exc
        except BaseException:
            await kept.discard()
            raise
        await kept.finish()
        if not records:
            self.ctx.warn(f"EnteroBase {db}/{resource}: the query matched no records")

    def _task(self, db: str, record: dict[str, Any]) -> FileTask | None:
        if not self.spec.assemblies:
            return None
        barcode = record.get("assembly_barcode")
        link = record.get("download_fasta_link")
        if not isinstance(barcode, str) or not isinstance(link, str) or not link:
            self.ctx.warn(
                f"EnteroBase {db}: a record without an assembly to download ({_barcode(record)})"
            )
            return None
        return FileTask(
            source="enterobase",
            accession=barcode,
            url=self._follow(link),
            path=f"enterobase/{db}/{safe_name(barcode + '.fasta')}",
            verify="size",
        )

    # -- FileHooks: the token on each download ----------------------------------------

    def recoverable(self, error: TransferError) -> bool:
        return False

    async def prepare(self, task: FileTask, error: MirrorError | None) -> FileTask:
        return task

    async def headers(self, task: FileTask) -> Mapping[str, str]:
        return {"Authorization": basic_auth(self._token.value, "")}

    async def verify(self, task: FileTask, got: Received) -> None:
        return None  # no checksums: the engine checks the size

    async def settled(self, task: FileTask, verified: bool) -> None:
        return None


def _barcode(record: dict[str, Any]) -> str:
    for key in ("assembly_barcode", "strain_barcode", "barcode", "uberstrain"):
        value = record.get(key)
        if isinstance(value, str) and value:
            return value
    return json.dumps(record, sort_keys=True)


class _Kept:
    """The records of ``metadata/enterobase/{db}/{resource}.jsonl``, merged by barcode.

    A re-run does not duplicate lines and an incremental (``reldate``) run adds its
    records to the ones already kept. The merge happens on disk, in a SQLite file
    beside the target (:data:`MERGE_SUFFIX`), so memory stays flat however many
    records the query matches; the ``.jsonl`` is replaced atomically at the end and
    left as it was if the listing fails. The merge file is the destination's scratch
    (beside the target on a local disk), never part of the mirror.
    """

    def __init__(
        self, dest: Destination, target: Path, merge: Path, db: sqlite3.Connection
    ) -> None:
        self.dest = dest
        self.target = target
        self.merge = merge
        self._db = db
        self._seq = 0

    @classmethod
    async def open(cls, dest: Destination, target: Path) -> _Kept:
        def open_() -> _Kept:
            merge = dest.scratch(target.with_name(target.name + MERGE_SUFFIX))
            merge.unlink(missing_ok=True)  # left by a killed run: its records are refetched
            db = sqlite3.connect(merge, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=OFF")
            db.execute("PRAGMA synchronous=OFF")
            db.execute("CREATE TABLE r (barcode TEXT PRIMARY KEY, seq INTEGER, doc TEXT)")
            kept = cls(dest, target, merge, db)
            try:
                kept_before = dest.open_read(target)
            except FileNotFoundError:
                return kept
            with io.TextIOWrapper(kept_before, encoding="utf-8") as f:
                batch: list[dict[str, Any]] = []
                for line in f:
                    try:
                        record = json.loads(line)
                    except ValueError:
                        continue
                    if isinstance(record, dict):
                        batch.append(record)
                    if len(batch) >= 1000:
                        kept._insert(batch)
                        batch = []
                kept._insert(batch)
            return kept

        return await asyncio.to_thread(open_)

    def _insert(self, records: list[dict[str, Any]]) -> None:
        rows = []
        for record in records:
            self._seq += 1
            rows.append((_barcode(record), self._seq, json.dumps(record, sort_keys=True)))
        # A barcode seen before keeps its place and takes the newer record.
        self._db.execute("BEGIN")
        self._db.executemany(
            "INSERT INTO r VALUES (?, ?, ?) ON CONFLICT(barcode) DO UPDATE SET doc=excluded.doc",
            rows,
        )
        self._db.execute("COMMIT")

    async def add(self, records: list[dict[str, Any]]) -> None:
        await asyncio.to_thread(self._insert, records)

    async def finish(self) -> None:
        def finish() -> None:
            out = self.dest.stage(self.target, tmp=self.target.with_name(self.target.name + ".tmp"))
            try:
                for (doc,) in self._db.execute("SELECT doc FROM r ORDER BY seq"):
                    out.write(doc + "\n")
                out.commit()
            except BaseException:
                out.abort()
                raise
            self._close()

        await asyncio.to_thread(finish)

    async def discard(self) -> None:
        await asyncio.to_thread(self._close)

    def _close(self) -> None:
        self._db.close()
        self.merge.unlink(missing_ok=True)


# --------------------------------------------------------------------------- the entry

_RESOURCES: Final = ("strains", "assemblies", "straindata", "traces")
_DATABASE: Final = re.compile(r"[a-z][a-z0-9_]*")


def parse(w: v.Where, path: v.KeyPath, body: dict[str, object]) -> EnterobaseSpec:
    database = v.text(
        w, (*path, "database"), v.required(w, path, body, "database"), "a database name"
    )
    if not _DATABASE.fullmatch(database):
        raise w.error(
            (*path, "database"),
            f"{v.show(database)} is not an EnteroBase database name (such as 'senterica')",
        )
    reldate = body.get("reldate")
    orderby = body.get("orderby")
    sortorder = body.get("sortorder")
    assemblies = body.get("assemblies")
    resource = body.get("resource")
    order: Literal["asc", "desc"] | None = None
    if sortorder is not None:
        chosen = v.choice(w, (*path, "sortorder"), sortorder, ("asc", "desc"))
        order = "asc" if chosen == "asc" else "desc"
    return EnterobaseSpec(
        database=database,
        query=_query(w, (*path, "query"), body.get("query")),
        reldate=None if reldate is None else v.integer(w, (*path, "reldate"), reldate, low=1),
        only_fields=v.optional_strings(w, path, body, "only_fields", item="field name"),
        orderby=None if orderby is None else v.text(w, (*path, "orderby"), orderby),
        sortorder=order,
        assemblies=False if assemblies is None else v.boolean(w, (*path, "assemblies"), assemblies),
        resource=(
            "assemblies"
            if resource is None
            else v.choice(w, (*path, "resource"), resource, _RESOURCES)
        ),
    )


def _query(w: v.Where, path: v.KeyPath, value: object) -> Mapping[str, str]:
    if value is None:
        return MappingProxyType({})
    if not isinstance(value, Mapping):
        raise w.expected(path, "a mapping of query parameters", value)
    out: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not key:
            raise w.error(path, f"parameter names must be strings, got {v.describe(key)}")
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


def token(spec: EnterobaseSpec, lookup: CredentialLookup) -> Secret:
    """The API token: ``ENTEROBASE_TOKEN``, else the login of a ``~/.netrc`` entry."""
    found = lookup.credentials.get("ENTEROBASE_TOKEN")
    if found is None:
        entry = lookup.credentials.for_host(lookup.endpoints["enterobase"])
        found = entry[0] if entry and entry[0] else None
    if found is None:
        raise CredentialsError(
            f"{lookup.where}: ENTEROBASE_TOKEN is not set. EnteroBase needs "
            "an API token (ask the EnteroBase team for API access to the database); put "
            "it in ENTEROBASE_TOKEN, or as the login of a ~/.netrc entry for its host"
        )
    return found


def _build(spec: EnterobaseSpec, ctx: SourceContext, credentials: Secret) -> Source:
    return EnterobaseSource(spec, ctx, credentials)


KIND: SourceKind[EnterobaseSpec, Secret] = SourceKind(
    key="enterobase",
    spec=EnterobaseSpec,
    fields=(
        "database",
        "query",
        "reldate",
        "only_fields",
        "orderby",
        "sortorder",
        "assemblies",
        "resource",
    ),
    parse=parse,
    credentials=token,
    build=_build,
    environment=("ENTEROBASE_TOKEN",),
    endpoints={"enterobase": DEFAULT_BASE},
)
