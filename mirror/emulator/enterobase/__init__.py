"""EnteroBase API v2.0: assemblies, strains and their FASTA downloads."""

from ._controls import EnterobaseControls as EnterobaseControls
from ._options import EnterobaseOptions as EnterobaseOptions

__all__ = ["EnterobaseControls", "EnterobaseOptions"]
