"""Sources: each turns one manifest entry into a stream of :class:`~mirror.FileTask` batches.

The types a source implements live in :mod:`mirror._seam`; each source module declares
a :class:`~mirror._registry.SourceKind` and :mod:`mirror._registry` lists them.
"""

from __future__ import annotations

from .._seam import FileHooks, PullLedger, Received, Source, SourceContext

__all__ = ["FileHooks", "PullLedger", "Received", "Source", "SourceContext"]
