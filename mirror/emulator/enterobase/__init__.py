"""EnteroBase API v2.0: assemblies, strains and their FASTA downloads."""
