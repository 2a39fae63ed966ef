"""Micro benchmarks (pytest-benchmark) and end-to-end harnesses; figures go to BENCHMARKS.md, never into test assertions."""
