"""ENA Webin submission: REST V2 and the drop-box."""
