"""Benchmarks: scripts that print speed and quality figures against a baseline run."""
