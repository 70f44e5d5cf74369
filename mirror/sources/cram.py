"""CRAM reference sequences into a samtools ``REF_CACHE``, written the way htslib does.

Facts this module relies on (seed 000, research/mgnify-enterobase-cram.md (c)):

* ``{registry}/md5/{md5}`` and ``/sha1/{sha1}`` answer the raw uppercase sequence (no
  header, no newlines); 404 for a checksum the registry does not know.
* The cache key is the ``@SQ M5`` tag, the MD5 of the uppercased sequence; the file
  for ``6aef897c…`` is ``6a/ef/897c…`` under the cache root (``REF_CACHE=%2s/%2s/%s``).
* htslib writes a temporary file, checks the MD5 again, makes it mode 0444 and
  renames it into place (``cram_populate_ref``); the engine's ``.part`` + check +
  rename does the same, with ``mode=0o444`` on the task.
* An entry already present with the right MD5 is left alone (and costs no request):
  the cache may be shared with samtools and with other mirrors.

SHA1-named sequences are fetched by SHA1 into ``{cache}/.sha1/{sha1}`` and then
filed under their MD5 as a hard link (a copy where links are refused), with a
one-line note of that MD5 so a re-run finds them. The fetched file stays: the state
store, ``index.tsv`` and ``mirror verify`` name the file the engine wrote.
"""

from __future__ import annotations

import asyncio
import glob
import logging
import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from .. import _validate as v
from .._dest import Destination
from .._exceptions import MirrorError, TransferError
from .._hts import HeaderError, read_header_text, references
from .._models import FileTask
from .._registry import SourceKind, no_credentials
from . import Received, Source, SourceContext

__all__ = ["KIND", "CramRefSource", "CramRefsSpec", "cache_path"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True, slots=True)
class CramRefsSpec:
    md5: tuple[str, ...] = ()
    sha1: tuple[str, ...] = ()
    crams: tuple[str, ...] = ()
    cache: Path = field(default_factory=lambda: Path("~/.cache/hts-ref").expanduser())


def cache_path(md5: str) -> str:
    """``%2s/%2s/%s`` of an MD5: where samtools looks for it under ``REF_CACHE``."""
    return f"{md5[:2]}/{md5[2:4]}/{md5[4:]}"


def _digest(dest: Destination, path: Path, algorithm: str) -> str | None:
    try:
        return dest.hash(path, algorithm)[0]
    except OSError:
        return None


def _matching(pattern: str) -> list[Path]:
    return [Path(p) for p in sorted(glob.glob(os.path.expanduser(pattern)))]


