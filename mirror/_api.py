"""The library call: ``await mirror.run(...)`` and ``mirror.Mirror(...).events()``."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from ._config import Manifest, Timeouts
from ._credentials import Credentials
from ._engine import Engine
from ._manifest import load_manifest
from ._models import Event, RunFinished, Summary
from ._retry import RetryPolicy
from ._tasks import stopped
from ._tuning import Tuning

__all__ = ["Mirror", "run"]

ManifestLike = str | os.PathLike[str] | Mapping[str, Any] | Manifest


def _resolve(
    manifest: ManifestLike,
    *,
    dest: str | os.PathLike[str] | None,
    workers: int | None,
    timeouts: Timeouts | None = None,
) -> Manifest:
    m = manifest if isinstance(manifest, Manifest) else load_manifest(manifest)
    changes: dict[str, Any] = {}
    if dest is not None:
        changes["dest"] = Path(dest).expanduser().resolve()
    if workers is not None:
        changes["workers"] = workers
    if timeouts is not None:
        changes["timeouts"] = timeouts
    return dataclasses.replace(m, **changes) if changes else m


class Mirror:
    """One mirroring run, driven from the caller's event loop.

    >>> async with mirror.Mirror("manifest.yaml") as m:
    ...     async for event in m.events():
    ...         print(event.kind)
    ...     print(m.summary.verified)

    The manifest is loaded and validated when the object is built, so a bad
    manifest raises :class:`mirror.ManifestError` before any request is made.
    """

    def __init__(
        self,
        manifest: ManifestLike,
        *,
        dest: str | os.PathLike[str] | None = None,
        workers: int | None = None,
        state: str | None = None,
        retry: RetryPolicy | None = None,
        progress_interval: float | None = None,
        credentials: Mapping[str, str] | None = None,
        timeouts: Timeouts | None = None,
        lease: float | None = None,
        tuning: Tuning | None = None,
    ) -> None:
        if tuning is not None and tuning.timeouts is not None:
            # Folded into the manifest here, where an explicit ``timeouts`` wins.
            timeouts = timeouts or tuning.timeouts
            tuning = dataclasses.replace(tuning, timeouts=None)
        self.manifest = _resolve(manifest, dest=dest, workers=workers, timeouts=timeouts)
        self._tuning = tuning
        self._lease = lease
        self._credentials = Credentials(env=dict(credentials)) if credentials is not None else None
        self._state = state
        self._retry = retry
        self._interval = progress_interval
        self._summary: Summary | None = None
        self._events: AsyncGenerator[Event, None] | None = None

    async def __aenter__(self) -> Mirror:
        return self

    async def __aexit__(self, *exc: object) -> None:
        # Leaving the block ends the run even if the loop over events() broke off
        # early: an abandoned async generator would otherwise run on until collected.
        if self._events is not None:
            await self._events.aclose()

    @property
    def summary(self) -> Summary:
        """Counts of the run; available once :meth:`events` is exhausted."""
        if self._summary is None:
            raise RuntimeError("the run has not finished: exhaust Mirror.events() first")
        return self._summary

    def engine(self, emit: Any = None) -> Engine:
        return Engine(
            self.manifest,
            emit=emit or (lambda e: None),
            state=self._state,
            retry=self._retry,
            progress_interval=self._interval,
            credentials=self._credentials,
            lease=self._lease,
            tuning=self._tuning,
        )

    def events(self) -> AsyncIterator[Event]:
        """Run the mirror, yielding typed progress events; ends with :class:`RunFinished`.

        Breaking out of the loop cancels the run when the ``async with`` block ends
        (or the consumer is cancelled); the state is saved and a later run resumes.
        """
        if self._events is not None:
            raise RuntimeError("a Mirror runs once; build a new one to run again")
        self._events = self._drive()
        return self._events

    async def _drive(self) -> AsyncGenerator[Event, None]:
        queue: asyncio.Queue[Event | None] = asyncio.Queue()
        engine = self.engine(queue.put_nowait)

        async def drive() -> Summary:
            try:
                return await engine.run()
            finally:
                queue.put_nowait(None)

        task = asyncio.ensure_future(drive())
        try:
            while (event := await queue.get()) is not None:
                yield event
            self._summary = await task
            yield RunFinished(summary=self._summary)
        finally:
            await stopped(task)


async def run(
    manifest: ManifestLike,
    *,
    dest: str | os.PathLike[str] | None = None,
    workers: int | None = None,
    state: str | None = None,
    retry: RetryPolicy | None = None,
    credentials: Mapping[str, str] | None = None,
    timeouts: Timeouts | None = None,
    lease: float | None = None,
    tuning: Tuning | None = None,
) -> Summary:
    """Mirror everything ``manifest`` names; return the counts.

    ``manifest`` is a path to a YAML manifest, a mapping of the same shape, or a
    :class:`mirror.Manifest`. Runs inside the caller's event loop: it never calls
    ``asyncio.run`` and never changes the loop policy. Files that fail are counted
    in ``summary.failed`` (not raised); errors in the manifest raise
    :class:`mirror.ManifestError` before any network request.

    Credentials come from the environment (``ENTEROBASE_TOKEN``, ``EGA_USERNAME``, …)
    or ``~/.netrc``; ``credentials`` gives them by the same names instead.
    ``timeouts`` replaces the manifest's ``timeouts:`` (see :class:`mirror.Timeouts`).

    Several calls (in several processes or on several machines) naming the same
    ``dest`` and ``state`` share one pull; ``lease`` is how many seconds a file stays
    with a process that stopped renewing it (it died) before another takes it over.

    ``tuning`` sets every other knob (slice and batch sizes, queue, windows; see
    :class:`mirror.Tuning`); ``retry``, ``timeouts`` and ``lease``, when given,
    replace its fields of the same names.
    """
    m = Mirror(
        manifest,
        dest=dest,
        workers=workers,
        state=state,
        retry=retry,
        credentials=credentials,
        timeouts=timeouts,
        lease=lease,
        tuning=tuning,
    )
    return await m.engine().run()
