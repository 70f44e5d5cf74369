"""The one error tree of ebi-mirror.

Every error the engine raises on purpose is a ``MirrorError``. Whether an error is
worth retrying is a property of its class, decided here and nowhere else::

    MirrorError
    ├── ManifestError          bad input: file, line and key named       (exit 2)
    ├── CredentialsError       missing or refused credentials            (exit 2)
    ├── SourceError            an archive API answered something we cannot use
    │   └── EmptyEntry         a manifest entry matched nothing to download
    ├── StateError             the state store cannot be opened or written
    │   └── StateUrlError      the store named by --state cannot be used  (exit 2)
    ├── UnsafePathError        a server-given name cannot be made safe
    ├── DestinationError       the disk is full or read-only: the run stops  (exit 1)
    └── TransferError          one request or one download went wrong   (retryable)
        ├── HTTPStatusError    a status we did not expect (5xx retryable, 4xx not)
        │   └── RateLimited    429/503: slow the host down, honour Retry-After
        ├── UnexpectedAnswer   a 200 that is not the API's answer (a maintenance page)
        ├── ConnectionFailed   reset, refused, timeout, dropped mid-body
        │   └── NotConnected   no connection was made: the request never left
        ├── HostDown           the host stayed unreachable: its files fail together (final)
        ├── UntrustedCertificate  the host's TLS certificate did not verify      (final)
        ├── RedirectLoop       too many redirects                                (final)
        ├── IncompleteDownload fewer bytes than the plan or Content-Length said
        ├── ChecksumMismatch   the bytes arrived but their digest is wrong
        └── RemoteFileChanged  the server's file is not the one we were resuming

Messages are written for the person running the pull: they say what happened, to
which file or URL, and what to do about it when there is something to do.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import TypeVar

__all__ = [
    "ChecksumMismatch",
    "ConnectionFailed",
    "CredentialsError",
    "DestinationError",
    "EmptyEntry",
    "HTTPStatusError",
    "HostDown",
    "IncompleteDownload",
    "ManifestError",
    "MirrorError",
    "NotConnected",
    "RateLimited",
    "RedirectLoop",
    "RemoteFileChanged",
    "SourceError",
    "StateError",
    "StateUrlError",
    "TransferError",
    "UnexpectedAnswer",
    "UnsafePathError",
    "UntrustedCertificate",
    "collapsed",
    "expected_errors",
    "is_usage_error",
    "joined",
]


class MirrorError(Exception):
    """Root of every error ebi-mirror raises on purpose."""

    #: Whether trying the same thing again later may succeed.
    retryable: bool = False


class ManifestError(MirrorError):
    """The manifest (or a command-line argument standing in for one) is invalid.

    ``str(err)`` is the one-line form ``manifest.yaml:12: sources[0].ena.accessions[1]: …``.
    """

    def __init__(
        self, message: str, *, file: str | None = None, line: int | None = None, key: str = ""
    ) -> None:
        self.message = message
        self.file = file
        self.line = line
        self.key = key
        where = ""
        if file is not None:
            where = f"{file}:{line}: " if line is not None else f"{file}: "
        super().__init__(f"{where}{key + ': ' if key else ''}{message}")


class CredentialsError(MirrorError):
    """Credentials are missing, or the archive refused them."""


class SourceError(MirrorError):
    """An archive's API answered in a way the source cannot turn into files."""


class EmptyEntry(SourceError):
    """A whole manifest entry yields no file: accessions that match nothing (a typo),
    or a filter that none of their files passes. The message names them."""


class StateError(MirrorError):
    """The state store could not be opened, read or written."""


class StateUrlError(StateError, ManifestError):
    """The state store the user named (``--state``, ``MIRROR_STATE``) cannot be used.

    A usage error like a bad manifest (exit 2): nothing was planned or downloaded.
    """


class UnsafePathError(MirrorError):
    """A server-given file name would land outside ``dest`` or is empty."""


class DestinationError(MirrorError):
    """The destination cannot take more files: full, over quota, or read-only.

    Not one file's failure: every other file would fail the same way, so the whole
    run stops with this one message. Nothing is marked failed; each ``.part`` keeps
    its bytes and the next run resumes once there is room (or write access).
    """

    def __init__(self, message: str, *, path: str = "", needed: int | None = None) -> None:
        #: The file that could not be written.
        self.path = path
        #: Bytes that file still needed when the write failed, when known.
        self.needed = needed
        super().__init__(message)


class TransferError(MirrorError):
    """One request or download failed in a way that may go away on its own."""

    retryable = True

    def __init__(self, message: str, *, url: str = "") -> None:
        self.url = url
        super().__init__(message)


