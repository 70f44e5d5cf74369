"""The one error tree of ebi-mirror.

Every error the engine raises on purpose is a ``MirrorError``. What happens next is
decided by its class, here and nowhere else (rclone's ``fs/fserrors``): a retry loop
asks ``isinstance(exc, Retryable)``, never a flag or a status code::

    MirrorError                every error names what it concerns and carries a ``hint``
    ├── Retryable              trying again later may succeed (policy class)
    │   └── RateLimited        the host asked us to slow down; ``retry_after`` if it said
    ├── ClientError            the request itself was refused: not retried (policy class)
    ├── Fatal                  every other file would fail the same way: the run stops
    │   ├── DestinationError   the disk is full or read-only                    (exit 1)
    │   └── StateError         the state store cannot be opened or written
    │       └── StateUrlError  the store named by --state cannot be used        (exit 2)
    ├── ManifestError          bad input: file, line and key named              (exit 2)
    ├── CredentialsError       missing or refused credentials                   (exit 2)
    ├── SourceError            an archive API answered something we cannot use
    │   └── EmptyEntry         a manifest entry matched nothing to download
    ├── UnsafePathError        a server-given name cannot be made safe
    ├── UploadMismatch         a submission's file is not in the upload area as its
    │                          document says (missing, other size or MD5)       (exit 1)
    └── TransferError          one request or one download went wrong
        ├── HTTPStatusError    a status we did not expect; the status picks the class:
        │   ├── ServerError        5xx and 408                       (Retryable)
        │   ├── RateLimited        429 and 503                       (Retryable)
        │   └── RequestRefused     any other 4xx                     (ClientError)
        ├── UnexpectedAnswer   a 200 that is not the API's answer   (Retryable)
        ├── ConnectionFailed   reset, refused, timeout, dropped     (Retryable)
        │   └── NotConnected   no connection was made: the request never left
        ├── HostDown           the host stayed unreachable: its files fail together
        ├── UntrustedCertificate  the host's TLS certificate did not verify
        ├── RedirectLoop       too many redirects
        ├── IncompleteDownload fewer bytes than the plan said       (Retryable)
        ├── ChecksumMismatch   the bytes arrived, the digest is wrong (Retryable)
        ├── RemoteFileChanged  the server's file is not the one we were resuming (Retryable)
        └── FtpError           an FTP reply we did not expect (the upload area):
            ├── FtpTransient       4xx                                (Retryable)
            └── FtpRefused         5xx                                (ClientError)

``HTTPStatusError(status, …)`` builds the subclass its status calls for, so code that
raises it never decides the policy itself.

Messages are written for the person running the pull: they say what happened and to
which file or URL (``url`` / ``path``); ``hint`` says what to do about it, when there
is something to do, and the command line prints it on a line of its own.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import TypeVar

__all__ = [
    "ChecksumMismatch",
    "ClientError",
    "ConnectionFailed",
    "CredentialsError",
    "DestinationError",
    "EmptyEntry",
    "Fatal",
    "FtpError",
    "FtpRefused",
    "FtpTransient",
    "HTTPStatusError",
    "HostDown",
    "IncompleteDownload",
    "ManifestError",
    "MirrorError",
    "NotConnected",
    "RateLimited",
    "RedirectLoop",
    "RemoteFileChanged",
    "RequestRefused",
    "Retryable",
    "ServerError",
    "SourceError",
    "StateError",
    "StateUrlError",
    "TransferError",
    "UnexpectedAnswer",
    "UnsafePathError",
    "UntrustedCertificate",
    "UploadMismatch",
    "collapsed",
    "expected_errors",
    "is_usage_error",
    "joined",
]


class MirrorError(Exception):
    """Root of every error ebi-mirror raises on purpose."""

    #: What the person running the pull can do about it, one line ("" when nothing
    #: helps but waiting). A class gives its usual advice; a raise site may say more.
    hint: str = ""
    #: The URL this error concerns, when it concerns one (secrets redacted when shown).
    url: str = ""
    #: The local file this error concerns, when it concerns one.
    path: str = ""

    def __init__(
        self, *args: object, hint: str | None = None, url: str = "", path: str = ""
    ) -> None:
        super().__init__(*args)
        if hint is not None:
            self.hint = hint
        if url:
            self.url = url
        if path:
            self.path = path

    @property
    def retryable(self) -> bool:
        """Whether trying the same thing again later may succeed: the class says."""
        return isinstance(self, Retryable)


# --- policy classes ----------------------------------------------------------------------
# Concrete errors inherit one of these for what should happen next; a retry loop decides
# with isinstance and nothing else.


class Retryable(MirrorError):
    """Trying the same thing again later may succeed (an outage, a dropped connection)."""


class ClientError(MirrorError):
    """The server refused the request itself: sending it again gets the same answer."""


class Fatal(MirrorError):
    """Every other file would fail the same way: the run stops with this one message."""


# --- input --------------------------------------------------------------------------------


class ManifestError(MirrorError):
    """The manifest (or a command-line argument standing in for one) is invalid.

    ``str(err)`` is the one-line form ``manifest.yaml:12: sources[0].ena.accessions[1]: …``.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        key: str = "",
        hint: str | None = None,
    ) -> None:
        self.message = message
        self.file = file
        self.line = line
        self.key = key
        if file is not None:
            self.path = file
        where = ""
        if file is not None:
            where = f"{file}:{line}: " if line is not None else f"{file}: "
        super().__init__(f"{where}{key + ': ' if key else ''}{message}", hint=hint)


