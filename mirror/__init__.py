"""ebi-mirror: bulk, resumable, MD5-verified mirroring of EMBL-EBI archives.

>>> import mirror
>>> summary = await mirror.run("manifest.yaml")
>>> summary.verified, summary.failed
"""

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