class HTTPStatusError(TransferError):
    """The server answered with a status the caller did not expect."""

    def __init__(self, status: int, message: str, *, url: str = "") -> None:
        self.status = status
        super().__init__(message, url=url)
        # 5xx and 408 are the server's trouble and often pass; other 4xx will not.
        self.retryable = status >= 500 or status in (408, 429)


class RateLimited(HTTPStatusError):
    """429 Too Many Requests or 503: the host asks us to slow down."""

    def __init__(
        self, status: int, message: str, *, url: str = "", retry_after: float | None = None
    ) -> None:
        super().__init__(status, message, url=url)
        self.retry_after = retry_after
        self.retryable = True


class UnexpectedAnswer(TransferError):
    """A success status whose body is not the API's answer: a maintenance or proxy
    page, a JSON error object, a report without the columns asked for. Such pages
    come and go with the outage behind them, so it is retried like one."""


class ConnectionFailed(TransferError):
    """The connection failed: refused, reset, timed out, or closed mid-body."""

    def __init__(self, message: str, *, url: str = "", why: str = "") -> None:
        #: What went wrong in a few words ("connection refused"), for per-host messages.
        self.why = why
        super().__init__(message, url=url)


class NotConnected(ConnectionFailed):
    """No connection was made (refused, no such host, connect timeout).

    The request was never sent, so even a request that must not be repeated
    blindly (a submission) may be sent again.
    """


class HostDown(TransferError):
    """The host failed every probe for the configured time: give up on it for this run.

    Not retried: every request to the host fails at once with this error, so the
    files still queued for it fail together instead of one retry budget each.
    """

    retryable = False

    def __init__(self, message: str, *, host: str, outage: str, url: str = "") -> None:
        self.host = host
        #: "host: connection refused for 90 s": the outage, for one line about all its files.
        self.outage = outage
        super().__init__(message, url=url)


class UntrustedCertificate(TransferError):
    """The host's TLS certificate did not verify. Trying again gets the same certificate."""

    retryable = False


class RedirectLoop(TransferError):
    """The server kept redirecting. Trying again follows the same redirects."""

    retryable = False


class IncompleteDownload(TransferError):
    """The body ended before the size given by the plan or by Content-Length."""


class ChecksumMismatch(TransferError):
    """Every byte arrived, but the digest differs from the archive's."""


class RemoteFileChanged(TransferError):
    """The server's file changed under a resumed download (size or validator)."""


# --- task groups ----------------------------------------------------------------------
# A TaskGroup wraps whatever its tasks raise in an ExceptionGroup, which ``except
# MirrorError`` never catches. Every boundary where a group can leave (the engine's
# pipeline, a source's producers, submissions, the command line) turns it back into the
# error it stands for, so an expected failure reaches the user as its one-line message.


def _leaves(exc: BaseException) -> Iterator[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from _leaves(inner)
    else:
        yield exc


def expected_errors(exc: BaseException) -> list[MirrorError] | None:
    """The :class:`MirrorError` s ``exc`` stands for: itself, or every leaf of a group.

    ``None`` when anything else is among them (a bug, or a cancellation), which the
    caller then lets through unchanged.
    """
    leaves = list(_leaves(exc))
    if leaves and all(isinstance(e, MirrorError) for e in leaves):
        return [e for e in leaves if isinstance(e, MirrorError)]
    return None


def is_usage_error(exc: MirrorError) -> bool:
    """Whether ``exc`` means bad input or credentials (exit 2), not a failed transfer."""
    return isinstance(exc, ManifestError | CredentialsError)


@contextlib.contextmanager
def collapsed() -> Iterator[None]:
    """Re-raise a TaskGroup's ``ExceptionGroup`` as the one error it stands for.

    A group holding a cancellation, ``KeyboardInterrupt`` or ``SystemExit`` re-raises
    that (never swallowed); a group of :class:`MirrorError` s re-raises the first usage
    error among them, else the first, with the others' messages added as notes; a
    group holding anything else leaves unchanged, traceback and all.
    """
    try:
        yield
    except BaseExceptionGroup as group:
        leaves = list(_leaves(group))
        for leaf in leaves:
            if not isinstance(leaf, Exception):
                raise leaf from None
        errors = expected_errors(group)
        if errors is None:
            raise
        first = next((e for e in errors if is_usage_error(e)), errors[0])
        # Workers that hit one full or read-only disk together tell one thing.
        same_disk = isinstance(first, DestinationError)
        others = [e for e in errors if not (same_disk and isinstance(e, DestinationError))]
        raise joined([first, *(e for e in others if e is not first)]) from None


E = TypeVar("E", bound=BaseException)


def joined(errors: Sequence[E]) -> E:
    """The first of ``errors``, carrying the others' messages as notes: one error to raise
    when several things are wrong at once (the CLI prints each note on a line of its own)."""
    first = errors[0]
    for other in errors[1:]:
        first.add_note(str(other))
    return first