class CredentialsError(MirrorError):
    """Credentials are missing, or the archive refused them.

    The raise site names the variables (or ``~/.netrc`` entry) to set in ``hint``.
    """


class SourceError(MirrorError):
    """An archive's API answered in a way the source cannot turn into files."""


class EmptyEntry(SourceError):
    """A whole manifest entry yields no file: accessions that match nothing (a typo),
    or a filter that none of their files passes. The message names them."""

    hint = "check the entry's accessions and filters against the archive"


class UnsafePathError(MirrorError):
    """A server-given file name would land outside ``dest`` or is empty."""


# --- fatal: the run stops ------------------------------------------------------------------


class StateError(Fatal):
    """The state store could not be opened, read or written."""


class StateUrlError(StateError, ManifestError):
    """The state store the user named (``--state``, ``MIRROR_STATE``) cannot be used.

    A usage error like a bad manifest (exit 2): nothing was planned or downloaded.
    """


class DestinationError(Fatal):
    """The destination cannot take more files: full, over quota, or read-only.

    Not one file's failure: every other file would fail the same way, so the whole
    run stops with this one message. Nothing is marked failed; each ``.part`` keeps
    its bytes and the next run resumes once there is room (or write access).
    """

    hint = "free some space and re-run to resume"

    def __init__(
        self, message: str, *, path: str = "", needed: int | None = None, hint: str | None = None
    ) -> None:
        #: The file that could not be written.
        self.path = path
        #: Bytes that file still needed when the write failed, when known.
        self.needed = needed
        super().__init__(message, hint=hint)


# --- transfers -----------------------------------------------------------------------------


class TransferError(MirrorError):
    """One request or download failed. Whether another try may help is its class's
    business: the retryable ones also derive from :class:`Retryable`."""

    def __init__(self, message: str, *, url: str = "", hint: str | None = None) -> None:
        self.url = url
        super().__init__(message, hint=hint)


def _http_class(status: int) -> type[HTTPStatusError]:
    """The class a status calls for (RFC 9110 15): 429 and 503 ask us to slow down; other
    5xx and 408 are the server's trouble and often pass; any other 4xx will not."""
    if status in (429, 503):
        return RateLimited
    if status >= 500 or status == 408:
        return ServerError
    if 400 <= status < 500:
        return RequestRefused
    return HTTPStatusError


class HTTPStatusError(TransferError):
    """The server answered with a status the caller did not expect.

    ``HTTPStatusError(status, …)`` is an instance of the subclass the status calls for
    (:class:`ServerError`, :class:`RateLimited` or :class:`RequestRefused`), as
    ``pathlib.Path()`` is a ``PosixPath``: whoever raises it never decides the policy.
    """

    def __new__(cls, status: int, *args: object, **kwargs: object) -> HTTPStatusError:
        chosen = _http_class(status) if cls is HTTPStatusError else cls
        return Exception.__new__(chosen, status, *args)

    def __init__(
        self, status: int, message: str, *, url: str = "", hint: str | None = None
    ) -> None:
        self.status = status
        super().__init__(message, url=url, hint=hint)


