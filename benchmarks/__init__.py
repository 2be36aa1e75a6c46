"""Benchmark programs for INSANE (run them, do not import them from the library)."""
