"""``mirror run``, ``mirror get`` and ``mirror plan``: a manifest (or accessions) through
the engine.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from rich.console import Console

from ._api import Mirror
from ._cli_output import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    _dir,
    _display,
    _drive,
    _finish,
    _json,
    _manifest,
    _with_timeouts,
)
from ._display import JsonDisplay, human_bytes
from ._exceptions import ManifestError
from ._manifest import accessions_from_text, manifest_from_accessions
from ._registry import default_endpoints


async def _run(args: argparse.Namespace, err: Console) -> int:
    m = Mirror(
        _manifest(args), dest=args.dest, workers=args.workers, state=args.state, lease=args.lease
    )
    summary = await _drive(m, args, err)
    if m.manifest.samplesheets:
        from ._cli_samplesheet import manifest_sheets

        def say(line: str) -> None:
            if not args.quiet:
                err.print(line, markup=False)

        manifest_sheets(m.manifest.dest, m.manifest.samplesheets, say)
    return _finish(summary, m.manifest, args, err)


async def _get(args: argparse.Namespace, err: Console) -> int:
    accessions = list(args.accessions)
    if args.input:
        text = sys.stdin.read() if args.input == "-" else _read(args.input)
        name = "<stdin>" if args.input == "-" else args.input
        accessions += accessions_from_text(text, file=name)
    accessions = [a for a in accessions if a]
    if not accessions:
        raise ManifestError(
            "no accessions given (on the command line or with -i FILE)", file="<command line>"
        )
    dest = _dir(args.dest or ".")
    files = None if args.files is None else args.files.split(",")
    manifest = manifest_from_accessions(
        accessions, dest=dest, workers=args.workers or 16, files=files
    )
    manifest = _with_timeouts(manifest, args)
    if args.endpoint:
        manifest = dataclasses.replace(
            manifest, endpoints={**manifest.endpoints, **_endpoints(args.endpoint)}
        )
    m = Mirror(manifest, state=args.state, lease=args.lease)
    summary = await _drive(m, args, err)
    return _finish(summary, m.manifest, args, err)


_HTTP = ("http://", "https://")


def _endpoints(pairs: list[str]) -> dict[str, str]:
    out = {}
    known = default_endpoints()
    for pair in pairs:
        name, sep, url = pair.partition("=")
        # A service's URL keeps its default's kind: http(s), or sftp (the EGA outbox).
        schemes = ("sftp://",) if known.get(name, "").startswith("sftp://") else _HTTP
        if not sep or name not in known or not url.startswith(schemes):
            raise ManifestError(
                f"--endpoint {pair!r}: expected NAME=URL with NAME one of {', '.join(known)}"
                f" and URL {' or '.join(s.removesuffix('://') for s in schemes)}",
                file="<command line>",
            )
        out[name] = url.rstrip("/")
    return out


def _read(path: str) -> str:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ManifestError(f"cannot read accession list: {exc.strerror}", file=path) from exc
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ManifestError(
            f"cannot read accession list: not UTF-8 text ({exc.reason})", file=path, line=line
        ) from exc


async def _plan(args: argparse.Namespace, err: Console) -> int:
    m = Mirror(
        _manifest(args), dest=args.dest, workers=args.workers, state=args.state, lease=args.lease
    )
    engine = m.engine(JsonDisplay().handle if args.json else _display(args, err).handle)
    files, total = await engine.plan_only()
    if args.json:
        doc = {
            "event": "plan",
            "files": files,
            "bytes": total,
            "unsized": engine.unsized,
            "errors": engine.plan_errors,
            "refused": engine.refused,
        }
        print(_json(doc))
    else:
        unknown = f"; {engine.unsized} of unknown size (not counted)" if engine.unsized else ""
        print(f"{files} files, {total} bytes ({human_bytes(total)}){unknown}")
        if args.quiet:
            # Quiet hides warnings as they come: each source that stopped, once, here.
            for reason in (*engine.refused, *engine.plan_errors):
                err.print(f"error: {reason}", markup=False)
    if engine.refused:
        return EXIT_USAGE
    return EXIT_FAILED if engine.plan_errors else EXIT_OK
