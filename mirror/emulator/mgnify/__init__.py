"""MGnify API v1: studies, analyses and their downloads."""

from ._controls import MgnifyControls as MgnifyControls
from ._options import MgnifyOptions as MgnifyOptions

__all__ = ["MgnifyControls", "MgnifyOptions"]
