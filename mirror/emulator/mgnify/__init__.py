"""MGnify API v1: studies, analyses and their downloads."""
