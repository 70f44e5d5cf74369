"""The ``mirror`` command and the emulator in the test's own process.

A ``mirror`` child process spends most of a second importing before it does any work;
the command-line tests that are not about processes or signals call ``main`` here
instead, with the emulator serving from a thread of its own (``main`` runs its own
event loop on the test's thread, as it does in a child process).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from mirror.emulator import Catalog, Emulator

__all__ = ["Cli", "Ran", "ThreadedEmulator", "emulator_in_thread"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Ran:
    """What one ``mirror`` command did: its exit code and what it printed."""

    returncode: int
    stdout: str
    stderr: str


class Cli:
    """``mirror ARGS…`` as ``main(ARGS)`` in this process, with ``env`` set and in ``cwd``."""

    def __init__(self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
        self._capsys = capsys
        self._monkeypatch = monkeypatch

    def __call__(
        self, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> Ran:
        self._capsys.readouterr()  # what came before is not this command's
        with self._monkeypatch.context() as patch:
            for name, value in (env or {}).items():
                patch.setenv(name, value)
            if cwd is not None:
                patch.chdir(cwd)
            from mirror._cli import main

            try:
                code = main(list(args))
            except SystemExit as exc:  # argparse: --help, or a usage error
                code = exc.code if isinstance(exc.code, int) else 1
        out = self._capsys.readouterr()
        return Ran(code, out.out, out.err)


class ThreadedEmulator:
    """An :class:`Emulator` whose event loop runs in a thread beside the test."""

    def __init__(self, emulator: Emulator, loop: asyncio.AbstractEventLoop) -> None:
        self.emulator = emulator
        self._loop = loop

    @property
    def endpoints(self) -> dict[str, str]:
        return self.emulator.endpoints

    def log(self) -> list[dict[str, Any]]:
        """Every request finished so far, as dicts (as the emulator's JSONL log has them)."""
        return [entry.to_dict() for entry in self.emulator.log]

    def idle(self, timeout: float = 30) -> None:
        """Wait until no request is in flight: the log then has every request so far."""
        self.call(self.emulator.wait_idle(), timeout)

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)


@contextlib.contextmanager
def emulator_in_thread(catalog: Catalog, **options: Any) -> Iterator[ThreadedEmulator]:
    """Serve ``catalog`` (``options`` as :class:`Emulator` takes them) until the block ends."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="emulator", daemon=True)
    thread.start()
    try:
        emulator = Emulator(catalog, **options)
        served = ThreadedEmulator(emulator, loop)
        served.call(emulator.start())
        try:
            yield served
        finally:
            served.call(emulator.stop())
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        loop.close()
