"""The progress event: a run's statistics as one :class:`Progress` for the display.

With several members taking part, the counts are the pull's as of the last heartbeat,
and the bytes in flight this process's own.
"""

from __future__ import annotations

import time

from ._download import Stats
from ._meter import eta
from ._models import ActiveFile, Progress, TaskStatus

__all__ = ["progress"]


def progress(
    stats: Stats,
    pull_counts: dict[TaskStatus, tuple[int, int]] | None,
    *,
    planning_here: bool,
    quiet: float,
) -> Progress:
    s = stats
    done = s.done_bytes + sum(int(e[0] or 0) for e in s.active.values())
    rate = s.rate()
    now = time.monotonic()
    waits: dict[str, list[float]] = {}
    for until, why in list(s.waiting.values()):
        waits.setdefault(why, []).append(until - now)
    waiting = [
        f"{why}, retry in {max(0.0, min(left)):.0f} s"
        + (f" ({len(left)} files)" if len(left) > 1 else "")
        for why, left in waits.items()
    ]
    idle = s.planning_idle()
    if idle >= quiet and planning_here:
        waiting.append(f"planning: no new files for {idle:.0f} s, waiting for the archives")
    planned, verified, failed = s.planned, s.verified, s.failed
    total, failed_bytes = s.planned_bytes, s.failed_bytes
    if pull_counts is not None:
        # Several members: the pull's counts, as of the last heartbeat.
        c = pull_counts
        planned = sum(n for n, _ in c.values())
        verified, failed = c[TaskStatus.VERIFIED][0], c[TaskStatus.FAILED][0]
        total, failed_bytes = sum(b for _, b in c.values()), c[TaskStatus.FAILED][1]
        done = c[TaskStatus.VERIFIED][1] + sum(int(e[0] or 0) for e in s.active.values())
    return Progress(
        planned=planned,
        planning=s.planning,
        verified=verified,
        failed=failed,
        bytes_done=done,
        bytes_total=total,
        rate=rate,
        eta=eta(total - failed_bytes - done, rate),
        unsized=s.unsized,
        waiting=tuple(waiting),
        active=tuple(
            ActiveFile(
                path=p,
                done=int(e[0] or 0),
                size=e[1],
                waiting=s.waiting[p][1] if p in s.waiting else None,
            )
            for p, e in list(s.active.items())[:20]
        ),
    )
