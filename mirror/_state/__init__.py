"""The state store: where every planned file stands, across runs and crashes."""

from __future__ import annotations

from ._base import PlannedFile, Store, StoredFile, open_store

__all__ = ["PlannedFile", "Store", "StoredFile", "open_store"]
