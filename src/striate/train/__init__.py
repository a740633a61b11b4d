"""The training engine: one loop that every entry point reuses."""
