"""What a workload produces: table rows (one per tool) and targets, with their arithmetic."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ._measure import Measurement

__all__ = ["GIB", "MB", "Row", "Target", "WorkloadResult", "median_ratio"]

GIB = 1 << 30
#: Throughput and memory are shown in MB (10^6 bytes), as the targets are written.
MB = 1_000_000

Unit = Literal["MB/s", "files/s"]


def median_ratio(ours: Sequence[Measurement], theirs: Sequence[Measurement]) -> float:
    """Median over repetitions of ``ours[i].wall / theirs[i].wall`` (runs paired A B A B)."""
    pairs = [a.wall / b.wall for a, b in zip(ours, theirs, strict=False) if b.wall > 0]
    return statistics.median(pairs) if pairs else float("nan")


@dataclass(kw_only=True)
class Row:
    """One workload × tool: its repetitions and what the table shows of them."""

    tool: str
    runs: list[Measurement]
    files: int
    bytes: int
    unit: Unit = "MB/s"
    #: ebi-mirror / this tool, median of the paired repetitions (peers only).
    ratio: float | None = None
    #: The target this row's ratio is held to, e.g. "<= 0.90", and whether it passed.
    target: str = ""
    passed: bool | None = None
    note: str = ""
    #: "http" or "https" where a workload runs over both; shown beside the workload.
    transport: str = ""

    @property
    def wall(self) -> float:
        return statistics.median(m.wall for m in self.runs)

    @property
    def cpu(self) -> float:
        return statistics.median(m.cpu for m in self.runs)

    @property
    def rss_mb(self) -> float:
        return max(m.maxrss_kib for m in self.runs) * 1024 / MB

    @property
    def rate(self) -> float:
        done = self.bytes / MB if self.unit == "MB/s" else self.files
        # A row that moves nothing (a command's start-up) has no rate: "—".
        return done / self.wall if self.wall > 0 and done else float("nan")

    @property
    def cpu_per_gib(self) -> float | None:
        return self.cpu / (self.bytes / GIB) if self.bytes >= MB else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "tool": self.tool,
            "files": self.files,
            "bytes": self.bytes,
            "unit": self.unit,
            "median_wall_s": self.wall,
            "rate": self.rate,
            "median_cpu_s": self.cpu,
            "cpu_s_per_gib": self.cpu_per_gib,
            "peak_rss_mb": self.rss_mb,
            "ratio_mirror_over_tool": self.ratio,
            "target": self.target,
            "passed": self.passed,
            "note": self.note,
            "transport": self.transport,
            "runs": [m.to_dict() for m in self.runs],
        }


@dataclass(kw_only=True)
class Target:
    what: str
    value: float
    limit: float
    #: "<=": value must not exceed limit; "<": strictly below; "==": equal.
    op: Literal["<=", "<", "=="]
    unit: str = ""

    @property
    def passed(self) -> bool:
        if self.op == "<=":
            return self.value <= self.limit
        if self.op == "<":
            return self.value < self.limit
        return self.value == self.limit

    def to_dict(self) -> dict[str, Any]:
        return {
            "what": self.what,
            "value": self.value,
            "op": self.op,
            "limit": self.limit,
            "unit": self.unit,
            "passed": self.passed,
        }


@dataclass(kw_only=True)
class WorkloadResult:
    key: str
    title: str
    rows: list[Row] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "title": self.title,
            "rows": [r.to_dict() for r in self.rows],
            "targets": [t.to_dict() for t in self.targets],
            "notes": self.notes,
            "info": self.info,
        }
