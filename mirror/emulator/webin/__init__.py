"""ENA Webin submission: REST V2 and the drop-box."""

from ._controls import WebinControls as WebinControls
from ._options import WebinOptions as WebinOptions

__all__ = ["WebinControls", "WebinOptions"]
