"""The ``mirror`` command: argument parsing, logging, uvloop, exit codes.

The only module that prints (with :mod:`mirror._display`). Exit codes (SPEC.md):
0 every planned file verified; 1 some failed (re-run retries only those); 2 usage,
manifest or credentials error, nothing downloaded; 130 interrupted, state saved.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import math
import os
import signal
import sys
import time
import typing
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

from rich.console import Console

from ._api import Mirror
from ._config import DEFAULT_ENDPOINTS, HostLimit, Manifest, Timeouts
from ._display import PLAIN_INTERVAL, Display, JsonDisplay, PlainDisplay, RichDisplay, human_bytes
from ._exceptions import CredentialsError, ManifestError, MirrorError, collapsed, is_usage_error
from ._manifest import accessions_from_text, load_manifest, manifest_from_accessions
from ._models import Summary, TaskStatus

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
PRODUCTION_WEBIN = "https://www.ebi.ac.uk/ena/submit/webin-v2"
DEMO_TOKEN = "demo-token"

_EPILOG = """\
examples:
  mirror demo                         mirror a demo data set from a local emulator, offline
  mirror plan manifest.yaml           count files and bytes, download nothing
  mirror run manifest.yaml            download and verify everything; re-run to resume
  mirror get ERR164407 PRJEB1787      no manifest: accessions straight from the command line
  mirror status manifest.yaml         what is verified, pending, failed (and why)
  mirror status --dest ./pull         the same for a directory 'mirror get' filled
  mirror verify manifest.yaml         re-hash local files against the recorded MD5s
  mirror submit --queue study.json    submit to ENA Webin (test service) and keep the receipt

exit codes: 0 all verified, 1 some files failed (re-run retries them),
            2 usage/manifest/credentials error, 130 interrupted (re-run resumes)

A manifest is YAML; see configs/ for examples. Credentials come from the environment
(EGA_USERNAME, EGA_PASSWORD, EGA_REKEY, ENTEROBASE_TOKEN, WEBIN_USERNAME,
WEBIN_PASSWORD) or ~/.netrc, never from the manifest.
"""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line that says where to read more."""

    def error(self, message: str) -> typing.NoReturn:
        message = message.removeprefix("argument ")
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument(
        "--dest", metavar="DIR", help="root of the local mirror (overrides the manifest's dest)"
    )
    common.add_argument(
        "--workers",
        type=_positive,
        metavar="N",
        help="concurrent downloads (overrides the manifest; default 16)",
    )
    common.add_argument(
        "--state",
        metavar="URL",
        help="state store: a path, or sqlite:///PATH (relative to the current directory; "
        "sqlite:////abs/path is absolute); postgresql://[user@]host[:port]/db to share one "
        "pull between machines (password from PGPASSWORD or ~/.pgpass). Default: "
        "MIRROR_STATE, else DEST/.mirror/state.sqlite. Every process naming the same store "
        "and dest takes part in the same pull",
    )
    common.add_argument(
        "--lease",
        type=_seconds,
        metavar="SECONDS",
        default=60.0,
        help="how long a file stays with the process fetching it without a heartbeat: a "
        "process that dies loses its files to the others after this long (default 60)",
    )
    common.add_argument(
        "--timeout",
        action="append",
        metavar="NAME=SECONDS",
        help="override a manifest timeout (repeatable): connect (default 15), read (30: no "
        "bytes for this long and a request or a stalled body is given up), host_down (90: a "
        "host failing every connection this long has its remaining files failed together)",
    )
    common.add_argument(
        "--json",
        action="store_true",
        help="one JSON event per line on stdout instead of progress bars",
    )
    common.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="more detail: -v a line per file, -vv retries and throttling, -vvv debug",
    )
    common.add_argument("-q", "--quiet", action="store_true", help="only errors and the summary")
    common.add_argument(
        "--progress-interval",
        type=_seconds,
        default=PLAIN_INTERVAL,
        metavar="SECONDS",
        help="when stderr is not a terminal, a progress line this often "
        f"(default {PLAIN_INTERVAL:.0f})",
    )

    p = _Parser(
        prog="mirror",
        description="Bulk, resumable, MD5-verified downloads from EMBL-EBI archives "
        "(ENA, MGnify, EnteroBase, EGA, CRAM references).",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version="ebi-mirror 0.1.0")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, help_: str, description: str) -> argparse.ArgumentParser:
        return sub.add_parser(
            name,
            parents=[common],
            help=help_,
            description=description,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    run = add(
        "run",
        "plan, then download until every file is verified or has failed",
        "Expand the manifest's sources and download every file into DEST, verifying "
        "each against the archive's checksum before it appears at its final path.\n"
        "Re-running resumes: verified files are not requested again, partial files "
        "continue where they stopped, failed files are retried.",
    )
    run.add_argument("manifest", help="YAML manifest (see configs/)")

    get = add(
        "get",
        "download accessions given on the command line, no manifest needed",
        "The archive is told by the prefix: MGYS/MGYA are MGnify, EGAD/EGAF are EGA, "
        "everything else ENA. Same engine, layout, state and exit codes as 'run'.",
    )
    get.add_argument("accessions", nargs="*", metavar="ACCESSION")
    get.add_argument(
        "-i",
        "--input",
        metavar="FILE",
        help="read accessions from FILE ('-' for stdin): one or more a line, separated by "
        "tabs, commas or blanks; '#' starts a comment",
    )
    get.add_argument(
        "--files",
        metavar="FAMILIES",
        help="ENA file families to fetch, comma-separated: fastq, submitted, sra (runs), "
        "generated (analyses); e.g. --files fastq,submitted. Default: fastq for runs, "
        "submitted and generated for analyses",
    )
    get.add_argument(
        "--endpoint",
        action="append",
        default=[],
        metavar="NAME=URL",
        help="another base URL for a service, e.g. "
        "ena_portal=http://127.0.0.1:8080/ena/portal/api (repeatable)",
    )

    plan = add(
        "plan",
        "expand the sources and print the file count and bytes",
        "Ask the archives what the manifest names, print how many files and bytes "
        "that is, and download nothing.",
    )
    plan.add_argument("manifest")

    status = add(
        "status",
        "counts by status from the state store, and why files failed",
        "Read the state store of a manifest's DEST, or of --dest DIR (no network): files "
        "and bytes of the whole pull verified, pending and failed, the sources that "
        "could not be planned, then one line per failed file with its reason.",
    )
    status.add_argument("manifest", nargs="?", help="manifest (or give --dest DIR)")

    verify = add(
        "verify",
        "re-hash local files against the recorded MD5s",
        "Re-read every verified file and compare its MD5 with the one recorded when "
        "it was downloaded. Mismatches are reported and marked pending, so the next "
        "'mirror run' fetches them again. Give the manifest or --dest DIR.",
    )
    verify.add_argument("manifest", nargs="?", help="manifest (or give --dest DIR)")

    submit = sub.add_parser(
        "submit",
        help="submit XML or JSON documents to ENA through Webin REST V2",
        description="Submit each DOCUMENT (one JSON or XML document each) to the Webin REST V2 "
        "TEST service unless --production is given, write its receipt next to it "
        "(doc.json -> doc.receipt.json, doc.xml -> doc.receipt.xml) and print the accessions. "
        "Credentials: WEBIN_USERNAME and WEBIN_PASSWORD, or ~/.netrc. Exit 0 when every "
        "receipt says success, 1 when one does not (its errors printed), 2 for usage or "
        "credentials errors.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    submit.add_argument("documents", nargs="+", metavar="DOCUMENT", type=Path)
    submit.add_argument(
        "--queue",
        action="store_true",
        help="use /submit/queue and poll for the receipt (large submissions); "
        "an interrupted run resumes polling the same submission",
    )
    submit.add_argument(
        "--validate",
        action="store_true",
        help="add the VALIDATE action: a dry run that creates nothing",
    )
    submit.add_argument(
        "--production",
        action="store_true",
        help="submit to the production service (default: the test service, wiped daily)",
    )
    submit.add_argument(
        "--endpoint", metavar="URL", help="another Webin REST V2 base URL (or set MIRROR_WEBIN_URL)"
    )
    submit.add_argument(
        "--poll-interval",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="first wait between polls of a queued submission (default 2)",
    )
    submit.add_argument("--json", action="store_true", help="one JSON line per document")
    submit.add_argument("-v", "--verbose", action="count", default=0)
    submit.add_argument("-q", "--quiet", action="store_true")

    demo = add(
        "demo",
        "mirror a small demo data set from a local archive emulator, offline",
        "Start the bundled archive emulator on 127.0.0.1, mirror the demo manifest "
        "from it into ./mirror-demo (or --dest), verify every file, and say where "
        "everything is. Needs no network.",
    )
    demo.add_argument("manifest", nargs="?", help="manifest to use (default: the bundled demo)")
    return p


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: give a number of seconds above 0")
    return value


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if getattr(args, "state", "") is None:
        args.state = os.environ.get("MIRROR_STATE") or None
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    _logging(args, err)
    commands: dict[str, Callable[[argparse.Namespace, Console], Coroutine[Any, Any, int]]] = {
        "run": _run,
        "get": _get,
        "plan": _plan,
        "status": _status,
        "verify": _verify,
        "demo": _demo,
        "submit": _submit,
    }
    try:
        with collapsed():
            return _run_async(commands[args.command](args, err))
    except MirrorError as exc:
        # One line per error: the first, then any others a task group held (once each:
        # workers side by side often meet the same one).
        lines = list(dict.fromkeys((str(exc), *getattr(exc, "__notes__", ()))))
        for line in lines:
            err.print(f"mirror: error: {line}", markup=False)
        # What to do about it, on a line of its own, unless the message already says.
        if exc.hint and not any(exc.hint in line for line in lines):
            err.print(f"mirror: hint: {exc.hint}", markup=False)
        code = EXIT_USAGE if is_usage_error(exc) else EXIT_FAILED
        if getattr(args, "json", False) and args.command in _STREAMING:
            # A consumer of the event stream learns the end from the stream itself.
            with contextlib.suppress(BrokenPipeError):
                print(_json(_failed_event(code, lines)), flush=True)
        return code
    except KeyboardInterrupt:
        message = "interrupted; state saved, re-run to resume"
        err.print(f"mirror: {message}", markup=False)
        if getattr(args, "json", False) and args.command in _STREAMING:
            with contextlib.suppress(BrokenPipeError):
                print(_json(_failed_event(EXIT_INTERRUPTED, [message])), flush=True)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # Whoever read our output stopped reading (``mirror get --json ... | head``):
        # stop as an interruption would, quietly; the state is saved.
        _silence_stdout()
        return EXIT_INTERRUPTED
    except BaseExceptionGroup as group:
        if group.subgroup(BrokenPipeError) is None:
            raise
        _silence_stdout()
        return EXIT_INTERRUPTED


#: Commands whose ``--json`` output is a stream of events ending in ``run-finished``.
_STREAMING = frozenset({"run", "get", "demo"})


def _failed_event(code: int, errors: list[str]) -> dict[str, object]:
    return {
        "event": "run-finished",
        "time": round(time.time(), 3),
        "summary": None,
        "exit_code": code,
        "errors": errors,
    }


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's last flush cannot fail again."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def _run_async(coro: Coroutine[Any, Any, int]) -> int:
    """Run ``coro`` on uvloop when available; SIGINT/SIGTERM cancel it (exit 130)."""
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    with contextlib.suppress(ImportError):
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(_cancellable(coro))


async def _cancellable(coro: Awaitable[int]) -> int:
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(coro)
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, task.cancel)
    try:
        return await task
    except asyncio.CancelledError:
        raise KeyboardInterrupt from None
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)