class CramRefSource:
    """Expands a ``cram_refs:`` entry: MD5s, SHA1s and the ``M5`` tags of CRAM files."""

    name = "cram_refs"
    parallel_ranges = False  # the registry's /md5/ path documents no Range support
    max_range: int | None = None

    def __init__(self, spec: CramRefsSpec, ctx: SourceContext) -> None:
        self.spec = spec
        self.ctx = ctx
        self.registry = ctx.endpoints["cram_registry"].rstrip("/")
        self.cache = spec.cache
        self.hooks = self
        self.present = 0
        #: CRAM files whose header could not be read (one line each).
        self.unreadable: list[str] = []

    async def expand(self) -> AsyncIterator[list[FileTask]]:
        md5s = [m.lower() for m in self.spec.md5]
        for pattern in self.spec.crams:
            md5s += await self._tags(pattern)
        tasks: list[FileTask] = []
        for md5 in dict.fromkeys(md5s):  # de-duplicated, first mention first
            if await asyncio.to_thread(self._valid, md5):
                self.present += 1
                continue
            tasks.append(self._task(md5, f"{self.registry}/md5/{md5}", cache_path(md5), md5, "md5"))
        for sha1 in dict.fromkeys(s.lower() for s in self.spec.sha1):
            known = await asyncio.to_thread(self._sha1_known, sha1)
            if known is not None and await asyncio.to_thread(self._valid, known):
                self.present += 1
                continue
            tasks.append(
                self._task(sha1, f"{self.registry}/sha1/{sha1}", f".sha1/{sha1}", sha1, "sha1")
            )
        if self.present:
            logger.info("CRAM references: %d already in %s", self.present, self.cache)
        if tasks:
            yield tasks
        if self.unreadable:
            # After the readable ones are planned: a CRAM whose references cannot be
            # listed is a failed part of the pull, not a pull with nothing to do.
            raise MirrorError("cannot list the references of " + "; ".join(self.unreadable))

    def _task(self, accession: str, url: str, path: str, checksum: str, verify: str) -> FileTask:
        return FileTask(
            source="cram_refs",
            accession=accession,
            url=url,
            path=path,
            checksum=checksum,
            verify="md5" if verify == "md5" else "sha1",
            root=str(self.cache),
            mode=0o444,
        )

    async def _tags(self, pattern: str) -> list[str]:
        paths = await asyncio.to_thread(_matching, pattern)
        if not paths:
            self.ctx.warn(f"CRAM references: no file matches {pattern!r}")
        found: list[str] = []
        for path in paths:
            try:
                text = await asyncio.to_thread(read_header_text, path)
            except HeaderError as exc:
                self.unreadable.append(str(exc))
                continue
            refs = references(text)
            missing = [r.name for r in refs if not r.md5]
            if missing:
                self.ctx.warn(
                    f"CRAM references: {path}: @SQ lines without M5: "
                    + ", ".join(missing[:5])
                    + ("…" if len(missing) > 5 else "")
                )
            found += [r.md5 for r in refs if r.md5]
        return found

    def _valid(self, md5: str) -> bool:
        return _digest(self.ctx.dest, self.cache / cache_path(md5), "md5") == md5

    def _sha1_known(self, sha1: str) -> str | None:
        try:
            note = self.ctx.dest.read_bytes(self.cache / ".sha1" / f"{sha1}.md5")
            return note.decode().strip() or None
        except (OSError, UnicodeDecodeError):
            return None

    # -- FileHooks: file SHA1-named sequences under their MD5 ---------------------------

    def recoverable(self, error: TransferError) -> bool:
        return False

    async def prepare(self, task: FileTask, error: MirrorError | None) -> FileTask:
        return task

    async def headers(self, task: FileTask) -> dict[str, str]:
        return {}

    async def verify(self, task: FileTask, got: Received) -> None:
        return None

    async def settled(self, task: FileTask, verified: bool) -> None:
        if not verified or task.verify != "sha1":
            return
        # The cache the file was written to is the task's: a process fetching a file
        # another one planned files it beside the fetched copy, wherever its own
        # manifest's cache resolves to.
        cache = Path(task.root) if task.root else self.cache
        await asyncio.to_thread(_file_by_md5, self.ctx.dest, cache, task.accession)


def _file_by_md5(dest: Destination, cache: Path, sha1: str) -> None:
    fetched = cache / ".sha1" / sha1
    md5 = _digest(dest, fetched, "md5")
    if md5 is None:
        return  # not fetched in this run, and already filed
    dest.link(fetched, cache / cache_path(md5), 0o444)
    dest.write_atomic(cache / ".sha1" / f"{sha1}.md5", (md5 + "\n").encode())


# --------------------------------------------------------------------------- the entry

_MD5: Final = re.compile(r"[0-9a-fA-F]{32}")
_SHA1: Final = re.compile(r"[0-9a-fA-F]{40}")


def parse(w: v.Where, path: v.KeyPath, body: dict[str, object]) -> CramRefsSpec:
    md5 = v.optional_strings(
        w, path, body, "md5", item="MD5", check=v.hex_check(_MD5, "an MD5 (32 hex digits)")
    )
    sha1 = v.optional_strings(
        w, path, body, "sha1", item="SHA-1", check=v.hex_check(_SHA1, "a SHA-1 (40 hex digits)")
    )
    # Relative globs are anchored to the manifest's directory, so the same manifest
    # finds the same CRAMs whatever the current directory of the run.
    crams = tuple(
        str(w.resolve(pattern))
        for pattern in v.optional_strings(w, path, body, "crams", item="glob")
    )
    if not md5 and not sha1 and not crams:
        raise w.error(path, "no md5, sha1 or crams given")
    cache = body.get("cache")
    if cache is None:
        return CramRefsSpec(md5=md5, sha1=sha1, crams=crams)
    text = v.path_text(w, (*path, "cache"), cache, allow_pathlike=w.file == v.DICT_ORIGIN)
    return CramRefsSpec(md5=md5, sha1=sha1, crams=crams, cache=w.resolve(text))


def _build(spec: CramRefsSpec, ctx: SourceContext, credentials: None) -> Source:
    return CramRefSource(spec, ctx)


KIND: SourceKind[CramRefsSpec, None] = SourceKind(
    key="cram_refs",
    spec=CramRefsSpec,
    fields=("md5", "sha1", "crams", "cache"),
    parse=parse,
    credentials=no_credentials,
    build=_build,
    endpoints={"cram_registry": "https://www.ebi.ac.uk/ena/cram"},
)
