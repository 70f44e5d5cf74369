"""What ``/proc`` says about a test server's processes (Linux): sshd and vsftpd fork one
process (or two) per session, which stopping a server and measuring what a transfer cost
it both have to find."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cpu_seconds", "descendants"]

_TICK = 1 / os.sysconf("SC_CLK_TCK")


def descendants(root: int) -> list[int]:
    """The processes below ``root``, children before grandchildren."""
    if not Path(f"/proc/{root}/task/{root}/children").exists():
        return _by_parent(root)  # a kernel without CONFIG_PROC_CHILDREN
    found: list[int] = []
    todo = [root]
    while todo:
        pid = todo.pop(0)
        children: list[int] = []
        for task in _listdir(f"/proc/{pid}/task"):
            try:
                children += [
                    int(c) for c in Path(f"/proc/{pid}/task/{task}/children").read_text().split()
                ]
            except OSError:
                continue
        found += children
        todo += children
    return found


def cpu_seconds(pid: int) -> float | None:
    """User and system CPU seconds ``pid`` has used so far; None once it is gone."""
    fields = _stat(pid)
    # stat(5) fields 14 and 15 (utime, stime), counted here from field 3.
    return None if fields is None else (int(fields[11]) + int(fields[12])) * _TICK


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ppid …": comm may hold spaces and parentheses.
    return text.rsplit(")", 1)[1].split()


def _by_parent(root: int) -> list[int]:
    parents: dict[int, int] = {}
    for name in _listdir("/proc"):
        if name.isdigit() and (fields := _stat(int(name))) is not None:
            parents[int(name)] = int(fields[1])
    found, todo = [], [root]
    while todo:
        parent = todo.pop(0)
        children = [pid for pid, ppid in parents.items() if ppid == parent]
        found += children
        todo += children
    return found


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []
