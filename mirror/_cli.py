"""The ``mirror`` command: the subcommands' dispatch, logging, uvloop, exit codes.

The parser is in :mod:`mirror._cli_parser`, each subcommand in a ``_cli_*`` module of its
own, imported only when that command runs (``--version`` and ``status`` stay quick);
only these modules print (with :mod:`mirror._display`). Exit codes (SPEC.md):
0 every planned file verified; 1 some failed (re-run retries only those); 2 usage,
manifest or credentials error, nothing downloaded; 130 interrupted, state saved.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

from ._cli_output import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE, _json
from ._cli_parser import _parser
from ._exceptions import MirrorError, collapsed, is_usage_error

if TYPE_CHECKING:
    import asyncio

    from rich.console import Console

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if getattr(args, "state", "") is None:
        args.state = os.environ.get("MIRROR_STATE") or None
    stderr = _Stderr()
    if args.command != "status":  # status sets it up only if it opens the store (below)
        _logging(args, stderr)
    try:
        with collapsed():
            command = _command(args, stderr)
            if isinstance(command, int):  # answered without an event loop
                return command
            return _run_async(command, uvloop=args.command not in _LOCAL)
    except MirrorError as exc:
        err = stderr.console
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
        stderr.console.print(f"mirror: {message}", markup=False)
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


def _command(args: argparse.Namespace, stderr: _Stderr) -> Coroutine[Any, Any, int] | int:
    """The subcommand's coroutine (or ``status``'s exit code, when it read the store
    without one), importing only its own modules: ``status`` and
    ``verify`` read a state store and load neither the engine nor aiohttp (nor rich:
    they print to stdout), and ``--version`` and ``--help`` end in the parser."""
    match args.command:
        case "status":
            from ._cli_status import _status

            outcome = _status(args)
            if not isinstance(outcome, int):
                # Read as it stood, the store logged nothing; opened as a run opens it, it may.
                _logging(args, stderr)
            return outcome
        case "verify":
            from ._cli_status import _verify

            return _verify(args)
        case "run":
            from ._cli_run import _run

            return _run(args, stderr.console)
        case "get":
            from ._cli_run import _get

            return _get(args, stderr.console)
        case "plan":
            from ._cli_run import _plan

            return _plan(args, stderr.console)
        case "demo":
            from ._cli_demo import _demo

            return _demo(args, stderr.console)
        case "samplesheet":
            from ._cli_samplesheet import _samplesheet

            return _samplesheet(args)
        case "submit":
            from ._cli_submit import _submit

            return _submit(args, stderr.console)
        case "upload":
            from ._cli_upload import _upload

            return _upload(args, stderr.console)
        case "ls":
            from ._cli_ls import _ls

            return _ls(args, stderr.console)
    raise AssertionError(f"no command {args.command!r}")  # the parser allows no other


class _Stderr:
    """Messages, warnings and progress, through rich, whose console is made on first
    use: importing rich is a good part of what ``mirror status`` would take, and status
    writes to stderr only when it fails."""

    @functools.cached_property
    def console(self) -> Console:
        from rich.console import Console

        return Console(stderr=True, highlight=False, soft_wrap=True)


#: Commands whose ``--json`` output is a stream of events ending in ``run-finished``.
_STREAMING = frozenset({"run", "get", "demo", "upload"})


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


#: Commands that read a state store and local files: asyncio's own loop serves them as
#: well, and loading uvloop would take a good part of the time they run.
_LOCAL = frozenset({"status", "verify"})


def _run_async(coro: Coroutine[Any, Any, int], *, uvloop: bool = True) -> int:
    """Run ``coro`` (on uvloop when asked and available); SIGINT/SIGTERM cancel it (exit 130)."""
    import asyncio

    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if uvloop:
        with contextlib.suppress(ImportError):
            import uvloop as fast

            factory = fast.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(_cancellable(coro))


async def _cancellable(coro: Awaitable[int]) -> int:
    import asyncio

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


def _logging(args: argparse.Namespace, stderr: _Stderr) -> None:
    """Warnings and per-file lines reach people as events; logging is for -vv and -vvv."""
    # Not at the top: --version and --help end in the parser, before this, and logging
    # is a good part of what they would import.
    from ._cli_log import setup_logging

    setup_logging(args.verbose, lambda: stderr.console)
