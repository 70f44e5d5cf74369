"""``mirror samplesheet``: an nf-core input sheet from a mirror's verified FASTQs."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ._cli_output import EXIT_FAILED, EXIT_OK
from ._cli_status import _status_dest
from ._exceptions import MirrorError
from ._samplesheet import build_sheet, read_runs

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = ["manifest_sheets", "write_sheet"]


def _samplesheet(args: argparse.Namespace) -> int:
    dest = _status_dest(args)
    runs, warnings = read_runs(dest)
    sheet = build_sheet(args.format, runs, sample_by=args.sample_by, strandedness=args.strandedness)
    if not args.quiet:
        for line in (*warnings, *sheet.warnings):
            print(f"mirror: warning: {line}", file=sys.stderr)
    if not sheet.rows:
        print(
            f"mirror: error: no ENA run under {dest} has verified reads for a "
            f"{args.format} sheet; nothing written",
            file=sys.stderr,
        )
        return EXIT_FAILED
    text = sheet.csv()
    if args.output == "-":
        sys.stdout.write(text)
        return EXIT_OK
    out = Path(args.output) if args.output else dest / "samplesheets" / f"{args.format}.csv"
    write_sheet(out, text)
    print(f"{out.absolute()}: {len(sheet.rows)} runs ({args.format})")
    return EXIT_OK


def write_sheet(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` whole or not at all (a pipeline may be reading it)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise MirrorError(f"cannot write {path}: {exc.strerror or exc}") from exc


def manifest_sheets(dest: Path, formats: Sequence[str], say: Callable[[str], None]) -> None:
    """The manifest's ``samplesheets:`` after a run, to ``dest/samplesheets/F.csv``.

    What a sheet could not take is said (through ``say``), never an error: the files are
    downloaded whatever a sheet makes of them, and the run's exit code is theirs.
    """
    try:
        runs, warnings = read_runs(dest)
    except MirrorError as exc:
        say(f"samplesheets: none written: {exc}")
        return
    for line in warnings:
        say(f"samplesheets: {line}")
    for fmt in formats:
        sheet = build_sheet(fmt, runs)
        for line in sheet.warnings:
            say(f"samplesheets: {line}")
        if not sheet.rows:
            say(f"samplesheets: no run with verified reads for {fmt}; not written")
            continue
        out = dest / "samplesheets" / f"{fmt}.csv"
        try:
            write_sheet(out, sheet.csv())
        except MirrorError as exc:
            say(f"samplesheets: {exc}")
            continue
        say(f"samplesheets: {out}: {len(sheet.rows)} runs")
