"""Plain records that cross module boundaries: file tasks, statuses, summaries, events."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "ActiveFile",
    "Event",
    "FileFailed",
    "FileStarted",
    "FileTask",
    "FileVerified",
    "PlanFinished",
    "Progress",
    "RunFinished",
    "Summary",
    "TaskStatus",
    "Verify",
    "WarningEvent",
    "Warning_",
]

#: What a file is checked against before it may appear at its final path.
Verify = Literal["md5", "sha1", "sha256", "size", "ega-results"]


class TaskStatus(enum.StrEnum):
    """Where a planned file stands. Only ``verified`` files exist at their final path."""

    PENDING = "pending"
    #: Claimed by a process under a lease (``holder``, ``lease_until``).
    RUNNING = "running"
    VERIFIED = "verified"
    FAILED = "failed"


@dataclass(frozen=True, kw_only=True, slots=True)
class FileTask:
    """One file to fetch: produced by a source, consumed by a worker.

    ``path`` is relative to ``dest`` (POSIX separators), or to ``root`` when set;
    ``key`` is the task's identity: two sources planning the same key plan the same
    file.
    """

    source: str
    accession: str
    url: str
    path: str
    size: int | None = None
    #: The archive's checksum in lowercase hex, in the algorithm named by ``verify``.
    checksum: str | None = None
    verify: Verify = "md5"
    #: Extra request headers (auth); never stored, never logged.
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    #: Set when the source already knows this file cannot be fetched (an unsafe
    #: name, say): the engine records it as failed with this reason, sends nothing.
    error: str | None = None
    #: An absolute directory ``path`` is relative to, instead of ``dest`` (the
    #: samtools reference cache lives outside the mirror).
    root: str | None = None
    #: Permission bits given to the file before it is renamed into place (0o444 for
    #: reference cache entries, as htslib writes them).
    mode: int | None = None

    @property
    def key(self) -> str:
        """The file's identity in the state store: ``path``, or ``root/path`` with a root
        (the same MD5 path in two reference caches is two files)."""
        return f"{self.root.rstrip('/')}/{self.path}" if self.root else self.path


@dataclass(frozen=True, kw_only=True, slots=True)
class Summary:
    """Counts of one run, as returned by :func:`mirror.run`."""

    planned: int = 0
    verified: int = 0
    failed: int = 0
    pending: int = 0
    #: Bytes of verified files.
    bytes: int = 0
    #: Bytes received over the network during this run.
    downloaded: int = 0
    #: Files that were already verified before this run and were not fetched again.
    skipped: int = 0
    #: Sources that could not be expanded completely (their reasons).
    errors: tuple[str, ...] = ()
    #: Sources whose credentials the archive refused (their reasons).
    refused: tuple[str, ...] = ()
    #: Hosts given up on, one line each: "host: connection refused for 90 s; 998 files
    #: not downloaded; re-run to retry them".
    hosts_down: tuple[str, ...] = ()

    @property
    def exit_code(self) -> int:
        """SPEC.md: 2 credentials refused and nothing verified, 1 some files failed or a
        source could not be planned, 0 all verified.

        Credentials refused while other sources' files were verified is 1: the run did
        its work for those, and "nothing downloaded" is what 2 promises.
        """
        if self.refused and not self.verified:
            return 2
        return 1 if self.failed or self.pending or self.errors or self.refused else 0


# --- events --------------------------------------------------------------------------
# Yielded by Mirror.events(); the CLI renders them or prints them as JSON lines.


@dataclass(frozen=True, kw_only=True, slots=True)
class Event:
    @property
    def kind(self) -> str:
        return _KINDS[type(self).__name__]


@dataclass(frozen=True, kw_only=True, slots=True)
class FileStarted(Event):
    path: str
    url: str
    size: int | None
    offset: int


@dataclass(frozen=True, kw_only=True, slots=True)
class FileVerified(Event):
    path: str
    bytes: int
    md5: str
    verified_by: str
    skipped: bool = False


@dataclass(frozen=True, kw_only=True, slots=True)
class FileFailed(Event):
    path: str
    reason: str
    final: bool
    #: Failed with its host (given up on for the run): the end of the run says so in
    #: one line for all of that host's files, so displays need not show each.
    grouped: bool = False


@dataclass(frozen=True, kw_only=True, slots=True)
class WarningEvent(Event):
    """Something the person running the pull should know; the run carries on."""

    message: str


#: The earlier name of :class:`WarningEvent`.
Warning_ = WarningEvent


@dataclass(frozen=True, kw_only=True, slots=True)
class PlanFinished(Event):
    files: int
    bytes: int
    #: Files whose size the archive does not give (MGnify, EnteroBase): not in ``bytes``.
    unsized: int = 0


@dataclass(frozen=True, kw_only=True, slots=True)
class ActiveFile:
    path: str
    #: Bytes of the file on disk or received so far (a restart from zero starts again).
    done: int
    size: int | None
    #: Set while the file sleeps before a retry: what it waits for.
    waiting: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Progress(Event):
    """The state of a run, sent every progress interval.

    While ``planning`` is true, ``planned`` and ``bytes_total`` still grow. ``rate``
    (bytes/s, smoothed) and ``eta`` (seconds) are None until there is enough signal
    to estimate them; ``eta`` counts only the bytes planned so far, and not the
    ``unsized`` files.
    """

    planned: int
    planning: bool
    verified: int
    failed: int
    bytes_done: int
    bytes_total: int
    rate: float | None
    active: tuple[ActiveFile, ...] = ()
    eta: float | None = None
    #: Files planned so far whose size the archive does not give.
    unsized: int = 0
    #: What stalled phases wait for, one line each (a host's rate limit, planning).
    waiting: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True, slots=True)
class RunFinished(Event):
    summary: Summary


_KINDS = {
    "FileStarted": "file-started",
    "FileVerified": "file-verified",
    "FileFailed": "file-failed",
    "WarningEvent": "warning",
    "PlanFinished": "plan-finished",
    "Progress": "progress",
    "RunFinished": "run-finished",
}
