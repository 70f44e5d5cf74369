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
import os
import threading
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from ._exceptions import MirrorError
from ._paths import join_under

__all__ = ["MetadataWriter", "TableWriter"]


class TableWriter:
    """A TSV table written row by row to a temporary file and renamed into place on close.

    Values are escaped as the module says: one record is always one line.
    """

    def __init__(
        self, path: Path, columns: Sequence[str], owner: MetadataWriter | None = None
    ) -> None:
        self.path = path
        self.columns = list(columns)
        self._owner = owner
        self._tmp: Path | None = None
        self._file: TextIO | None = None
        self.rows = 0

    def _open(self) -> TextIO:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._tmp = _temporary(self.path)
            self._file = self._tmp.open("w", encoding="utf-8", newline="")
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
            if self._file is None or self._tmp is None:
                return
            self._file.close()
            self._file = None
            if self._owner is None:
                os.replace(self._tmp, self.path)
            else:
                self._owner.settle(self, self._tmp)

        await _in_thread(self.path, close)

    def abandon(self) -> None:
        """Close and remove the temporary file of a table that will not be finished."""
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._tmp is not None:
            with contextlib.suppress(OSError):
                self._tmp.unlink()


class MetadataWriter:
    """Writes records under ``dest/metadata/``; sources hold one instead of paths.

    One writer serves every source of a run, so it knows which tables the run has
    already written and merges a second writer of the same table into the first.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
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
                    tmp.unlink()
                return
            self._open.remove(table)
            if path in self._written and path.exists():
                _merge_into(tmp, path)
            else:
                os.replace(tmp, path)
            self._written.add(path)

    def discard(self) -> None:
        """Remove the temporary files of tables never closed (their source failed)."""
        with self._lock:
            for table in self._open:
                table.abandon()
            self._open.clear()

    async def write_json(self, relative: str, doc: Any) -> None:
        path = join_under(self.root, relative)
        text = json.dumps(doc, indent=2, sort_keys=True) + "\n"
        await _in_thread(path, lambda: _write_atomic(path, [text]))

    async def write_jsonl(self, relative: str, docs: Sequence[Any]) -> None:
        """Replace ``relative`` with one JSON document per line (atomically)."""
        path = join_under(self.root, relative)
        lines = [json.dumps(doc, sort_keys=True) + "\n" for doc in docs]
        await _in_thread(path, lambda: _write_atomic(path, lines))


async def _in_thread(path: Path, work: Callable[[], None]) -> None:
    """Run a blocking write; a full disk or a read-only ``dest`` stops the source that
    wrote, with one line naming the file, not the run with a traceback."""
    try:
        await asyncio.to_thread(work)
    except OSError as exc:
        raise MirrorError(f"cannot write {path}: {exc.strerror or exc}") from exc


def _temporary(path: Path) -> Path:
    """A name beside ``path`` no other writer uses (not ``mkstemp``: its files are 0600,
    and the records should get the same mode as the data files)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp")


def _write_atomic(path: Path, lines: Sequence[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary(path)
    try:
        with tmp.open("w", encoding="utf-8") as f:
            f.writelines(lines)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _merge_into(tmp: Path, path: Path) -> None:
    """Write ``path`` again with the rows of both tables: columns joined, rows once each."""
    with path.open(encoding="utf-8", newline="") as f:
        old_header, old_rows = _read_table(f)
    with tmp.open(encoding="utf-8", newline="") as f:
        new_header, new_rows = _read_table(f)
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
    _write_atomic(path, lines)
    tmp.unlink()


def _read_table(f: TextIO) -> tuple[list[str], list[list[str]]]:
    header = f.readline().rstrip("\n").split("\t")
    return header, [line.rstrip("\n").split("\t") for line in f if line.strip()]


_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _cell(value: str) -> str:
    return value.translate(_ESCAPES)
