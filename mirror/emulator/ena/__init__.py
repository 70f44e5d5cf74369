"""ENA: the Portal API, the Browser and taxonomy services, and the file host."""

from ._controls import EnaControls as EnaControls
from ._options import EnaOptions as EnaOptions

__all__ = ["EnaControls", "EnaOptions"]
