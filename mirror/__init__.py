"""ebi-mirror: bulk, resumable, MD5-verified mirroring of EMBL-EBI archives.

>>> import mirror
>>> summary = await mirror.run("manifest.yaml")
>>> summary.verified, summary.failed
"""

# Private aliases: every public name of the package is in __all__.
import typing as _typing
from importlib import import_module as _import_module

if _typing.TYPE_CHECKING:
    from ._api import Mirror as Mirror, run as run
    from ._config import Manifest as Manifest, Timeouts as Timeouts
    from ._exceptions import (
        ChecksumMismatch as ChecksumMismatch,
        ClientError as ClientError,
        CredentialsError as CredentialsError,
        Fatal as Fatal,
        ManifestError as ManifestError,
        MirrorError as MirrorError,
        NotConnected as NotConnected,
        RateLimited as RateLimited,
        Retryable as Retryable,
        SourceError as SourceError,
        StateError as StateError,
        StateUrlError as StateUrlError,
        TransferError as TransferError,
    )
    from ._manifest import load_manifest as load_manifest
    from ._models import (
        Event as Event,
        FileFailed as FileFailed,
        FileStarted as FileStarted,
        FileTask as FileTask,
        FileVerified as FileVerified,
        PlanFinished as PlanFinished,
        Progress as Progress,
        RunFinished as RunFinished,
        Summary as Summary,
        TaskStatus as TaskStatus,
        WarningEvent as WarningEvent,
    )
    from ._retry import RetryPolicy as RetryPolicy
    from ._tuning import (
        HttpTuning as HttpTuning,
        PullTuning as PullTuning,
        SourceTuning as SourceTuning,
        TransferTuning as TransferTuning,
        Tuning as Tuning,
    )

__version__ = "0.1.0"

__all__ = [
    "ChecksumMismatch",
    "ClientError",
    "CredentialsError",
    "Event",
    "Fatal",
    "FileFailed",
    "FileStarted",
    "FileTask",
    "FileVerified",
    "HttpTuning",
    "Manifest",
    "ManifestError",
    "Mirror",
    "MirrorError",
    "NotConnected",
    "PlanFinished",
    "Progress",
    "PullTuning",
    "RateLimited",
    "RetryPolicy",
    "Retryable",
    "RunFinished",
    "SourceError",
    "SourceTuning",
    "StateError",
    "StateUrlError",
    "Summary",
    "TaskStatus",
    "Timeouts",
    "TransferError",
    "TransferTuning",
    "Tuning",
    "WarningEvent",
    "load_manifest",
    "run",
]

#: The module that defines each public name. ``import mirror`` loads none of them: the
#: command line's short commands need no engine (and no aiohttp), so each name is
#: imported on first use (PEP 562); type checkers read the imports above instead.
_WHERE: dict[str, str] = {
    "Mirror": "_api",
    "run": "_api",
    "Manifest": "_config",
    "Timeouts": "_config",
    "ChecksumMismatch": "_exceptions",
    "ClientError": "_exceptions",
    "CredentialsError": "_exceptions",
    "Fatal": "_exceptions",
    "ManifestError": "_exceptions",
    "MirrorError": "_exceptions",
    "NotConnected": "_exceptions",
    "RateLimited": "_exceptions",
    "Retryable": "_exceptions",
    "SourceError": "_exceptions",
    "StateError": "_exceptions",
    "StateUrlError": "_exceptions",
    "TransferError": "_exceptions",
    "load_manifest": "_manifest",
    "Event": "_models",
    "FileFailed": "_models",
    "FileStarted": "_models",
    "FileTask": "_models",
    "FileVerified": "_models",
    "PlanFinished": "_models",
    "Progress": "_models",
    "RunFinished": "_models",
    "Summary": "_models",
    "TaskStatus": "_models",
    "WarningEvent": "_models",
    "RetryPolicy": "_retry",
    "HttpTuning": "_tuning",
    "PullTuning": "_tuning",
    "SourceTuning": "_tuning",
    "TransferTuning": "_tuning",
    "Tuning": "_tuning",
}

if not _typing.TYPE_CHECKING:
    # Hidden from type checkers, which would otherwise accept any attribute of mirror.

    def __getattr__(name: str) -> object:
        module = _WHERE.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(_import_module(f"{__name__}.{module}"), name)
        globals()[name] = value  # the next lookup is an ordinary attribute
        return value

    def __dir__() -> list[str]:
        return sorted({*globals(), *__all__})
