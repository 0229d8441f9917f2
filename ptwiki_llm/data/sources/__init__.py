"""Input formats. Each source reads sequentially (cheap) and converts in workers (expensive)."""
