"""The state store: where every planned file stands, and the pull's work queue."""

from __future__ import annotations

from ._base import (
    Claim,
    Heartbeat,
    Member,
    MemberInfo,
    PlannedFile,
    PullProgress,
    Store,
    StoredFile,
    gone,
    open_store,
    pull_key,
)

__all__ = [
    "Claim",
    "Heartbeat",
    "Member",
    "MemberInfo",
    "PlannedFile",
    "PullProgress",
    "Store",
    "StoredFile",
    "gone",
    "open_store",
    "pull_key",
]