class ServerError(HTTPStatusError, Retryable):
    """A 5xx (other than 503) or 408: the server's trouble, which often passes."""

    hint = "the archive is having trouble; re-run later to resume"


class RequestRefused(HTTPStatusError, ClientError):
    """A 4xx other than 408 and 429: the same request gets the same answer."""


class RateLimited(HTTPStatusError, Retryable):
    """429 Too Many Requests or 503: the host asks us to slow down.

    ``retry_after`` is the wait the server asked for (``Retry-After``), ``None`` when it
    did not say: the retry loop never comes back sooner.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        url: str = "",
        retry_after: float | None = None,
        hint: str | None = None,
    ) -> None:
        #: Seconds the server asked us to wait, or None.
        self.retry_after = retry_after
        super().__init__(status, message, url=url, hint=hint)
        if hint is None:
            host = _host(url) or "<host>"
            self.hint = f"lower hosts.{host}.rate (or connections) in the manifest"


def _host(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return parts.netloc.rsplit("@", 1)[-1]


class UnexpectedAnswer(TransferError, Retryable):
    """A success status whose body is not the API's answer: a maintenance or proxy
    page, a JSON error object, a report without the columns asked for. Such pages
    come and go with the outage behind them, so it is retried like one."""

    hint = "the archive's API may be under maintenance; re-run later"


class ConnectionFailed(TransferError, Retryable):
    """The connection failed: refused, reset, timed out, or closed mid-body."""

    hint = "check the network (proxy, VPN, firewall) and re-run to resume"

    def __init__(
        self, message: str, *, url: str = "", why: str = "", hint: str | None = None
    ) -> None:
        #: What went wrong in a few words ("connection refused"), for per-host messages.
        self.why = why
        super().__init__(message, url=url, hint=hint)


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

    def __init__(
        self, message: str, *, host: str, outage: str, url: str = "", hint: str | None = None
    ) -> None:
        self.host = host
        #: "host: connection refused for 90 s": the outage, for one line about all its files.
        self.outage = outage
        super().__init__(message, url=url, hint=hint)
        if hint is None:
            self.hint = f"check that {host} is reachable from here, then re-run to resume"


class UntrustedCertificate(TransferError):
    """The host's TLS certificate did not verify. Trying again gets the same certificate."""

    hint = "if the host uses a private CA, set SSL_CERT_FILE to a PEM file holding that CA"


class RedirectLoop(TransferError):
    """The server kept redirecting. Trying again follows the same redirects."""


class IncompleteDownload(TransferError, Retryable):
    """The body ended before the size given by the plan or by Content-Length."""


class ChecksumMismatch(TransferError, Retryable):
    """Every byte arrived, but the digest differs from the archive's."""

    hint = "re-run to fetch it again; if it keeps failing, tell the archive"


class RemoteFileChanged(TransferError, Retryable):
    """The server's file changed under a resumed download (size or validator)."""


class FtpError(TransferError):
    """An FTP server answered a command with a reply we did not expect (the upload area).

    Raise :class:`FtpTransient` (a 4xx: "try again") or :class:`FtpRefused` (a 5xx).
    """

    def __init__(self, code: int, message: str, *, url: str = "", hint: str | None = None) -> None:
        #: The reply's code (``550``).
        self.code = code
        super().__init__(message, url=url, hint=hint)


class FtpTransient(FtpError, Retryable):
    """A 4xx reply: the server says the same command may work later (RFC 959 4.2)."""

    hint = "the upload area is having trouble; re-run later to resume"


class FtpRefused(FtpError, ClientError):
    """A 5xx reply: the same command gets the same answer (no permission, bad name)."""


class UploadMismatch(MirrorError):
    """A file a submission names is missing from the Webin upload area, or its size or
    MD5 there is not the document's. Found before anything is submitted."""

    hint = "upload it first (mirror upload FILE --to DIR), or give mirror submit --upload"


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
