"""ENA's CRAM reference registry."""
