"""ENA's CRAM reference registry."""

from ._controls import CramControls as CramControls

__all__ = ["CramControls"]
