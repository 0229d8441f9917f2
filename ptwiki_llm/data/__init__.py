"""Portuguese Wikipedia to validated training data: sources, cleaning, quality, formatting."""
