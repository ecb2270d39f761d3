"""Benchmarks: measured figures, printed (never asserted in unit tests)."""
