"""Metadata records kept beside the files: ENA run rows, MGnify JSON, EnteroBase records.

Every write goes to a temporary file of its own (process id and a random part in its
name, so two sources, or two processes, never share one) and is renamed into place.
Two sources of one run that write the same table (two ``ena:`` entries both write
``ena/runs.tsv``) are merged: the second close joins its rows to what the first wrote
this run, under one lock.

Tables (``metadata/ena/runs.tsv``) hold one record a line, values separated by tabs.
Four characters in a value would break that; they are written as backslash
escapes, as PostgreSQL's text COPY format and linear TSV do: tab
``\\t``, line feed ``\\n``, carriage return ``\\r``, backslash ``\\\\``. Every other
character is written as it is; no quoting, so a CSV reader with ``delimiter="\\t"``
and ``quoting=QUOTE_NONE`` sees exactly one row per record.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ._dest import Destination, LocalDestination, Staged
from ._exceptions import MirrorError
from ._paths import join_under

__all__ = ["MetadataWriter", "TableWriter"]


class TableWriter:
    """A TSV table written row by row to a temporary file and renamed into place on close.

    Values are escaped as the module says: one record is always one line.
    """

    def __init__(
        self,
        path: Path,
        columns: Sequence[str],
        owner: MetadataWriter | None = None,
        *,
        dest: Destination | None = None,
    ) -> None:
        self.path = path
        self.columns = list(columns)
        self._owner = owner
        self._dest = dest or (owner.dest if owner is not None else LocalDestination(path.parent))
        self._file: Staged | None = None
        self.rows = 0

    def _open(self) -> Staged:
        if self._file is None:
            self._file = self._dest.stage(self.path)
            self._file.write("\t".join(self.columns) + "\n")
            if self._owner is not None:
                self._owner.opened(self)
        return self._file

    async def write(self, rows: Sequence[dict[str, str]]) -> None:
        def write() -> None:
            f = self._open()
            for row in rows:
                f.write("\t".join(_cell(row.get(c, "")) for c in self.columns) + "\n")
            self.rows += len(rows)

        await _in_thread(self.path, write)

    async def close(self) -> None:
        def close() -> None:
            if self._file is None:
                return
            staged, self._file = self._file, None
            if self._owner is None:
                staged.commit()
            else:
                self._owner.settle(self, staged.finish())

        await _in_thread(self.path, close)

    def abandon(self) -> None:
        """Close and remove the temporary file of a table that will not be finished."""
        if self._file is not None:
            self._file.abort()
            self._file = None


class MetadataWriter:
    """Writes records under ``dest/metadata/``; sources hold one instead of paths.

    One writer serves every source of a run, so it knows which tables the run has
    already written and merges a second writer of the same table into the first.
    """

    def __init__(self, root: Path, *, dest: Destination | None = None) -> None:
        self.root = root
        #: Where the records are written (the local file system unless told otherwise).
        self.dest: Destination = dest or LocalDestination(root)
        # A thread lock: tables are closed in worker threads.
        self._lock = threading.Lock()
        self._written: set[Path] = set()
        self._open: list[TableWriter] = []

    def table(self, relative: str, columns: Sequence[str]) -> TableWriter:
        return TableWriter(join_under(self.root, relative), columns, self)

    def opened(self, table: TableWriter) -> None:
        with self._lock:
            self._open.append(table)

    def settle(self, table: TableWriter, tmp: Path) -> None:
        """Put ``table``'s finished ``tmp`` in place, merged with this run's earlier one."""
        path = table.path
        with self._lock:
            if table not in self._open:
                # The run ended first and discarded it (a cancelled source closes its
                # tables late, while the async generator is finalised): keep nothing.
                with contextlib.suppress(OSError):
                    self.dest.drop(tmp)
                return
            self._open.remove(table)
            if path in self._written and self.dest.exists(path):
                _merge_into(self.dest, tmp, path)
            else:
                self.dest.replace(tmp, path)
            self._written.add(path)

    def discard(self) -> None:
        """Remove the temporary files of tables never closed (their source failed)."""
        with self._lock:
            for table in self._open:
                table.abandon()
            self._open.clear()

    async def write_json(self, relative: str, doc: Any) -> None:
        path = join_under(self.root, relative)
        data = (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode("utf-8")
        await _in_thread(path, lambda: self.dest.write_atomic(path, data))

    async def write_jsonl(self, relative: str, docs: Sequence[Any]) -> None:
        """Replace ``relative`` with one JSON document per line (atomically)."""
        path = join_under(self.root, relative)
        data = "".join(json.dumps(doc, sort_keys=True) + "\n" for doc in docs).encode("utf-8")
        await _in_thread(path, lambda: self.dest.write_atomic(path, data))


async def _in_thread(path: Path, work: Callable[[], None]) -> None:
    """Run a blocking write; a full disk or a read-only ``dest`` stops the source that
    wrote, with one line naming the file, not the run with a traceback."""
    try:
        await asyncio.to_thread(work)
    except OSError as exc:
        raise MirrorError(f"cannot write {path}: {exc.strerror or exc}") from exc


def _merge_into(dest: Destination, tmp: Path, path: Path) -> None:
    """Write ``path`` again with the rows of both tables: columns joined, rows once each."""
    old_header, old_rows = _read_table(dest.read_bytes(path).decode("utf-8"))
    new_header, new_rows = _read_table(dest.read_bytes(tmp).decode("utf-8"))
    columns = old_header + [c for c in new_header if c not in old_header]
    seen: set[tuple[str, ...]] = set()
    lines = ["\t".join(columns) + "\n"]
    for header, rows in ((old_header, old_rows), (new_header, new_rows)):
        for cells in rows:
            record = dict(zip(header, cells, strict=False))
            row = tuple(record.get(c, "") for c in columns)
            if row not in seen:
                seen.add(row)
                lines.append("\t".join(row) + "\n")
    dest.write_atomic(path, "".join(lines).encode("utf-8"))
    dest.drop(tmp)


def _read_table(text: str) -> tuple[list[str], list[list[str]]]:
    # Cells are escaped: a raw line feed only ever ends a record.
    lines = text.split("\n")
    header = lines[0].split("\t")
    return header, [line.split("\t") for line in lines[1:] if line.strip()]


def _cell(value: str) -> str:
    # Chained replace, not str.translate with a mapping: translate looks up every
    # character in Python, ~15 µs for a URL, and every planned file writes many cells.
    # The backslash goes first, so the escapes added after it are not escaped again.
    return (
        value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    )
