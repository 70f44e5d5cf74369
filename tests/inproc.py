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
import threading
from collections.abc import Callable, Coroutine, Iterator, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest

from mirror import RetryPolicy, Tuning
from mirror.emulator import Catalog, Emulator

__all__ = ["FAST_BACKOFF", "Background", "ThreadedEmulator", "mirror_main", "tune_runs"]

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


@dataclass
class ThreadedEmulator:
    """An emulator on a :class:`Background` loop, read as an ``EmulatorProcess`` is."""

    emulator: Emulator
    background: Background

    @property
    def endpoints(self) -> dict[str, str]:
        return self.emulator.endpoints

    def log(self) -> list[dict[str, Any]]:
        """Every request so far (none still in flight), as the process's JSON lines."""
        self.background.run(self.emulator.wait_idle())
        return [entry.to_dict() for entry in self.emulator.log]


@pytest.fixture
def background() -> Iterator[Background]:
    bg = Background()
    try:
        yield bg
    finally:
        bg.close()


@pytest.fixture
def emulator_thread(background: Background) -> Callable[..., ThreadedEmulator]:
    """A factory: an emulator of ``catalog`` (``Emulator``'s own keyword arguments for
    faults, bandwidth, accounts, TLS) on the test's background loop; stopped after it."""

    def start(catalog: Catalog | None = None, **options: Any) -> ThreadedEmulator:
        emulator = background.enter(lambda: Emulator(catalog, **options))
        return ThreadedEmulator(emulator, background)

    return start


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

    watchdog = threading.Timer(timeout, interrupt)
    captured = contextlib.redirect_stdout(out), contextlib.redirect_stderr(err)
    with _environ(env or {}), _own_logging(), captured[0], captured[1]:
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
