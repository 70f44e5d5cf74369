"""Rendering run events for people (rich progress, plain lines) and machines (JSON lines)."""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from . import _models as m
from ._meter import RateMeter

__all__ = [
    "PLAIN_INTERVAL",
    "Display",
    "JsonDisplay",
    "PlainDisplay",
    "RichDisplay",
    "human_bytes",
    "progress_line",
]

#: Seconds between progress lines when stderr is not a terminal.
PLAIN_INTERVAL = 30.0
#: Width of a progress bar, in cells.
BAR = 30


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

    def __init__(self, out: TextIO | None = None) -> None:
        # The stdout in place now, not at import: a caller may have redirected it.
        self.out = out if out is not None else sys.stdout

    def handle(self, event: m.Event) -> None:
        doc: dict[str, Any] = {"event": event.kind, "time": round(time.time(), 3)}
        doc.update(_plain(event))
        self.out.write(json.dumps(doc, sort_keys=False) + "\n")
        self.out.flush()


def _plain(event: m.Event) -> dict[str, Any]:
    return dataclasses.asdict(event)  # recurses into Summary and ActiveFile tuples


class RichDisplay(Display):
    """A terminal: the totals with rate and ETA, one bar per active file, what waits.

    Rate and ETA come from the engine's meter (withheld until it has signal, then
    smoothed); per-file rates from meters of the same kind here, so no estimate is
    made from a single sample.
    """

    MAX_FILES = 8

    def __init__(
        self,
        console: Console,
        *,
        verbose: bool,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.console = console
        self.verbose = verbose
        self.clock = clock
        self.last: m.Progress | None = None
        self.started = clock()
        self.meters: dict[str, tuple[int, RateMeter]] = {}
        self.live = Live(
            console=console,
            get_renderable=self.render,
            refresh_per_second=4,
            transient=False,
            redirect_stdout=False,
            redirect_stderr=False,
        )

    def __enter__(self) -> RichDisplay:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.__exit__(None, None, None)

    def handle(self, event: m.Event) -> None:
        if isinstance(event, m.Progress):
            self._track(event)
            self.last = event
        elif isinstance(event, m.Warning_):
            self.live.console.print(f"warning: {event.message}", markup=False, highlight=False)
        elif isinstance(event, m.FileFailed) and event.final and not event.grouped:
            self.live.console.print(
                f"failed: {event.path}: {event.reason}", markup=False, highlight=False
            )
        elif isinstance(event, m.FileVerified) and self.verbose and not event.skipped:
            self.live.console.print(f"verified: {event.path}", markup=False, highlight=False)

    def _track(self, p: m.Progress) -> None:
        seen = {}
        for a in p.active:
            done, meter = self.meters.get(a.path, (0, None))
            if meter is None or a.done < done:
                # A restart from zero is a new transfer: its rate starts afresh.
                meter = RateMeter(self.clock)
            meter.sample(a.done)
            seen[a.path] = (a.done, meter)
        self.meters = seen

    def _overall(self, p: m.Progress) -> str:
        if not p.planning and not p.active and p.verified + p.failed >= p.planned:
            return f"done in {clock_text(self.clock() - self.started)}"
        return f"{rate_text(p.rate)}  {eta_text(p)}".strip()

    def render(self) -> RenderableType:
        p = self.last
        if p is None:
            return Text("planning…")
        # Fixed widths: columns that resize with their contents make bars jump.
        grid = Table.grid(padding=(0, 1))
        grid.add_column(width=34, no_wrap=True, overflow="ellipsis")
        grid.add_column(width=BAR, no_wrap=True)
        grid.add_column(width=22, justify="right", no_wrap=True)
        grid.add_column(no_wrap=True, overflow="ellipsis")
        total = p.bytes_total or None
        grid.add_row(
            Text(files_text(p)),
            ProgressBar(total=total, completed=p.bytes_done, width=BAR),
            Text(bytes_text(p)),
            Text(self._overall(p)),
        )
        for a in p.active[: self.MAX_FILES]:
            meter = self.meters.get(a.path, (0, None))[1]
            if a.waiting is not None:
                info = "waiting to retry"
            elif meter is not None and meter.rate is not None:
                info = rate_text(meter.rate)
            else:
                info = "starting…" if a.done == 0 else ""
            grid.add_row(
                Text("  " + a.path.rsplit("/", 1)[-1]),
                ProgressBar(total=a.size, completed=a.done, width=BAR),
                Text(
                    f"{human_bytes(a.done)}/{human_bytes(a.size)}"
                    if a.size is not None
                    else human_bytes(a.done)
                ),
                Text(info),
            )
        more = len(p.active) - self.MAX_FILES
        lines: list[RenderableType] = [grid]
        if more > 0:
            lines.append(Text(f"  … and {more} more files in progress"))
        lines.extend(Text(f"  {w}", no_wrap=True, overflow="ellipsis") for w in p.waiting)
        return Group(*lines)


class PlainDisplay(Display):
    """Not a terminal (cron, nohup, a pipe): one line per warning, failure and (with
    ``-v``) verified file, and a progress line every ``interval`` seconds so that a log
    shows the run is alive, with whatever it is waiting for."""

    def __init__(
        self,
        console: Console,
        *,
        verbose: bool,
        quiet: bool,
        interval: float = PLAIN_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.console = console
        self.verbose = verbose
        self.quiet = quiet
        self.interval = interval
        self.clock = clock
        self._next = clock() + interval

    def _print(self, line: str) -> None:
        self.console.print(line, markup=False, highlight=False, soft_wrap=True)

    def handle(self, event: m.Event) -> None:
        if isinstance(event, m.Progress):
            now = self.clock()
            if self.quiet or now < self._next:
                return
            self._next = now + self.interval
            self._print(progress_line(event))
            for w in event.waiting:
                self._print(f"  {w}")
        elif isinstance(event, m.Warning_) and not self.quiet:
            self._print(f"warning: {event.message}")
        elif isinstance(event, m.FileFailed) and event.final and not event.grouped:
            self._print(f"failed: {event.path}: {event.reason}")
        elif isinstance(event, m.FileVerified) and self.verbose and not event.skipped:
            self._print(f"verified: {event.path} ({human_bytes(event.bytes)}, {event.verified_by})")
        elif isinstance(event, m.PlanFinished) and not self.quiet:
            unsized = f" (+{event.unsized} of unknown size)" if event.unsized else ""
            self._print(f"planned {event.files} files, {human_bytes(event.bytes)}{unsized}")


# -- wording shared by both displays ---------------------------------------------------


def files_text(p: m.Progress) -> str:
    """``12/120 files`` once planned, ``12/≥ 120 files, still planning`` before."""
    done = p.verified + p.failed
    failed = f", {p.failed} failed" if p.failed else ""
    if p.planning and not p.planned:
        return "planning…"
    if p.planning:
        return f"{done}/≥ {p.planned} files{failed}, still planning"
    return f"{done}/{p.planned} files{failed}"


def bytes_text(p: m.Progress) -> str:
    """Bytes done of the total; a total that may still grow says so with a ``+``."""
    growing = "+" if p.planning or p.unsized else ""
    return f"{human_bytes(p.bytes_done)}/{human_bytes(p.bytes_total)}{growing}"


def rate_text(rate: float | None) -> str:
    return "" if rate is None else f"{human_bytes(rate)}/s"


def eta_text(p: m.Progress) -> str:
    """``ETA 2:31``; ``ETA ≥ 2:31`` while the total can still grow; ``stalled``."""
    if p.rate is None:
        return "measuring rate…" if p.bytes_done or p.active else ""
    if p.eta is None:
        return "stalled"
    at_least = "≥ " if p.planning or p.unsized else ""
    return f"ETA {at_least}{clock_text(p.eta)}"


def clock_text(seconds: float) -> str:
    s = int(seconds + 0.5)
    h, rest = divmod(s, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


def progress_line(p: m.Progress) -> str:
    """One plain line: files, bytes, rate, ETA."""
    parts = [
        f"progress: {files_text(p)}",
        f"{bytes_text(p)}",
        rate_text(p.rate) or "rate not known yet",
    ]
    if p.rate is not None:
        parts.append(eta_text(p))
    if p.unsized:
        parts.append(f"{p.unsized} files of unknown size")
    return ", ".join(parts)
