"""The plain-text table printed at the end, and the JSON file of every raw measurement."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._results import Row, WorkloadResult

__all__ = ["format_table", "save_json"]

_HEADER = (
    "W",
    "tool",
    "n",
    "wall s",
    "rate",
    "CPU s/GiB",
    "peak RSS MB",
    "mirror/tool",
    "target",
    "",
)


def _num(value: float | None, digits: int = 2) -> str:
    if value is None or math.isnan(value):
        return "—"
    return f"{value:,.{digits}f}"


def _cells(key: str, row: Row) -> tuple[str, ...]:
    verdict = "" if row.passed is None else ("PASS" if row.passed else "FAIL")
    rate = f"{_num(row.rate, 1 if row.rate < 10_000 else 0)} {row.unit}"
    return (
        f"{key} {row.transport}" if row.transport else key,
        row.tool,
        str(len(row.runs)),
        _num(row.wall),
        rate,
        _num(row.cpu_per_gib, 3),
        # In-process rows (the MD5 and the floor) have no process of their own.
        _num(row.rss_mb or None, 1),
        _num(row.ratio),
        row.target,
        verdict,
    )


def format_table(results: Sequence[WorkloadResult], *, header: str = "") -> str:
    """Rows per workload and tool, then every target with its value and verdict."""
    lines = [header] if header else []
    body = [(_HEADER, None)] + [(_cells(r.key, row), row) for r in results for row in r.rows]
    widths = [max(len(cells[i]) for cells, _ in body) for i in range(len(_HEADER))]
    right = {2, 3, 4, 5, 6, 7}

    def fmt(cells: tuple[str, ...]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    rule = "-" * len(fmt(_HEADER))
    lines += [fmt(_HEADER), rule]
    for result in results:
        lines.append(f"{result.key}: {result.title}")
        for row in result.rows:
            lines.append(fmt(_cells(result.key, row)))
            if row.note:
                lines.append(" " * (widths[0] + 2) + f"  ({row.note})")
        for note in result.notes:
            lines.append(" " * (widths[0] + 2) + f"  note: {note}")
        lines.append(rule)
    lines.append("Targets")
    all_targets = [t for r in results for t in r.targets]
    width = max((len(t.what) for t in all_targets), default=0)
    for t in all_targets:
        value = f"{t.value:,.2f}{(' ' + t.unit) if t.unit else ''}"
        limit = f"{t.op} {t.limit:g}{(' ' + t.unit) if t.unit else ''}"
        lines.append(
            f"  {t.what.ljust(width)}  {value:>12}  {limit:<10}  {'PASS' if t.passed else 'FAIL'}"
        )
    passed = sum(t.passed for t in all_targets)
    lines.append(f"  {passed} of {len(all_targets)} targets met")
    return "\n".join(lines)


def save_json(directory: Path, stamp: str, doc: dict[str, Any]) -> Path:
    """``directory/<stamp>.json``, written via a ``.tmp`` file and renamed into place
    (replacing the previous run's)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{stamp}.json"
    tmp = directory / f"{stamp}.json.tmp"
    tmp.write_text(json.dumps(doc, indent=1, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path
