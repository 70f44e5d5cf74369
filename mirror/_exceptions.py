"""The one error tree of ebi-mirror.

Every error the engine raises on purpose is a ``MirrorError``. Whether an error is
worth retrying is a property of its class, decided here and nowhere else::

    MirrorError
    ├── ManifestError          bad input: file, line and key named       (exit 2)
    ├── CredentialsError       missing or refused credentials            (exit 2)
    ├── SourceError            an archive API answered something we cannot use
    │   └── EmptyEntry         a manifest entry matched nothing to download
    ├── StateError             the state store cannot be opened or written
    ├── UnsafePathError        a server-given name cannot be made safe
    └── TransferError          one request or one download went wrong   (retryable)
        ├── HTTPStatusError    a status we did not expect (5xx retryable, 4xx not)
        │   └── RateLimited    429/503: slow the host down, honour Retry-After
        ├── UnexpectedAnswer   a 200 that is not the API's answer (a maintenance page)
        ├── ConnectionFailed   reset, refused, timeout, dropped mid-body
        ├── IncompleteDownload fewer bytes than the plan or Content-Length said
        ├── ChecksumMismatch   the bytes arrived but their digest is wrong
        └── RemoteFileChanged  the server's file is not the one we were resuming

Messages are written for the person running the pull: they say what happened, to
which file or URL, and what to do about it when there is something to do.
"""

from __future__ import annotations

__all__ = [
    "ChecksumMismatch",
    "ConnectionFailed",
    "CredentialsError",
    "EmptyEntry",
    "HTTPStatusError",
    "IncompleteDownload",
    "ManifestError",
    "MirrorError",
    "RateLimited",
    "RemoteFileChanged",
    "SourceError",
    "StateError",
    "TransferError",
    "UnexpectedAnswer",
    "UnsafePathError",
]


class MirrorError(Exception):
    """Root of every error ebi-mirror raises on purpose."""

    #: Whether trying the same thing again later may succeed.
    retryable: bool = False
    #: Short kebab-case name, shown by the CLI and kept in the state store.
    reference: str = "mirror-error"


class ManifestError(MirrorError):
    """The manifest (or a command-line argument standing in for one) is invalid.

    ``str(err)`` is the one-line form ``manifest.yaml:12: sources[0].ena.accessions[1]: …``.
    """

    reference = "manifest-error"

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

    reference = "credentials-error"


class SourceError(MirrorError):
    """An archive's API answered in a way the source cannot turn into files."""

    reference = "source-error"


class EmptyEntry(SourceError):
    """A whole manifest entry yields no file: accessions that match nothing (a typo),
    or a filter that none of their files passes. The message names them."""

    reference = "empty-entry"


class StateError(MirrorError):
    """The state store could not be opened, read or written."""

    reference = "state-error"


class UnsafePathError(MirrorError):
    """A server-given file name would land outside ``dest`` or is empty."""

    reference = "unsafe-path"


class TransferError(MirrorError):
    """One request or download failed in a way that may go away on its own."""

    retryable = True
    reference = "transfer-error"

    def __init__(self, message: str, *, url: str = "") -> None:
        self.url = url
        super().__init__(message)


class HTTPStatusError(TransferError):
    """The server answered with a status the caller did not expect."""

    reference = "http-status"

    def __init__(self, status: int, message: str, *, url: str = "") -> None:
        self.status = status
        super().__init__(message, url=url)
        # 5xx and 408 are the server's trouble and often pass; other 4xx will not.
        self.retryable = status >= 500 or status in (408, 429)


class RateLimited(HTTPStatusError):
    """429 Too Many Requests or 503: the host asks us to slow down."""

    reference = "rate-limited"

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

    reference = "unexpected-answer"


class ConnectionFailed(TransferError):
    """The connection failed: refused, reset, timed out, or closed mid-body."""

    reference = "connection-failed"


class IncompleteDownload(TransferError):
    """The body ended before the size given by the plan or by Content-Length."""

    reference = "incomplete-download"


class ChecksumMismatch(TransferError):
    """Every byte arrived, but the digest differs from the archive's."""

    reference = "checksum-mismatch"


class RemoteFileChanged(TransferError):
    """The server's file changed under a resumed download (size or validator)."""

    reference = "remote-file-changed"
