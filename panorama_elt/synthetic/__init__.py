"""Synthetic source databases for tests, the demo and benchmarks."""
