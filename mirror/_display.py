"""Rendering run events for people (rich progress, plain lines) and machines (JSON lines)."""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from typing import Any, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from . import _models as m

__all__ = ["Display", "JsonDisplay", "PlainDisplay", "RichDisplay", "human_bytes"]


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


class Display:
    """Receives every event of a run; subclasses render them."""

    def __enter__(self) -> Display:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def handle(self, event: m.Event) -> None:
        raise NotImplementedError


class JsonDisplay(Display):
    """``--json``: one JSON object per event on stdout, ``{"event": kind, ...fields}``."""

    def __init__(self, out: TextIO = sys.stdout) -> None:
        self.out = out

    def handle(self, event: m.Event) -> None:
        doc: dict[str, Any] = {"event": event.kind, "time": round(time.time(), 3)}
        doc.update(_plain(event))
        self.out.write(json.dumps(doc, sort_keys=False) + "\n")
        self.out.flush()


def _plain(event: m.Event) -> dict[str, Any]:
    return dataclasses.asdict(event)  # recurses into Summary and ActiveFile tuples


class PlainDisplay(Display):
    """Not a terminal: warnings, failures and (with ``-v``) each verified file, one line each."""

    def __init__(self, console: Console, *, verbose: bool, quiet: bool) -> None:
        self.console = console
        self.verbose = verbose
        self.quiet = quiet

    def handle(self, event: m.Event) -> None:
        if isinstance(event, m.Warning_) and not self.quiet:
            self.console.print(f"warning: {event.message}", markup=False, highlight=False)
        elif isinstance(event, m.FileFailed) and event.final and not event.grouped:
            self.console.print(
                f"failed: {event.path}: {event.reason}", markup=False, highlight=False
            )
        elif isinstance(event, m.FileVerified) and self.verbose and not event.skipped:
            self.console.print(
                f"verified: {event.path} ({human_bytes(event.bytes)}, {event.verified_by})",
                markup=False,
                highlight=False,
            )
        elif isinstance(event, m.PlanFinished) and not self.quiet:
            unsized = f" (+{event.unsized} of unknown size)" if event.unsized else ""
            self.console.print(
                f"planned {event.files} files, {human_bytes(event.bytes)}{unsized}",
                highlight=False,
            )


class RichDisplay(Display):
    """A terminal: one overall bar (bytes, files, rate, ETA) and one line per active file."""

    MAX_FILES = 8

    def __init__(self, console: Console, *, verbose: bool) -> None:
        self.console = console
        self.verbose = verbose
        self.progress = Progress(
            TextColumn("{task.description}", markup=False),
            BarColumn(bar_width=30),
            DownloadColumn(binary_units=True),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
            refresh_per_second=4,
        )
        self.overall: TaskID | None = None
        self.files: dict[str, TaskID] = {}

    def __enter__(self) -> RichDisplay:
        self.progress.__enter__()
        self.overall = self.progress.add_task("planning…", total=None)
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(None, None, None)

    def handle(self, event: m.Event) -> None:
        if isinstance(event, m.Progress):
            self._update(event)
        elif isinstance(event, m.Warning_):
            self.progress.console.print(f"warning: {event.message}", markup=False, highlight=False)
        elif isinstance(event, m.FileFailed) and event.final and not event.grouped:
            self.progress.console.print(
                f"failed: {event.path}: {event.reason}", markup=False, highlight=False
            )
        elif isinstance(event, m.FileVerified) and self.verbose and not event.skipped:
            self.progress.console.print(f"verified: {event.path}", markup=False, highlight=False)

    def _update(self, p: m.Progress) -> None:
        assert self.overall is not None
        plan = "planning, " if p.planning else ""
        done = p.verified + p.failed
        desc = f"{plan}{done}/{p.planned} files" + (f", {p.failed} failed" if p.failed else "")
        self.progress.update(
            self.overall,
            description=desc,
            completed=p.bytes_done,
            total=None if p.planning and not p.bytes_total else p.bytes_total,
        )
        active = {a.path: a for a in p.active[: self.MAX_FILES]}
        for path in list(self.files):
            if path not in active:
                self.progress.remove_task(self.files.pop(path))
        for path, a in active.items():
            name = path.rsplit("/", 1)[-1]
            if path not in self.files:
                self.files[path] = self.progress.add_task(f"  {name}", total=a.size)
            self.progress.update(self.files[path], completed=a.done, total=a.size)