def _logging(args: argparse.Namespace, err: Console) -> None:
    """Warnings and per-file lines reach people as events; logging is for -vv and -vvv."""
    from rich.logging import RichHandler

    level = {0: logging.ERROR, 1: logging.ERROR, 2: logging.INFO}.get(args.verbose, logging.DEBUG)
    # Through rich's console, so log lines print above the live progress bars.
    handler = RichHandler(console=err, show_path=False, markup=False, rich_tracebacks=False)
    logging.basicConfig(level=level, handlers=[handler], format="%(name)s: %(message)s")


def _manifest(args: argparse.Namespace) -> Manifest:
    return _with_timeouts(load_manifest(args.manifest), args)


def _with_timeouts(manifest: Manifest, args: argparse.Namespace) -> Manifest:
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


async def _run(args: argparse.Namespace, err: Console) -> int:
    m = Mirror(
        _manifest(args), dest=args.dest, workers=args.workers, state=args.state, lease=args.lease
    )
    summary = await _drive(m, args, err)
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


def _endpoints(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        name, sep, url = pair.partition("=")
        if not sep or name not in DEFAULT_ENDPOINTS or not url.startswith(("http://", "https://")):
            raise ManifestError(
                f"--endpoint {pair!r}: expected NAME=URL with NAME one of "
                f"{', '.join(DEFAULT_ENDPOINTS)}",
                file="<command line>",
            )
        out[name] = url.rstrip("/")
    return out


def _dir(path: str) -> Path:
    return Path(path).expanduser().resolve()


def _has_state(dest: Path) -> bool:
    return (dest / ".mirror" / "state.sqlite").exists()


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


def _finish(summary: Summary, manifest: Manifest, args: argparse.Namespace, err: Console) -> int:
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


def _pull_dest(args: argparse.Namespace) -> Path:
    """The ``dest`` of ``status``/``verify``: ``--dest``, else the manifest's."""
    if args.dest:
        return _dir(args.dest)
    if args.manifest is None:
        raise ManifestError(
            f"give the manifest or --dest DIR (the directory 'mirror run' or "
            f"'mirror get' filled): mirror {args.command} --dest DIR",
            file="<command line>",
        )
    return _manifest(args).dest


async def _status(args: argparse.Namespace, err: Console) -> int:
    from ._state import gone, open_store

    dest = _pull_dest(args)
    if args.state is None and not _has_state(dest):
        print(f"no state yet under {dest}: run 'mirror run' or 'mirror get' there first")
        return EXIT_OK
    store = await open_store(args.state, dest)
    try:
        # The whole pull: every file any run or process of it planned, not only the last.
        counts = await store.counts(None)
        failed = [f async for f in store.files(None, status=TaskStatus.FAILED)]
        problems = await store.problems()
        # The processes taking part now, and what they hold.
        # A process of this host that died without leaving is not taking part.
        members = [m for m in await store.members(lease=args.lease) if not gone(m.host, m.pid)]
        running = [f async for f in store.files(None, status=TaskStatus.RUNNING)]
    finally:
        await store.aclose()
    now = time.time()
    # A file whose holder died (its lease ran out, or its process on this host is gone)
    # waits for the next process: pending, as far as the user is concerned.
    live = {m.id for m in members}
    stale = [f for f in running if f.holder not in live or (f.lease_until or 0) < now]
    if stale:
        running = [f for f in running if f not in stale]
        n, b = counts[TaskStatus.RUNNING]
        gone_bytes = sum(f.bytes if f.bytes is not None else (f.size or 0) for f in stale)
        counts[TaskStatus.RUNNING] = (n - len(stale), b - gone_bytes)
        n, b = counts[TaskStatus.PENDING]
        counts[TaskStatus.PENDING] = (n + len(stale), b + gone_bytes)
    if args.json:
        print(
            _json(
                {
                    "event": "status",
                    **{s.value: {"files": n, "bytes": b} for s, (n, b) in counts.items()},
                    "failures": [{"path": f.path, "reason": f.reason} for f in failed],
                    "errors": [m for k, m in problems if k == "error"],
                    "refused": [m for k, m in problems if k == "refused"],
                    "members": [
                        {
                            "host": m.host,
                            "pid": m.pid,
                            "heartbeat": round(m.heartbeat, 3),
                            "held": m.held,
                            "planning": m.planning,
                        }
                        for m in members
                    ],
                    "in_progress": [
                        {
                            "path": f.location,
                            "holder": _holder(f.holder),
                            "lease_until": f.lease_until,
                        }
                        for f in running
                    ],
                }
            )
        )
    else:
        for status in (
            TaskStatus.VERIFIED,
            TaskStatus.RUNNING,
            TaskStatus.PENDING,
            TaskStatus.FAILED,
        ):
            n, b = counts[status]
            if n or status is not TaskStatus.RUNNING:
                print(f"{status.value:<9} {n:>8} files {human_bytes(b):>12}")
        if members:
            print(f"members   {len(members):>8} (processes taking part now)")
            for m in members:
                seen = time.strftime("%H:%M:%S", time.localtime(m.heartbeat))
                print(
                    f"  {m.host} pid {m.pid}\tlast heartbeat {seen} "
                    f"({max(0.0, now - m.heartbeat):.0f} s ago)\tholds {m.held} "
                    f"file{'s' if m.held != 1 else ''}" + ("\tplanning" if m.planning else "")
                )
        for f in running:
            left = (f.lease_until or now) - now
            state = f"lease {left:.0f} s left" if left > 0 else "lease expired: waiting for a taker"
            print(f"{f.location}\trunning\t{_holder(f.holder)}, {state}")
        for kind, message in problems:
            what = "credentials refused" if kind == "refused" else "not planned"
            print(f"{message.split(':', 1)[0]}\t{what}\t{message.split(':', 1)[-1].strip()}")
        for f in failed:
            print(f"{f.location}\tfailed\t{f.reason or ''}")
    if failed or counts[TaskStatus.PENDING][0] or counts[TaskStatus.RUNNING][0] or problems:
        return EXIT_FAILED
    return EXIT_OK


def _holder(member: str | None) -> str:
    """``host pid N`` of a member id (``host:pid:token``)."""
    if not member:
        return "no one"
    parts = member.rsplit(":", 2)
    return f"{parts[0]} pid {parts[1]}" if len(parts) == 3 else member


async def _verify(args: argparse.Namespace, err: Console) -> int:
    from ._verify import verify_local

    dest = _pull_dest(args)
    if args.state is None and not _has_state(dest):
        raise ManifestError(
            "no state store here (.mirror/state.sqlite): nothing was mirrored into it",
            file=str(dest),
        )
    checked, bad = await verify_local(dest, args.state)
    for path, reason in bad:
        print(f"{path}\tmismatch\t{reason}")
    print(
        f"{checked} files re-hashed, {len(bad)} mismatched"
        + ("; they are marked pending: 'mirror run' fetches them again" if bad else "")
    )
    return EXIT_FAILED if bad else EXIT_OK


async def _demo(args: argparse.Namespace, err: Console) -> int:
    from .emulator import Catalog, Emulator

    manifest = load_manifest(args.manifest or _demo_manifest())
    dest = _dir(args.dest or "mirror-demo")
    async with Emulator(Catalog.demo(), enterobase_tokens=(DEMO_TOKEN,)) as emu:
        manifest = dataclasses.replace(
            manifest,
            dest=dest,
            endpoints={**manifest.endpoints, **emu.endpoints},
            origin=manifest.origin,
        )
        if not args.json:
            err.print(
                f"archive emulator listening on {', '.join(emu.endpoints.values())}", markup=False
            )
        # The emulator's own EnteroBase token, not one from the environment.
        demo_token = {"ENTEROBASE_TOKEN": DEMO_TOKEN}
        m = Mirror(
            manifest,
            workers=args.workers,
            state=args.state,
            credentials=demo_token,
            lease=args.lease,
        )
        summary = await _drive(m, args, err)
        requests = len(emu.log)
    code = _finish(summary, m.manifest, args, err)
    if not args.json:
        err.print(
            f"the emulator answered {requests} requests; run the same command again "
            "and every file is skipped as already verified",
            markup=False,
        )
    return code


async def _submit(args: argparse.Namespace, err: Console) -> int:
    from ._credentials import Credentials
    from ._http import Http
    from .submit.webin import Submission, existing_accession, submit_all

    base = (
        args.endpoint
        or os.environ.get("MIRROR_WEBIN_URL")
        or (PRODUCTION_WEBIN if args.production else DEFAULT_ENDPOINTS["webin"])
    )
    if not base.startswith(("http://", "https://")):
        raise ManifestError(f"--endpoint {base!r}: expected an http(s) URL", file="<command line>")
    missing = [d for d in args.documents if not _is_file(d)]
    if missing:
        raise ManifestError(f"no such document: {missing[0]}", file="<command line>")
    creds = Credentials.from_environment()
    user, password = creds.get("WEBIN_USERNAME"), creds.get("WEBIN_PASSWORD")
    if user is None or password is None:
        found = creds.for_host(base)
        if found is not None and found[0] and found[1]:
            user, password = user or found[0], password or found[1]
    if user is None or password is None:
        raise CredentialsError(
            "WEBIN_USERNAME and WEBIN_PASSWORD are not set (or no ~/.netrc entry for the "
            "Webin host): Webin submissions need your Webin account"
        )
    how = Submission(
        base=base.rstrip("/"),
        username=user.value,
        password=password,
        queue=args.queue,
        validate=args.validate,
        poll_interval=args.poll_interval,
    )
    say = (
        (lambda line: None)
        if args.json or args.quiet
        else (lambda line: err.print(line, markup=False))
    )
    target = "production" if base.rstrip("/") == PRODUCTION_WEBIN else "test"
    if not args.json and not args.quiet and not args.endpoint:
        err.print(f"submitting to the Webin {target} service", markup=False)
    # Webin answers a submission only once it has processed it: give it minutes.
    timeouts = Timeouts(read=300)
    async with Http(lambda host: HostLimit(rate=10, connections=4), timeouts=timeouts) as http:
        outcomes = await submit_all(list(args.documents), how, http, say=say)
    for o in outcomes:
        if args.json:
            print(
                _json(
                    {
                        "document": str(o.document),
                        "success": o.success,
                        "receipt": str(o.receipt),
                        "submissionId": o.submission_id,
                        "accessions": [
                            {"type": t, "alias": a, "accession": acc} for t, a, acc in o.accessions
                        ],
                        "errors": list(o.errors),
                    }
                )
            )
            continue
        print(f"{o.document}: {'success' if o.success else 'FAILED'}; receipt {o.receipt}")
        for kind, alias, accession in o.accessions:
            print(f"  {kind:<10} {accession or '-':<14} {alias}")
        for error in o.errors:
            print(f"  error: {error}")
            if (existing := existing_accession(error)) is not None:
                print(f"  (the alias already exists as {existing}; use MODIFY to change it)")
    return EXIT_OK if all(o.success for o in outcomes) else EXIT_FAILED


def _is_file(path: Path) -> bool:
    return path.is_file()


def _demo_manifest() -> Path:
    # Always the packaged one: a configs/demo.yaml in the current directory may be
    # anything (another checkout, a user's edit) and is not what the help promises.
    return Path(__file__).parent / "emulator" / "demo.yaml"


def _json(doc: object) -> str:
    return json.dumps(doc)
