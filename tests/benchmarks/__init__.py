"""Tests of the helpers the benchmarks share (the benchmarks themselves print figures)."""
