"""Several processes of one pull, in one test: the pull's ledger, claimed tasks, a worker.

A worker process fetches files another process planned, from a task rebuilt from the
state store's row (no request headers, none of the planning source's memory), and
routes it to the hooks of its own source object built from the same manifest. These
helpers play that part without the engine, so a test can drive the hooks of two
source objects against the emulator and watch what reaches the archive.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path

from mirror._exceptions import MirrorError, TransferError
from mirror._fetch import Fetched, fetch
from mirror._http import Http
from mirror._models import FileTask, TaskStatus
from mirror._paths import final_path
from mirror.sources import FileHooks

__all__ = ["SharedPull", "as_row", "fetch_claimed"]


class SharedPull:
    """The pull as the store keeps it: each file's status, and the ``once`` names taken.

    One instance is every process's :class:`~mirror.sources.PullLedger`.
    """

    def __init__(self) -> None:
        self.status: dict[str, TaskStatus] = {}
        self.taken: list[str] = []
        self._validators: dict[str, str | None] = {}

    def plan(self, tasks: list[FileTask]) -> None:
        for task in tasks:
            self.status.setdefault(task.key, TaskStatus.PENDING)

    async def tally(self, prefix: str) -> dict[TaskStatus, int] | None:
        return dict(Counter(s for key, s in self.status.items() if key.startswith(prefix)))

    async def once(self, name: str) -> bool:
        if name in self.taken:
            return False
        self.taken.append(name)
        return True

    # The store also keeps the .part validators the fetcher asks for.
    async def get_validator(self, path: str) -> str | None:
        return self._validators.get(path)

    async def set_validator(self, path: str, validator: str | None) -> None:
        self._validators[path] = validator


def as_row(task: FileTask) -> FileTask:
    """``task`` as a claim rebuilds it from the store: the stored fields, nothing else."""
    return FileTask(
        source=task.source,
        accession=task.accession,
        url=task.url,
        path=task.path,
        size=task.size,
        checksum=task.checksum,
        verify=task.verify,
        root=task.root,
        mode=task.mode,
    )


async def fetch_claimed(
    pull: SharedPull, hooks: FileHooks, task: FileTask, dest: Path, http: Http, attempts: int = 3
) -> Fetched | None:
    """Fetch a claimed ``task`` as a worker does: prepare, headers, fetch and verify,
    the result written to the pull before the hooks hear it settled."""
    pull.status[task.key] = TaskStatus.RUNNING
    error: MirrorError | None = None
    got: Fetched | None = None
    for _ in range(attempts):
        try:
            current = await hooks.prepare(task, error)
            headers = dict(current.headers) | dict(await hooks.headers(current))
            current = dataclasses.replace(current, headers=tuple(headers.items()))
            got = await fetch(
                current,
                final_path(dest, task.path, task.root),
                http,
                pull,
                verifier=hooks.verify,
            )
            break
        except TransferError as exc:
            error = exc
            if not (exc.retryable or hooks.recoverable(exc)):
                break
        except MirrorError as exc:
            error = exc
            break
    verified = got is not None
    pull.status[task.key] = TaskStatus.VERIFIED if verified else TaskStatus.FAILED
    await hooks.settled(task, verified)
    return got
