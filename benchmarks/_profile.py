"""Optional (``--profile``): one extra ebi-mirror run under py-spy, summarised by function.

py-spy is not a dependency of the suite; without it ``--profile`` says so and the
workloads run unprofiled. The raw collapsed stacks (``frame;frame;… count``, one
thread per stack root with ``--threads``) are kept next to the results (feed them to
``flamegraph.pl`` or speedscope); the summary lists the busiest threads and functions.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Profile", "find_py_spy", "profile_command", "run_profile", "summarise"]

RATE = 200
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def find_py_spy() -> str | None:
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.is_file() else shutil.which("py-spy")


def profile_command(py_spy: str, argv: list[str], raw: Path) -> list[str]:
    """``argv`` under ``py-spy record`` writing raw collapsed stacks with thread ids."""
    return [
        py_spy,
        "record",
        "--rate",
        str(RATE),
        "--threads",
        "--format",
        "raw",
        "--output",
        str(raw),
        "--",
        *argv,
    ]


#: Leaf frames of threads that wait rather than work. py-spy's idle detection misses
#: pool threads parked in ``SimpleQueue.get`` (a C call), so they are dropped here;
#: ``--gil`` is no better on this Python (it credits the GIL to those threads too).
_IDLE_LEAVES = (
    "_worker (concurrent/futures/thread.py",
    "wait (threading.py",
    "Condition.wait (threading.py",
    "Event.wait (threading.py",
)


def _function(frame: str) -> str:
    m = _FRAME.match(frame.strip())
    if m is None:
        return frame.strip()
    return f"{m['func']} ({m['file']})"


@dataclass
class Profile:
    samples: int = 0
    threads: Counter[str] = field(default_factory=Counter)
    self_time: Counter[str] = field(default_factory=Counter)
    inclusive: Counter[str] = field(default_factory=Counter)
    #: Self samples of the event-loop thread by source line.
    loop_lines: Counter[str] = field(default_factory=Counter)
    idle: int = 0

    def to_dict(self, top: int = 25) -> dict[str, Any]:
        def pct(c: Counter[str]) -> list[tuple[str, float]]:
            return [(k, 100 * v / self.samples) for k, v in c.most_common(top)]

        return {
            "samples": self.samples,
            "rate_hz": RATE,
            "threads_pct": pct(self.threads),
            "self_pct": pct(self.self_time),
            "inclusive_pct": pct(self.inclusive),
            "event_loop_lines_pct": pct(self.loop_lines),
            "idle_samples_dropped": self.idle,
        }

    def text(self, top: int = 15) -> str:
        if not self.samples:
            return "  (no samples)"
        lines = [
            f"  {self.samples} busy samples at {RATE} Hz over all threads "
            f"({self.idle} idle pool-thread samples dropped); % of busy samples"
        ]
        for title, counter in (
            ("threads", self.threads),
            ("self", self.self_time),
            ("inclusive", self.inclusive),
            ("event-loop thread, self by line", self.loop_lines),
        ):
            lines.append(f"  by {title}:")
            for name, n in counter.most_common(top):
                lines.append(f"    {100 * n / self.samples:5.1f}%  {name}")
        return "\n".join(lines)


def summarise(raw: Path) -> Profile:
    """Thread, self and inclusive shares of the samples in a py-spy raw file."""
    prof = Profile()
    for line in raw.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        thread = frames[0] if frames[0].startswith(("thread", "process")) else "?"
        calls = [f for f in frames if not f.startswith(("thread", "process"))]
        if calls and calls[-1].startswith(_IDLE_LEAVES):
            prof.idle += n
            continue
        prof.samples += n
        if calls and thread.endswith("MainThread"):
            prof.loop_lines[calls[-1]] += n
        prof.threads[thread] += n
        if calls:
            prof.self_time[_function(calls[-1])] += n
        for name in {_function(f) for f in calls}:
            prof.inclusive[name] += n
    return prof


def run_profile(
    py_spy: str, argv: list[str], out: Path, log: Path, *, env: Mapping[str, str] | None = None
) -> Profile:
    """Record ``argv`` once to ``out.raw`` (summarised) and return the summary."""
    raw = out.with_suffix(".raw")
    out.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as f:
        subprocess.run(
            profile_command(py_spy, argv, raw),
            stdout=f,
            stderr=subprocess.STDOUT,
            check=True,
            env=dict(env) if env is not None else None,
        )
    return summarise(raw)
