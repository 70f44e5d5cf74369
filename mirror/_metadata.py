"""Metadata records kept beside the files: ENA run rows, MGnify JSON, EnteroBase records.

Tables (``metadata/ena/runs.tsv``) hold one record a line, values separated by tabs.
Four characters in a value would break that; they are written as backslash
escapes, as PostgreSQL's text COPY format and linear TSV do: tab
``\\t``, line feed ``\\n``, carriage return ``\\r``, backslash ``\\\\``. Every other
character is written as it is; no quoting, so a CSV reader with ``delimiter="\\t"``
and ``quoting=QUOTE_NONE`` sees exactly one row per record.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from ._paths import join_under

__all__ = ["MetadataWriter", "TableWriter"]


class TableWriter:
    """A TSV table written row by row to ``NAME.tmp`` and renamed into place on close.

    Values are escaped as the module says: one record is always one line.
    """

    def __init__(self, path: Path, columns: Sequence[str]) -> None:
        self.path = path
        self.columns = list(columns)
        self._tmp = path.with_name(path.name + ".tmp")
        self._file: TextIO | None = None
        self.rows = 0

    def _open(self) -> TextIO:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self._tmp.open("w", encoding="utf-8", newline="")
            self._file.write("\t".join(self.columns) + "\n")
        return self._file

    async def write(self, rows: Sequence[dict[str, str]]) -> None:
        def write() -> None:
            f = self._open()
            for row in rows:
                f.write("\t".join(_cell(row.get(c, "")) for c in self.columns) + "\n")
            self.rows += len(rows)

        await asyncio.to_thread(write)

    async def close(self) -> None:
        def close() -> None:
            if self._file is not None:
                self._file.close()
                self._file = None
                os.replace(self._tmp, self.path)

        await asyncio.to_thread(close)


class MetadataWriter:
    """Writes records under ``dest/metadata/``; sources hold one instead of paths."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def table(self, relative: str, columns: Sequence[str]) -> TableWriter:
        return TableWriter(join_under(self.root, relative), columns)

    async def write_json(self, relative: str, doc: Any) -> None:
        path = join_under(self.root, relative)

        def write() -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")
            os.replace(tmp, path)

        await asyncio.to_thread(write)

    async def write_jsonl(self, relative: str, docs: Sequence[Any]) -> None:
        """Replace ``relative`` with one JSON document per line (atomically)."""
        path = join_under(self.root, relative)

        def write() -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            with tmp.open("w", encoding="utf-8") as f:
                for doc in docs:
                    f.write(json.dumps(doc, sort_keys=True) + "\n")
            os.replace(tmp, path)

        await asyncio.to_thread(write)


_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _cell(value: str) -> str:
    return value.translate(_ESCAPES)
