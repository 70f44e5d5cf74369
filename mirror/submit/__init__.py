"""Submissions to ENA: Webin REST V2."""
