"""EGA: REST API v2 (access, download, tickets), the Data API and its OAuth token."""

from ._controls import EgaControls as EgaControls
from ._options import EgaOptions as EgaOptions

__all__ = ["EgaControls", "EgaOptions"]
