"""EGA: REST API v2 (access, download, tickets), the Data API and its OAuth token."""
