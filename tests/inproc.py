"""The ``mirror`` command line in this process, and the servers it talks to in a thread.

A child ``mirror`` process spends most of a second importing before it does anything,
and an emulator process as long again before it listens. Tests that are not about
processes or signals run the command line's ``main`` here instead (:func:`mirror_main`,
which returns what :func:`tests.conftest.mirror_cmd` returns) against servers on an
event loop in a thread of its own (:class:`Background`): ``main`` runs its own loop, as
the command does, in the test's thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Coroutine, Iterator, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from mirror import RetryPolicy, Tuning
from mirror.emulator import Catalog, Emulator

from .threaded import Served, serving

__all__ = [
    "FAST_BACKOFF",
    "Background",
    "Cli",
    "Ran",
    "ThreadedEmulator",
    "emulator_in_thread",
    "mirror_main",
    "tune_runs",
]

T = TypeVar("T")


class Background:
    """An event loop running in a thread of its own; servers entered here stay up until
    :meth:`close`, which leaves them in the reverse order."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._stack = contextlib.AsyncExitStack()
        self._thread = threading.Thread(target=self.loop.run_forever, name="servers", daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        """Run ``coro`` on the loop; its result (or exception) here."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def enter(self, factory: Callable[[], AbstractAsyncContextManager[T]]) -> T:
        """Enter the context ``factory()`` gives (made on the loop) until :meth:`close`."""

        async def enter() -> T:
            return await self._stack.enter_async_context(factory())

        return self.run(enter())

    def close(self) -> None:
        try:
            self.run(self._stack.aclose())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(30)
            self.loop.close()


@pytest.fixture
def background() -> Iterator[Background]:
    bg = Background()
    try:
        yield bg
    finally:
        bg.close()


def mirror_main(
    *args: str, env: Mapping[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``mirror ARGS`` run by its ``main`` in this process: exit code, stdout, stderr.

    ``env`` is set for the call only. Log lines reach stderr as in a child process: the
    command's own logging setup is given a root logger without pytest's handlers. A
    run still going after ``timeout`` seconds is interrupted as Ctrl-C would (SIGINT),
    and :class:`subprocess.TimeoutExpired` raised, as ``subprocess.run`` does.
    """
    from mirror._cli import main

    out, err = io.StringIO(), io.StringIO()
    fired = threading.Event()

    def interrupt() -> None:
        fired.set()
        os.kill(os.getpid(), signal.SIGINT)

    # An async test calls this through ``asyncio.to_thread`` while its own loop serves:
    # off the main thread no signal handler can be set, which uvloop (unlike asyncio's
    # loop) refuses with an error, and a SIGINT would reach pytest, not the command.
    on_main = threading.current_thread() is threading.main_thread()
    watchdog = threading.Timer(timeout, interrupt)
    captured = contextlib.redirect_stdout(out), contextlib.redirect_stderr(err)
    with (
        _ONE_AT_A_TIME,
        _environ(env or {}),
        _own_logging(),
        captured[0],
        captured[1],
        contextlib.nullcontext() if on_main else _without_uvloop(),
    ):
        if on_main:
            watchdog.start()
        try:
            code = main(list(args))
        except SystemExit as exit:  # argparse's usage errors
            code = exit.code if isinstance(exit.code, int) else int(exit.code is not None)
        finally:
            watchdog.cancel()
    if fired.is_set():
        raise subprocess.TimeoutExpired(["mirror", *args], timeout, out.getvalue(), err.getvalue())
    return subprocess.CompletedProcess(["mirror", *args], code, out.getvalue(), err.getvalue())


#: ``sys.stdout``, ``sys.stderr`` and ``os.environ`` are the process's: one command at a time.
_ONE_AT_A_TIME = threading.Lock()


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


@contextlib.contextmanager
def _environ(env: Mapping[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def _own_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    root.handlers = []
    try:
        yield
    finally:
        for handler in root.handlers:
            handler.close()
        root.handlers = handlers
        root.setLevel(level)


def tune_runs(monkeypatch: pytest.MonkeyPatch, tuning: Tuning) -> None:
    """Runs of the command in this process use ``tuning`` (a run's own is the default)."""
    monkeypatch.setattr("mirror._engine.Tuning", lambda: tuning)


#: Backoff as in production (the same attempts) but waits of milliseconds: for tests that
#: spend attempts, not time.
FAST_BACKOFF = Tuning(retry=RetryPolicy(base=0.02, cap=0.1))


@dataclass(frozen=True, slots=True)
class Ran:
    """What one ``mirror`` command did: its exit code and what it printed."""

    returncode: int
    stdout: str
    stderr: str


class Cli:
    """``mirror ARGS…`` as :func:`tests.inproc.mirror_main` runs it, in ``cwd`` if given."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        self._monkeypatch = monkeypatch

    def __call__(
        self, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> Ran:
        with self._monkeypatch.context() as patch:
            if cwd is not None:
                patch.chdir(cwd)
            done = mirror_main(*args, env=env)
        return Ran(done.returncode, done.stdout, done.stderr)


class ThreadedEmulator:
    """An :class:`Emulator` serving from a thread of its own (:func:`tests.threaded.serving`)."""

    def __init__(self, served: Served[Emulator]) -> None:
        self.emulator = served.value
        self._served = served

    @property
    def endpoints(self) -> dict[str, str]:
        return self.emulator.endpoints

    def log(self) -> list[dict[str, Any]]:
        """Every request so far (none still in flight), as the emulator's JSONL log has them."""
        self.idle()
        return [entry.to_dict() for entry in self.emulator.log]

    def idle(self) -> None:
        """Wait until no request is in flight: the log then has every request so far."""
        self._served.wait(self.emulator.wait_idle)


@contextlib.contextmanager
def emulator_in_thread(catalog: Catalog, **options: Any) -> Iterator[ThreadedEmulator]:
    """Serve ``catalog`` (``options`` as :class:`Emulator` takes them) until the block ends."""
    with serving(Emulator(catalog, **options)) as served:
        yield ThreadedEmulator(served)


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> Cli:
    """The ``mirror`` command line run in this process (no child's imports to wait for)."""
    return Cli(monkeypatch)


@pytest.fixture
def emulator_thread() -> Iterator[Callable[..., ThreadedEmulator]]:
    """A factory: the emulator serving a catalog from a thread (for ``cli``), stopped after."""
    with contextlib.ExitStack() as stack:
        yield lambda catalog, **options: stack.enter_context(emulator_in_thread(catalog, **options))
