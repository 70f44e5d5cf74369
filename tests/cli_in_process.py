"""The ``mirror`` command line run in this process, its output captured.

A child ``mirror`` process spends most of a second importing before it does anything.
Tests whose point is what a command plans, prints or exits with (not signals, not the
installed entry point) call :func:`mirror._cli.main` here instead. It runs its own event
loop, so an async test calls :func:`mirror_in_process` through ``asyncio.to_thread``
while its own loop serves the replay or the emulator. That loop is asyncio's own:
uvloop refuses signal handlers off the main thread with an error asyncio's loop does
not raise (and the command line does not expect), and signals are not what these
tests are about.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import threading
from collections.abc import Iterator

from mirror._cli import main

__all__ = ["mirror_in_process"]

#: ``sys.stdout``, ``sys.stderr`` and ``os.environ`` are the process's: one command at a time.
_ONE_AT_A_TIME = threading.Lock()


@contextlib.contextmanager
def _environment(env: dict[str, str]) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def _without_uvloop() -> Iterator[None]:
    """``import uvloop`` fails meanwhile. Only that key of ``sys.modules`` is touched:
    restoring the whole dict would drop the modules the command imported, and a later
    import would make second copies of their classes."""
    saved = sys.modules.get("uvloop")
    sys.modules["uvloop"] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        if saved is None:
            del sys.modules["uvloop"]
        else:
            sys.modules["uvloop"] = saved


def mirror_in_process(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``mirror ARGS`` as :func:`tests.conftest.mirror_cmd` runs it, without the child process."""
    out, err = io.StringIO(), io.StringIO()
    with (
        _ONE_AT_A_TIME,
        _environment(env or {}),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
        _without_uvloop(),
    ):
        code = main(list(args))
    return subprocess.CompletedProcess(["mirror", *args], code, out.getvalue(), err.getvalue())
