"""Benchmarks: run on loopback against the project's own gateway (see each module)."""
