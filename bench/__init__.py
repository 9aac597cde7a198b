"""Reproducible benchmarks of Ferry against the servers people would otherwise use."""
