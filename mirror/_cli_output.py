"""What the commands share: the manifest with command-line overrides, the progress
display, the summary after a run, JSON lines, exit codes (SPEC.md).

The parser and every command import this module, for the exit codes at least; what only
some commands use (the display, the manifest with YAML and every source kind) is
imported where it is used, so that ``--version`` and ``status`` stay quick.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import TYPE_CHECKING

from ._exceptions import ManifestError

if TYPE_CHECKING:
    from rich.console import Console

    from ._api import Mirror
    from ._config import Manifest
    from ._display import Display
    from ._models import Summary

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def _manifest(args: argparse.Namespace) -> Manifest:
    from ._manifest import load_manifest

    return _with_timeouts(load_manifest(args.manifest), args)


def _with_timeouts(manifest: Manifest, args: argparse.Namespace) -> Manifest:
    import dataclasses

    from ._config import Timeouts

    if not args.timeout:
        return manifest
    names = [f.name for f in dataclasses.fields(Timeouts)]
    given: dict[str, float] = {}
    for pair in args.timeout:
        name, sep, value = pair.partition("=")
        try:
            seconds = float(value)
        except ValueError:
            seconds = 0.0
        if not sep or name not in names or not math.isfinite(seconds) or seconds <= 0:
            raise ManifestError(
                f"--timeout {pair!r}: expected NAME=SECONDS with NAME one of "
                f"{', '.join(names)} and SECONDS a number greater than 0",
                file="<command line>",
            )
        given[name] = seconds
    return dataclasses.replace(manifest, timeouts=dataclasses.replace(manifest.timeouts, **given))


def _display(args: argparse.Namespace, err: Console) -> Display:
    from ._display import JsonDisplay, PlainDisplay, RichDisplay

    if args.json:
        return JsonDisplay()
    if err.is_terminal and not args.quiet:
        return RichDisplay(err, verbose=args.verbose > 0)
    return PlainDisplay(
        err, verbose=args.verbose > 0, quiet=args.quiet, interval=args.progress_interval
    )


async def _drive(m: Mirror, args: argparse.Namespace, err: Console) -> Summary:
    with _display(args, err) as display:
        async for event in m.events():
            display.handle(event)
    return m.summary


def _dir(path: str) -> Path:
    return Path(path).expanduser().resolve()


def _has_state(dest: Path) -> bool:
    return (dest / ".mirror" / "state.sqlite").exists()


def _finish(summary: Summary, manifest: Manifest, args: argparse.Namespace, err: Console) -> int:
    from ._display import human_bytes

    if args.json:
        return summary.exit_code
    if not args.quiet or summary.exit_code:
        parts = [
            f"{summary.verified}/{summary.planned} files verified ({human_bytes(summary.bytes)})"
        ]
        if summary.skipped:
            parts.append(f"{summary.skipped} already verified")
        if summary.failed:
            parts.append(f"{summary.failed} failed")
        if summary.pending:
            parts.append(f"{summary.pending} pending")
        stopped = len(summary.refused) + len(summary.errors)
        if stopped:
            parts.append(f"{stopped} source{'s' if stopped > 1 else ''} could not be planned")
        err.print(
            "; ".join(parts) + f"; downloaded {human_bytes(summary.downloaded)}", markup=False
        )
        if args.quiet:
            # Otherwise each was shown once already, as the run went, with its reason.
            for reason in (*summary.refused, *summary.errors):
                err.print(f"error: {reason}", markup=False)
        for line in summary.hosts_down:
            err.print(f"error: {line}", markup=False)
        err.print(f"files: {manifest.dest}  index: {manifest.dest / 'index.tsv'}", markup=False)
        if summary.exit_code:
            err.print(
                "re-run the same command to retry what failed; 'mirror status' lists the reasons",
                markup=False,
            )
    return summary.exit_code


def _json(doc: object) -> str:
    import json

    return json.dumps(doc)
