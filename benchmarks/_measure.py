"""Run one command as a child process and measure it: wall time, user+sys CPU, peak RSS.

CPU comes from ``os.wait4``: the child's rusage, which on Linux includes every
descendant it waited for, and all of its threads. Peak RSS cannot come from there: a
forked child starts with its parent's RSS as its high-water mark and ``exec`` keeps it
(``ru_maxrss`` of ``curl --version`` forked from a 300 MB Python is 300 MB). So the
command is started through ``/usr/bin/time`` (a ~2 MB process) and its ``%M`` is the
peak RSS; without ``/usr/bin/time`` the figure is ``wait4``'s and flagged as an upper
bound. Wall time runs from just before the fork to the moment ``wait4`` returns (a
pidfd wakes us when the child exits).
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["CommandFailed", "Measurement", "run_measured"]

#: Any single command running longer than this is a hung benchmark, not a slow one.
HARD_LIMIT = 900.0
_POLL = 0.02
_GNU_TIME = "/usr/bin/time"


class CommandFailed(RuntimeError):
    """A measured command exited with an unexpected status (its log names why)."""


@dataclass(frozen=True, kw_only=True)
class Measurement:
    """One run of one command."""

    tool: str
    argv: list[str]
    wall: float
    user: float
    sys: float
    maxrss_kib: int
    exit_code: int
    #: The run was stopped on purpose (SIGINT) after this many seconds.
    interrupted_after: float | None = None
    log: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def in_process(
        cls, tool: str, argv: list[str], wall: float, cpu: float, **extra: Any
    ) -> Measurement:
        """A measurement taken in this process (a floor): no child, no RSS of its own."""
        return cls(
            tool=tool,
            argv=argv,
            wall=wall,
            user=cpu,
            sys=0.0,
            maxrss_kib=0,
            exit_code=0,
            extra={**extra, "in_process": True},
        )

    @property
    def cpu(self) -> float:
        return self.user + self.sys

    @property
    def rss_mib(self) -> float:
        return self.maxrss_kib / 1024

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["cpu"] = self.cpu
        data["rss_mib"] = self.rss_mib
        return data


def run_measured(
    tool: str,
    argv: Sequence[str],
    *,
    log: Path,
    ok_codes: tuple[int, ...] = (0,),
    interrupt_after: float | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    gnu_time: str = _GNU_TIME,
) -> Measurement:
    """Run ``argv`` to the end (or SIGINT it after ``interrupt_after`` s) and measure it.

    Raises :class:`CommandFailed` when the exit code is not in ``ok_codes`` (130, the
    code of an interrupted ``mirror run``, is accepted when ``interrupt_after`` is set).
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    rss_file = log.with_name(log.name + ".time")
    rss_file.unlink(missing_ok=True)
    timed = os.access(gnu_time, os.X_OK)
    launcher = [gnu_time, "-f", "%M", "-o", str(rss_file)] if timed else []
    with log.open("ab") as out:
        out.write(f"$ {' '.join(argv)}\n".encode())
        out.flush()
        start = time.perf_counter()
        proc = subprocess.Popen(
            [*launcher, *argv],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            # Its own process group: a SIGINT reaches the command, which time ignores.
            start_new_session=True,
        )
        status, usage, interrupted = _wait(proc.pid, start, interrupt_after)
        wall = time.perf_counter() - start
    maxrss = _time_rss(rss_file) if timed else None
    code = os.waitstatus_to_exitcode(status)
    proc.returncode = code  # reaped by wait4: keep Popen from waiting again
    accepted = ok_codes + ((130,) if interrupted is not None else ())
    if code not in accepted:
        tail = _tail(log)
        raise CommandFailed(f"{tool}: exit code {code} from {' '.join(argv)}\n{tail}")
    return Measurement(
        tool=tool,
        argv=list(argv),
        wall=wall,
        user=usage.ru_utime,
        sys=usage.ru_stime,
        maxrss_kib=maxrss if maxrss is not None else usage.ru_maxrss,
        exit_code=code,
        interrupted_after=interrupted,
        log=str(log),
        extra={} if maxrss is not None else {"rss_upper_bound": True},
    )


def _time_rss(path: Path) -> int | None:
    """The ``%M`` (KiB) ``/usr/bin/time`` wrote: its last line (a signal note may come first)."""
    try:
        lines = path.read_text(encoding="utf-8").split()
    except OSError:
        return None
    return int(lines[-1]) if lines and lines[-1].isdigit() else None


def _wait(pid: int, start: float, interrupt_after: float | None) -> tuple[int, Any, float | None]:
    """``wait4`` the child; SIGINT it at ``interrupt_after``, SIGKILL it at the hard limit.

    A pidfd wakes us the moment the child exits (no polling error in the wall time).
    """
    interrupted: float | None = None
    pidfd = _pidfd(pid)
    try:
        while True:
            got, status, usage = os.wait4(pid, os.WNOHANG)
            if got == pid:
                return status, usage, interrupted
            elapsed = time.perf_counter() - start
            if interrupt_after is not None and interrupted is None and elapsed >= interrupt_after:
                os.killpg(pid, signal.SIGINT)
                interrupted = elapsed
            if elapsed >= HARD_LIMIT:
                os.killpg(pid, signal.SIGKILL)
                os.wait4(pid, 0)
                raise CommandFailed(f"pid {pid}: still running after {HARD_LIMIT:.0f} s; killed")
            deadline = HARD_LIMIT
            if interrupt_after is not None and interrupted is None:
                deadline = interrupt_after
            timeout = max(0.0, min(deadline - elapsed, 1.0))
            if pidfd is None:
                time.sleep(min(timeout, _POLL))
            else:
                select.select([pidfd], [], [], timeout)
    finally:
        if pidfd is not None:
            os.close(pidfd)


def _pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def _tail(log: Path, lines: int = 15) -> str:
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
