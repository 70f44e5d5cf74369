"""ENA: the Portal API, the Browser and taxonomy services, and the file host."""
