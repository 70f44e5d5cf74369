"""The state store: where every planned file stands, and the pull's work queue.

The contract and its types live in :mod:`._base`; this package exports exactly its names.
"""

from __future__ import annotations

from ._base import *  # noqa: F403
from ._base import __all__ as __all__
