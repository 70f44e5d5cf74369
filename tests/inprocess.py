"""The ``mirror`` command and the emulator in the test's own process.

A ``mirror`` child process spends most of a second importing before it does any work;
the command-line tests that are not about processes or signals call ``main`` here
instead, with the emulator serving from a thread of its own (``main`` runs its own
event loop on the test's thread, as it does in a child process).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mirror.emulator import Catalog, Emulator

from .threaded import Served, serving

__all__ = ["Cli", "Ran", "ThreadedEmulator", "emulator_in_thread"]


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
    """An :class:`Emulator` serving from a thread of its own (:func:`tests.threaded.serving`)."""

    def __init__(self, served: Served[Emulator]) -> None:
        self.emulator = served.value
        self._served = served

    @property
    def endpoints(self) -> dict[str, str]:
        return self.emulator.endpoints

    def log(self) -> list[dict[str, Any]]:
        """Every request finished so far, as dicts (as the emulator's JSONL log has them)."""
        return [entry.to_dict() for entry in self.emulator.log]

    def idle(self) -> None:
        """Wait until no request is in flight: the log then has every request so far."""
        self._served.wait(self.emulator.wait_idle)


@contextlib.contextmanager
def emulator_in_thread(catalog: Catalog, **options: Any) -> Iterator[ThreadedEmulator]:
    """Serve ``catalog`` (``options`` as :class:`Emulator` takes them) until the block ends."""
    with serving(Emulator(catalog, **options)) as served:
        yield ThreadedEmulator(served)
